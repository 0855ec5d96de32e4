import Foundation
/// Writing NumPy `.npy` files (format version 1.0): the magic string, a little-endian header
/// length, a Python-literal header dictionary padded to a multiple of 64 bytes, then the data.
public enum NPY {
    /// One field of a structured array: a name and a per-row shape of Float32, or an Int64.
    public enum Field {
        case float32(name: String, values: [Float], perRow: Int)
        case float64(name: String, values: [Double])
        case int64(name: String, values: [Int])
    }

    /// A structured array of `rows` records with the given fields (`np.load(f)["mu"]` gives the
    /// `mu` column as an array of shape [rows, perRow]).
    public static func structuredArray(rows: Int, fields: [Field]) -> [UInt8] {
        var descr: [String] = []
        for field in fields {
            switch field {
            case .float32(let name, let values, let perRow):
                precondition(values.count == rows * perRow, "\(name): \(values.count) values for \(rows) rows of \(perRow)")
                descr.append("('\(name)', '<f4', (\(perRow),))")
            case .float64(let name, let values):
                precondition(values.count == rows, "\(name): \(values.count) values for \(rows) rows")
                descr.append("('\(name)', '<f8')")
            case .int64(let name, let values):
                precondition(values.count == rows, "\(name): \(values.count) values for \(rows) rows")
                descr.append("('\(name)', '<i8')")
            }
        }
        var out = header("{'descr': [\(descr.joined(separator: ", "))], 'fortran_order': False, 'shape': (\(rows),), }")
        for r in 0..<rows {
            for field in fields {
                switch field {
                case .float32(_, let values, let perRow):
                    for v in values[(r * perRow)..<((r + 1) * perRow)] { appendLittleEndian(v.bitPattern, to: &out) }
                case .float64(_, let values):
                    appendLittleEndian(values[r].bitPattern, to: &out)
                case .int64(_, let values):
                    appendLittleEndian(UInt64(bitPattern: Int64(values[r])), to: &out)
                }
            }
        }
        return out
    }

    /// "\x93NUMPY", version 1.0, header length, header padded with spaces to end at a multiple of 64.
    static func header(_ dictionary: String) -> [UInt8] {
        var text = Array(dictionary.utf8)
        while (10 + text.count + 1) % 64 != 0 { text.append(UInt8(ascii: " ")) }
        text.append(UInt8(ascii: "\n"))
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        appendLittleEndian(UInt16(text.count), to: &out)
        return out + text
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }
}

/// What is wrong with a `.npy` file (or the data in it).
public struct NPYError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// A parsed NumPy array of one of the element types swift-vae reads.
public struct NPYArray {
    public enum Elements {
        case uint8([UInt8])
        case float32([Float])
        case float64([Double])
        case int64([Int64])
    }

    public let shape: [Int]
    public let elements: Elements

    /// Parses `.npy` bytes (format versions 1–3): "\x93NUMPY", version, header length, a Python
    /// dictionary with 'descr', 'fortran_order' and 'shape', then the data. Accepts
    /// u1/i1 bytes, f4, f8, i8 (either byte order), C order only.
    public init(bytes: [UInt8]) throws {
        func fail(_ m: String) -> NPYError { NPYError(description: m) }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw fail("not a NumPy .npy file (wrong magic bytes)")
        }
        let major = bytes[6]
        let (lengthSize, headerStart): (Int, Int) = major == 1 ? (2, 10) : (4, 12)
        guard major >= 1 && major <= 3 else { throw fail("unsupported .npy format version \(major)") }
        guard bytes.count >= headerStart else { throw fail("truncated .npy header") }
        var headerLength = 0
        for i in 0..<lengthSize { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count else {
            throw fail("header length \(headerLength) runs past the end of the file")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descr = Self.field(header, "descr"), descr.count >= 3 else { throw fail("header has no 'descr'") }
        guard let order = Self.field(header, "fortran_order") else { throw fail("header has no 'fortran_order'") }
        guard order == "False" else { throw fail("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)") }
        guard let shapeText = Self.field(header, "shape") else { throw fail("header has no 'shape'") }
        let dims = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = try dims.map { d -> Int in
            guard let v = Int(d), v >= 0 else { throw fail("shape \(shapeText) is not a tuple of sizes") }
            return v
        }
        guard !shape.isEmpty else { throw fail("a 0-dimensional array holds no examples") }
        let dataStart = headerStart + headerLength
        let available = bytes.count - dataStart
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= available else { throw fail("shape \(shape) needs more data than the file's \(available) bytes") }
            count = p
        }
        let byteOrder = descr.first!
        let code = String(descr.dropFirst())
        guard "<>|=".contains(byteOrder) else { throw fail("unsupported dtype '\(descr)'") }
        let big = byteOrder == ">"
        func need(_ size: Int) throws {
            guard count * size == available else {
                throw fail(count * size > available ? "truncated data: shape \(shape) of \(descr) needs \(count * size) bytes, the file holds \(available)"
                                                    : "\(available - count * size) bytes after the data of shape \(shape)")
            }
        }
        func words<T: FixedWidthInteger>(_ type: T.Type) -> [T] {
            bytes.withUnsafeBytes { raw in
                (0..<count).map { i in
                    let v = raw.loadUnaligned(fromByteOffset: dataStart + i * MemoryLayout<T>.size, as: T.self)
                    return big ? T(bigEndian: v) : T(littleEndian: v)
                }
            }
        }
        switch code {
        case "b1":
            // Booleans are 0/1 values (images of 0 and 1, or labels 0 and 1), never bytes of 1/255.
            try need(1)
            guard bytes[dataStart...].allSatisfy({ $0 <= 1 }) else { throw fail("bool data holds bytes other than 0 and 1") }
            elements = .float32(bytes[dataStart...].map { Float($0) })
        case "u1", "i1":
            try need(1)
            elements = .uint8(Array(bytes[dataStart...]))
            if code == "i1" && bytes[dataStart...].contains(where: { $0 > 127 }) { throw fail("int8 data has negative values") }
        case "f4":
            try need(4)
            elements = .float32(words(UInt32.self).map(Float.init(bitPattern:)))
        case "f8":
            try need(8)
            elements = .float64(words(UInt64.self).map(Double.init(bitPattern:)))
        case "i8", "u8", "i4", "u4":
            let size = code.hasSuffix("8") ? 8 : 4
            try need(size)
            elements = .int64(size == 8 ? words(UInt64.self).map { Int64(bitPattern: $0) } : words(UInt32.self).map { code == "i4" ? Int64(Int32(bitPattern: $0)) : Int64($0) })
        default:
            throw fail("unsupported dtype '\(descr)' (use uint8, float32 or float64 images; integer labels)")
        }
        self.shape = shape
    }

    /// The value text of `'key': value` in a header dictionary (value up to the next top-level comma).
    static func field(_ header: String, _ key: String) -> String? {
        guard let range = header.range(of: "'\(key)':") else { return nil }
        var depth = 0, out = ""
        for ch in header[range.upperBound...] {
            if ch == "(" || ch == "[" { depth += 1 }
            if ch == ")" || ch == "]" { depth -= 1 }
            if (ch == "," && depth == 0) || (ch == "}" && depth <= 0) { break }
            out.append(ch)
        }
        return out.trimmingCharacters(in: CharacterSet(charactersIn: " '\""))
    }
}
