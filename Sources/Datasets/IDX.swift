import Files

/// What is wrong with an IDX file (the MNIST family's format).
public enum IDXError: Error, CustomStringConvertible, Equatable {
    case badMagic(path: String, found: [UInt8])
    case unsupportedType(path: String, code: UInt8)
    case wrongDimensions(path: String, expected: Int, found: Int)
    case truncated(path: String, expectedBytes: Int, foundBytes: Int)
    case trailingData(path: String, expectedBytes: Int, foundBytes: Int)
    case countMismatch(images: Int, labels: Int, imagesPath: String, labelsPath: String)
    case corruptGzip(path: String, problem: String)

    public var description: String {
        switch self {
        case .badMagic(let path, let found):
            "\(path): not an IDX file (magic bytes \(found.map { String($0, radix: 16) }.joined(separator: " ")), expected 0 0 8 n)"
        case .unsupportedType(let path, let code):
            "\(path): IDX element type 0x\(String(code, radix: 16)) is not supported (only unsigned bytes, 0x08)"
        case .wrongDimensions(let path, let expected, let found):
            "\(path): IDX file has \(found) dimensions, expected \(expected)"
        case .truncated(let path, let expected, let found):
            "\(path): truncated IDX file: the header promises \(expected) bytes of data, the file holds \(found)"
        case .trailingData(let path, let expected, let found):
            "\(path): IDX file holds \(found) bytes of data, more than the \(expected) its header describes"
        case .countMismatch(let images, let labels, let imagesPath, let labelsPath):
            "\(imagesPath) holds \(images) images but \(labelsPath) holds \(labels) labels"
        case .corruptGzip(let path, let problem):
            "\(path): \(problem)"
        }
    }
}

/// An IDX array of unsigned bytes: its dimensions and elements.
public struct IDXArray {
    public let dimensions: [Int]
    public let bytes: [UInt8]

    /// Parses an IDX file, gunzipping it first if it is gzip-compressed.
    public init(contentsOf path: String, expectedDimensions: Int) throws {
        var raw = try Files.read(path)
        if Gzip.isCompressed(raw) {
            do {
                raw = try Gzip.decompress(raw)
            } catch let error as Gzip.Error {
                throw IDXError.corruptGzip(path: path, problem: error.description)
            }
        }
        try self.init(consuming: &raw, path: path, expectedDimensions: expectedDimensions)
    }

    /// Parses IDX bytes: magic 00 00 08 n, n big-endian UInt32 sizes, then the elements.
    public init(bytes: [UInt8], path: String, expectedDimensions: Int) throws {
        var raw = bytes
        try self.init(consuming: &raw, path: path, expectedDimensions: expectedDimensions)
    }

    /// Parses IDX bytes, keeping their storage for the elements (the header is removed in place).
    init(consuming raw: inout [UInt8], path: String, expectedDimensions: Int) throws {
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else {
            throw IDXError.badMagic(path: path, found: Array(raw.prefix(4)))
        }
        guard raw[2] == 0x08 else { throw IDXError.unsupportedType(path: path, code: raw[2]) }
        let n = Int(raw[3])
        guard n == expectedDimensions else { throw IDXError.wrongDimensions(path: path, expected: expectedDimensions, found: n) }
        let headerSize = 4 + 4 * n
        guard raw.count >= headerSize else {
            throw IDXError.truncated(path: path, expectedBytes: headerSize, foundBytes: raw.count)
        }
        var dims: [Int] = []
        var elements = 1
        let found = raw.count - headerSize
        for k in 0..<n {
            let o = 4 + 4 * k
            let size = Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3])
            dims.append(size)
            // Absurd sizes are truncation, never an allocation or an overflow.
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            elements = overflow ? Int.max : product
        }
        guard found >= elements else { throw IDXError.truncated(path: path, expectedBytes: elements, foundBytes: found) }
        guard found == elements else { throw IDXError.trailingData(path: path, expectedBytes: elements, foundBytes: found) }
        dimensions = dims
        raw.removeFirst(headerSize)
        bytes = raw
        raw = []
    }
}
