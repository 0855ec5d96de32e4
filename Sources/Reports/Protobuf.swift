/// The few protocol-buffer encodings TensorBoard's `Event` needs (wire format: each field is a
/// varint key `field << 3 | wire type`, then a varint, 4 or 8 little-endian bytes, or a
/// length-prefixed run of bytes), and a reader for the top-level fields of a message.
public struct ProtobufWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    private enum Wire: UInt64 { case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5 }

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wire: Wire) { varint(UInt64(field) << 3 | wire.rawValue) }

    private mutating func littleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// An `int32`/`int64` field (a negative value takes ten bytes, as protobuf defines).
    public mutating func int(_ field: Int, _ value: Int) {
        key(field, .varint)
        varint(UInt64(bitPattern: Int64(value)))
    }

    public mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        littleEndian(value.bitPattern)
    }

    public mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        littleEndian(value.bitPattern)
    }

    public mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    public mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        bytes(field, inner.bytes)
    }
}

/// The top-level fields of an encoded message: (field number, varint value) for varint fields;
/// the others are skipped. Nil if the bytes are not a well-formed message.
public func protobufVarintFields(_ bytes: ArraySlice<UInt8>) -> [(field: Int, value: UInt64)]? {
    var i = bytes.startIndex
    func varint() -> UInt64? {
        var value: UInt64 = 0, shift: UInt64 = 0
        while i < bytes.endIndex, shift < 64 {
            let b = bytes[i]
            i += 1
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
        }
        return nil
    }
    var fields: [(Int, UInt64)] = []
    while i < bytes.endIndex {
        guard let key = varint() else { return nil }
        let field = Int(key >> 3)
        switch key & 7 {
        case 0:
            guard let v = varint() else { return nil }
            fields.append((field, v))
        case 1: i += 8
        case 5: i += 4
        case 2:
            guard let n = varint(), n <= UInt64(bytes.endIndex - i) else { return nil }
            i += Int(n)
        default: return nil
        }
        guard i <= bytes.endIndex else { return nil }
    }
    return fields
}
