/// Writing NumPy `.npy` files (format version 1.0): the magic string, a little-endian header
/// length, a Python-literal header dictionary padded to a multiple of 64 bytes, then the data.
public enum NPY {
    /// One field of a structured array: a name and a per-row shape of Float32, or an Int64.
    public enum Field {
        case float32(name: String, values: [Float], perRow: Int)
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
