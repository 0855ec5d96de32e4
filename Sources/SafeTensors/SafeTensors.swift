import Foundation
import Files

/// The safetensors file format (https://huggingface.co/docs/safetensors):
///
///     [8 bytes: header length N, little-endian u64][N bytes: JSON header][raw tensor bytes]
///
/// The header maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
/// (offsets relative to the start of the raw bytes) and may hold `"__metadata__"`, a map of
/// strings to strings. Tensors are little-endian, row-major, and tile the raw bytes exactly.
public enum SafeTensors {
    /// The largest header accepted (the reference implementation's limit).
    public static let maximumHeaderSize = 100_000_000
}

/// Element types of the format, with their sizes in bytes.
public enum DType: String, Sendable, CaseIterable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32", f64 = "F64", i64 = "I64", u64 = "U64"

    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: 1
        case .i16, .u16, .f16, .bf16: 2
        case .i32, .u32, .f32: 4
        case .f64, .i64, .u64: 8
        }
    }
}

/// What is wrong with a safetensors file.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case truncated(String)
    case invalidHeader(String)
    case invalidTensor(name: String, problem: String)
    case missingTensor(String)
    case wrongDType(name: String, found: String, expected: String)

    public var description: String {
        switch self {
        case .truncated(let what): "truncated safetensors file: \(what)"
        case .invalidHeader(let what): "invalid safetensors header: \(what)"
        case .invalidTensor(let name, let problem): "invalid tensor '\(name)': \(problem)"
        case .missingTensor(let name): "tensor '\(name)' is missing"
        case .wrongDType(let name, let found, let expected): "tensor '\(name)' has dtype \(found), expected \(expected)"
        }
    }
}

/// One tensor's entry in the header.
public struct TensorInfo: Equatable, Sendable {
    public let dtype: DType
    public let shape: [Int]
    /// Byte range within the file's raw data section.
    public let dataRange: Range<Int>

    public init(dtype: DType, shape: [Int], dataRange: Range<Int>) {
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
    }
}

/// A parsed safetensors file held in memory.
public struct SafeTensorsArchive {
    public let metadata: [String: String]
    public let tensors: [String: TensorInfo]
    private let bytes: [UInt8]
    private let dataStart: Int

    /// Parses and validates `bytes`: header size within the file and the limit, a JSON object,
    /// known dtypes, non-negative shapes whose byte size matches the offsets, and tensors that
    /// tile the data section without gaps or overlaps.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 8 else { throw SafeTensorsError.truncated("\(bytes.count) bytes, fewer than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(SafeTensors.maximumHeaderSize) else {
            throw SafeTensorsError.invalidHeader("header length \(n) exceeds the \(SafeTensors.maximumHeaderSize)-byte limit")
        }
        let headerSize = Int(n)
        guard 8 + headerSize <= bytes.count else {
            throw SafeTensorsError.truncated("header length \(headerSize) but only \(bytes.count - 8) bytes follow")
        }
        guard headerSize >= 2, bytes[8] == UInt8(ascii: "{") else {
            throw SafeTensorsError.invalidHeader("header does not start with '{'")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerSize)]))
        } catch {
            throw SafeTensorsError.invalidHeader("header is not valid JSON")
        }
        guard let object = json as? [String: Any] else { throw SafeTensorsError.invalidHeader("header is not a JSON object") }

        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        let dataSize = bytes.count - 8 - headerSize
        for (name, value) in object {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else { throw SafeTensorsError.invalidHeader("__metadata__ is not an object") }
                for (k, v) in map {
                    guard let s = v as? String else { throw SafeTensorsError.invalidHeader("__metadata__ value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            tensors[name] = try Self.parseEntry(name: name, value, dataSize: dataSize)
        }
        // Tensors must tile [0, dataSize) exactly, as the reference reader requires.
        var position = 0
        for (name, info) in tensors.sorted(by: { ($0.value.dataRange.lowerBound, $0.key) < ($1.value.dataRange.lowerBound, $1.key) }) {
            if info.dataRange.lowerBound < position {
                throw SafeTensorsError.invalidTensor(name: name, problem: "data overlaps another tensor")
            }
            if info.dataRange.lowerBound > position {
                throw SafeTensorsError.invalidTensor(name: name, problem: "gap in the data before it (offset \(info.dataRange.lowerBound), expected \(position))")
            }
            position = info.dataRange.upperBound
        }
        guard position == dataSize else {
            throw SafeTensorsError.invalidHeader("tensors cover \(position) bytes of data but the file holds \(dataSize)")
        }
        self.metadata = metadata
        self.tensors = tensors
        self.bytes = bytes
        self.dataStart = 8 + headerSize
    }

    /// Reads and parses a file; errors name the file.
    public init(contentsOf path: String) throws {
        let bytes = try Files.read(path)
        do {
            try self.init(bytes: bytes)
        } catch let error as SafeTensorsError {
            throw FileError(path: path, reason: error.description)
        }
    }

    private static func parseEntry(name: String, _ value: Any, dataSize: Int) throws -> TensorInfo {
        func bad(_ problem: String) -> SafeTensorsError { .invalidTensor(name: name, problem: problem) }
        guard let entry = value as? [String: Any] else { throw bad("entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw bad("no dtype") }
        guard let dtype = DType(rawValue: dtypeName) else { throw bad("unknown dtype '\(dtypeName)'") }
        guard let shapeValues = entry["shape"] as? [Any] else { throw bad("no shape") }
        guard let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2 else { throw bad("data_offsets is not a pair") }
        let shape = try shapeValues.map { try nonNegativeInteger($0, bad("shape has an entry that is not a non-negative integer")) }
        let begin = try nonNegativeInteger(offsetValues[0], bad("data_offsets are not non-negative integers"))
        let end = try nonNegativeInteger(offsetValues[1], bad("data_offsets are not non-negative integers"))
        guard begin <= end else { throw bad("data_offsets end before they begin") }
        guard end <= dataSize else { throw bad("data ends at byte \(end), past the \(dataSize) bytes in the file") }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, product <= dataSize else { throw bad("shape \(shape) is larger than the file") }
            elements = product
        }
        guard elements * dtype.size == end - begin else {
            throw bad("shape \(shape) of \(dtype.rawValue) needs \(elements * dtype.size) bytes but data_offsets span \(end - begin)")
        }
        return TensorInfo(dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    private static func nonNegativeInteger(_ value: Any, _ error: SafeTensorsError) throws -> Int {
        guard let number = value as? NSNumber else { throw error }
        let d = number.doubleValue
        guard d >= 0, d <= 0x1p53, d == d.rounded() else { throw error }
        return Int(d)
    }

    /// The elements of an F32 tensor.
    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw SafeTensorsError.missingTensor(name) }
        guard info.dtype == .f32 else { throw SafeTensorsError.wrongDType(name: name, found: info.dtype.rawValue, expected: "F32") }
        let count = info.dataRange.count / 4
        var out = [Float](repeating: 0, count: count)
        let start = dataStart + info.dataRange.lowerBound
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                out[i] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self).littleEndian)
            }
        }
        return out
    }

    /// The elements of an I64 tensor.
    public func int64s(_ name: String) throws -> [Int64] {
        guard let info = tensors[name] else { throw SafeTensorsError.missingTensor(name) }
        guard info.dtype == .i64 else { throw SafeTensorsError.wrongDType(name: name, found: info.dtype.rawValue, expected: "I64") }
        let start = dataStart + info.dataRange.lowerBound
        return bytes.withUnsafeBytes { raw in
            (0..<(info.dataRange.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8 * $0, as: Int64.self)) }
        }
    }

}

/// Builds a safetensors file: tensors in name order, the header padded with spaces to 8 bytes.
public struct SafeTensorsWriter {
    private var entries: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = []
    public var metadata: [String: String] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    /// Adds an F32 tensor.
    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) for \(floats.count) values")
        precondition(name != "__metadata__" && !entries.contains { $0.name == name }, "duplicate tensor name \(name)")
        var bytes = [UInt8](repeating: 0, count: floats.count * 4)
        bytes.withUnsafeMutableBytes { raw in
            for (i, f) in floats.enumerated() { raw.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        entries.append((name, .f32, shape, bytes))
    }

    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }

    /// Adds an I64 tensor.
    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        precondition(shape.reduce(1, *) == int64s.count, "shape \(shape) for \(int64s.count) values")
        precondition(name != "__metadata__" && !entries.contains { $0.name == name }, "duplicate tensor name \(name)")
        var bytes = [UInt8]()
        bytes.reserveCapacity(8 * int64s.count)
        for v in int64s { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        entries.append((name, .i64, shape, bytes))
    }

    /// The file's bytes.
    public func serialize() -> [UInt8] {
        let sorted = entries.sorted { $0.name < $1.name }
        var parts: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for e in sorted {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}")
            offset += e.bytes.count
        }
        var header = Array("{\(parts.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        var length = UInt64(header.count)
        for _ in 0..<8 {
            out.append(UInt8(length & 0xFF))
            length >>= 8
        }
        out += header
        for e in sorted { out += e.bytes }
        return out
    }
}

/// A JSON string literal for `s`, with the escapes RFC 8259 requires.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
