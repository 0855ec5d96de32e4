#if canImport(Glibc)
import Glibc
#endif
import Files
import Foundation

/// A TensorBoard event file (`events.out.tfevents.*`): a sequence of records, each
///
///     uint64 length | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
///
/// (little-endian), whose data is one `Event` protocol buffer: `wall_time` (field 1, double),
/// `step` (2, int64), then `file_version` (3, string: the first event, "brain.Event:2") or a
/// `summary` (5). A `Summary` holds `value`s (1): `tag` (1) with a `simple_value` (2, float) or
/// an `image` (4: `height` 1, `width` 2, `colorspace` 3, PNG bytes `encoded_image_string` 4).
public final class EventFile {
    public let path: String
    private let descriptor: Int32

    /// Opens `path` for appending, creating it (with its `file_version` event) if it is new or
    /// empty (a file cut back to nothing).
    public init(path: String) throws {
        var info = stat()
        let isNew = stat(path, &info) != 0 || info.st_size == 0
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError(path: path, reason: "cannot open for writing: \(String(cString: strerror(errno)))") }
        self.path = path
        if isNew {
            var event = ProtobufWriter()
            event.double(1, Date().timeIntervalSince1970)
            event.int(2, 0)
            event.string(3, "brain.Event:2")
            try append(event.bytes)
        }
    }

    deinit { close(descriptor) }

    /// The record framing around one encoded event.
    public static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        return out
    }

    /// Appends one encoded event as a record (one write call).
    public func append(_ event: [UInt8]) throws {
        let bytes = Self.record(event)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw FileError(path: path, reason: "cannot write: \(String(cString: strerror(errno)))") }
    }

    /// A scalar event.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        guard !values.isEmpty else { return }
        try append(Self.event(step: step, wallTime: wallTime) { summary in
            for (tag, value) in values {
                summary.message(1) { v in
                    v.string(1, tag)
                    v.float(2, Float(value))
                }
            }
        })
    }

    /// An image event: `png` holds the encoded picture of `width` × `height` with `channels`
    /// (1 grey, 3 RGB, 4 RGBA: the `colorspace` field).
    public func image(tag: String, png: [UInt8], width: Int, height: Int, channels: Int, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try append(Self.event(step: step, wallTime: wallTime) { summary in
            summary.message(1) { v in
                v.string(1, tag)
                v.message(4) { image in
                    image.int(1, height)
                    image.int(2, width)
                    image.int(3, channels)
                    image.bytes(4, png)
                }
            }
        })
    }

    private static func event(step: Int, wallTime: Double, _ summary: (inout ProtobufWriter) -> Void) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        event.int(2, step)
        event.message(5, summary)
        return event.bytes
    }

    /// The byte ranges of the whole, intact records of `bytes` and each event's step, up to the
    /// first record that is cut short or fails its checksums.
    public static func records(_ bytes: [UInt8]) -> [(range: Range<Int>, step: Int)] {
        var out: [(Range<Int>, Int)] = []
        var i = 0
        func u32(_ at: Int) -> UInt32 { bytes[at..<(at + 4)].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) } }
        while i + 12 <= bytes.count {
            let length = bytes[i..<(i + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard i + 16 <= bytes.count, u32(i + 8) == CRC32C.masked(bytes[i..<(i + 8)]), length <= UInt64(bytes.count - i - 16) else { break }
            let data = bytes[(i + 12)..<(i + 12 + Int(length))]
            guard u32(i + 12 + Int(length)) == CRC32C.masked(data), let fields = protobufVarintFields(data) else { break }
            let step = fields.first { $0.field == 2 }.map { Int(Int64(bitPattern: $0.value)) } ?? 0
            out.append((i..<(i + 16 + Int(length)), step))
            i += 16 + Int(length)
        }
        return out
    }

    /// Cuts `path` after its last event of step ≤ `step` (keeping the `file_version` event), and
    /// drops a last record cut short: what a run resumed at `step` continues from.
    public static func truncate(_ path: String, keepingStepsUpTo step: Int) throws {
        let bytes = try Files.read(path)
        let intact = records(bytes)
        var keep = 0
        for (index, record) in intact.enumerated() where index == 0 || record.step <= step { keep = record.range.upperBound }
        // Records are in step order; anything after the first later step goes too.
        if let firstLater = intact.dropFirst().firstIndex(where: { $0.step > step }) { keep = min(keep, intact[firstLater].range.lowerBound) }
        guard keep < bytes.count else { return }
        guard Glibc.truncate(path, off_t(keep)) == 0 else { throw FileError(path: path, reason: "cannot truncate: \(String(cString: strerror(errno)))") }
    }
}
