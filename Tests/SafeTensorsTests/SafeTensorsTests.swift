import Foundation
import SafeTensors
import Testing

/// A file assembled by hand: header length, header text, data bytes.
func file(_ header: String, _ data: [UInt8] = []) -> [UInt8] {
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init) + Array(header.utf8) + data
}

@Test func writerProducesTheDocumentedLayout() throws {
    var writer = SafeTensorsWriter(metadata: ["k": "v"])
    writer.add("b", shape: [2], floats: [1, -2])
    writer.add("a", shape: [1, 1], floats: [0.5])
    let bytes = writer.serialize()
    let header = #"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    var padded = header
    while (padded.utf8.count) % 8 != 0 { padded += " " }
    // 0.5 = 0x3F000000, 1 = 0x3F800000, −2 = 0xC0000000, little-endian.
    let expected = file(padded, [0, 0, 0, 0x3F, 0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0])
    #expect(bytes == expected)
    let archive = try SafeTensorsArchive(bytes: bytes)
    #expect(archive.metadata == ["k": "v"])
    #expect(try archive.floats("a") == [0.5])
    #expect(try archive.floats("b") == [1, -2])
    #expect(archive.tensors["b"] == TensorInfo(dtype: .f32, shape: [2], dataRange: 4..<12))
}

@Test func roundTripKeepsEveryBit() throws {
    let values: [Float] = [.pi, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .infinity, 1e-30]
    var writer = SafeTensorsWriter()
    writer.add("x", shape: [2, 3], floats: values)
    let back = try SafeTensorsArchive(bytes: writer.serialize()).floats("x")
    #expect(back.map(\.bitPattern) == values.map(\.bitPattern))
}

@Test func readsOtherDTypesAndAnEmptyTensor() throws {
    let bytes = file(#"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, [0, 60, 0, 64])
    let archive = try SafeTensorsArchive(bytes: bytes)
    #expect(archive.tensors["h"]?.dtype == .f16)
    #expect(try archive.floats("e") == [])
    #expect(throws: SafeTensorsError.wrongDType(name: "h", found: "F16", expected: "F32")) { try archive.floats("h") }
    #expect(throws: SafeTensorsError.missingTensor("z")) { try archive.floats("z") }
}

func parseError(_ bytes: [UInt8]) -> String? {
    do {
        _ = try SafeTensorsArchive(bytes: bytes)
        return nil
    } catch {
        return "\(error)"
    }
}

@Test func malformedFilesAreRefused() {
    let ok = #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
    #expect(parseError(file(ok, [0, 0, 0, 0])) == nil)
    let cases: [([UInt8], String)] = [
        ([1, 2, 3], "fewer than the 8-byte header length"),
        (withUnsafeBytes(of: UInt64(500).littleEndian, Array.init) + [UInt8](repeating: 32, count: 10), "header length 500 but only 10 bytes follow"),
        (withUnsafeBytes(of: UInt64(1) << 40, Array.init), "exceeds the 100000000-byte limit"),
        (file("[1,2]"), "does not start with '{'"),
        (file("{\"t\": nope}"), "not valid JSON"),
        (file(#"{"t":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "unknown dtype 'F99'"),
        (file(#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "not a non-negative integer"),
        (file(#"{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "not a non-negative integer"),
        (file(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "needs 8 bytes but data_offsets span 4"),
        (file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#, [0, 0, 0, 0]), "past the 4 bytes"),
        (file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, [0, 0, 0, 0]), "end before they begin"),
        (file(#"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "larger than the file"),
        (file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, [UInt8](repeating: 0, count: 8)), "overlaps"),
        (file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, [UInt8](repeating: 0, count: 8)), "gap in the data"),
        (file(ok, [0, 0, 0, 0, 9]), "cover 4 bytes of data but the file holds 5"),
        (file(#"{"__metadata__":{"k":1}}"#), "value for 'k' is not a string"),
        (file(#"{"t":[1]}"#), "entry is not an object"),
    ]
    for (bytes, message) in cases {
        let error = parseError(bytes)
        #expect(error?.contains(message) == true, "expected '\(message)', got \(error ?? "success")")
    }
}

@Test func namesNeedingEscapesSurviveTheHeader() throws {
    var writer = SafeTensorsWriter(metadata: ["note": "line\nbreak \"quoted\" \\ tab\t"])
    writer.add("odd \"name\"", shape: [1], floats: [3])
    let archive = try SafeTensorsArchive(bytes: writer.serialize())
    #expect(archive.metadata["note"] == "line\nbreak \"quoted\" \\ tab\t")
    #expect(try archive.floats("odd \"name\"") == [3])
}
