import Datasets
import Testing

@Test func structuredNPYHasTheDocumentedLayout() {
    let bytes = NPY.structuredArray(rows: 2, fields: [
        .float32(name: "mu", values: [1, 2, 3, 4], perRow: 2), .int64(name: "label", values: [7, -1]),
    ])
    #expect(Array(bytes.prefix(8)) == [0x93] + Array("NUMPY".utf8) + [1, 0])
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    #expect((10 + headerLength) % 64 == 0)
    let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
    #expect(header.hasPrefix("{'descr': [('mu', '<f4', (2,)), ('label', '<i8')], 'fortran_order': False, 'shape': (2,), }"))
    #expect(header.hasSuffix("\n"))
    // Records: two floats then an int64, little-endian: 1.0 = 0x3F800000, 2.0 = 0x40000000.
    let data = Array(bytes[(10 + headerLength)...])
    #expect(data.count == 2 * (8 + 8))
    #expect(Array(data[0..<8]) == [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])
    #expect(Array(data[8..<16]) == [7, 0, 0, 0, 0, 0, 0, 0])
    #expect(Array(data[24..<32]) == [UInt8](repeating: 0xFF, count: 8))
}
