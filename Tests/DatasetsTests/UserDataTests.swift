import Datasets
import Files
import Foundation
import Imaging
import Testing
import TestSupport

/// A .npy file by hand: magic, version 1.0, a header padded to 64 bytes, then `data`.
func npy(descr: String, shape: String, data: [UInt8], fortran: Bool = false, magic: [UInt8] = [0x93] + Array("NUMPY".utf8)) -> [UInt8] {
    var header = Array("{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }".utf8)
    while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
    header.append(0x0A)
    return magic + [1, 0, UInt8(header.count & 255), UInt8(header.count >> 8)] + header + data
}

func littleEndianFloats(_ v: [Float]) -> [UInt8] { v.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
func bigEndianDoubles(_ v: [Double]) -> [UInt8] { v.flatMap { withUnsafeBytes(of: $0.bitPattern.bigEndian, Array.init) } }

func write(_ bytes: [UInt8], _ dir: String, _ name: String) throws -> String {
    let path = "\(dir)/\(name)"
    try Files.writeAtomically(bytes, to: path)
    return path
}

@Test func npyImagesInEveryTypeAndShape() throws {
    let dir = temporaryDirectory()
    // uint8 [2, 2, 3] → [1, 2, 3] per image, bytes kept.
    let bytes = try UserData.load(try write(npy(descr: "|u1", shape: "(2, 2, 3)", data: Array(0..<12)), dir, "u8.npy"))
    #expect(bytes.count == 2 && bytes.shape == [1, 2, 3] && bytes.pixels == Array(0..<12) && bytes.values == nil)
    // float32 [3, 2] in [0, 1]: kept; with --image-shape.
    let f = try UserData.load(try write(npy(descr: "<f4", shape: "(3, 2)", data: littleEndianFloats([0, 0.5, 1, 0.25, 0.75, 0.1])), dir, "f4.npy"), imageShape: [1, 1, 2])
    #expect(f.shape == [1, 1, 2] && f.values == [0, 0.5, 1, 0.25, 0.75, 0.1])
    // big-endian float64 [1, 2, 1, 2] in [0, 255]: divided by 255.
    let d = try UserData.load(try write(npy(descr: ">f8", shape: "(1, 2, 1, 2)", data: bigEndianDoubles([0, 51, 255, 127.5])), dir, "f8.npy"))
    #expect(d.shape == [2, 1, 2] && d.values == [0, 0.2, 1, 0.5])
    // Labels: int64 and uint8.
    let labels = try write(npy(descr: "<i8", shape: "(2,)", data: [3, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]), dir, "labels.npy")
    #expect(try UserData.load("\(dir)/u8.npy", labels: labels).labels == [3, 7])
}

func loadError(_ bytes: [UInt8], name: String = "x.npy", labels: String? = nil, imageShape: [Int]? = nil) throws -> String {
    let dir = temporaryDirectory()
    let path = try write(bytes, dir, name)
    do {
        _ = try UserData.load(path, labels: labels, imageShape: imageShape)
        return "loaded"
    } catch {
        return "\(error)"
    }
}

@Test func badNPYFilesAreRefusedWithTheirReason() throws {
    let ok = npy(descr: "<f4", shape: "(1, 2)", data: littleEndianFloats([0.1, 0.2]))
    #expect(try loadError(ok) == "loaded")
    let cases: [([UInt8], String)] = [
        (Array(ok.prefix(5)), "not a NumPy .npy file"),
        (npy(descr: "<f4", shape: "(1, 2)", data: [], magic: Array("NOTNPY".utf8)), "wrong magic"),
        (Array(ok.prefix(8)) + [0xFF, 0xFF] + Array(ok.suffix(from: 10)), "runs past the end of the file"),
        (npy(descr: "<f4", shape: "(1, 2)", data: littleEndianFloats([0.1, 0.2]), fortran: true), "Fortran-ordered"),
        (npy(descr: "<f4", shape: "(1, -2)", data: []), "is not a tuple of sizes"),
        (npy(descr: "<f4", shape: "(1, 3)", data: littleEndianFloats([0.1, 0.2])), "truncated data: shape [1, 3] of <f4 needs 12 bytes, the file holds 8"),
        (npy(descr: "<f4", shape: "(1, 1)", data: littleEndianFloats([0.1, 0.2])), "bytes after the data"),
        (npy(descr: "<c8", shape: "(1, 1)", data: [0, 0, 0, 0, 0, 0, 0, 0]), "unsupported dtype '<c8'"),
        (npy(descr: "<f4", shape: "(1, 2)", data: littleEndianFloats([.nan, 0.2])), "NaN or infinite"),
        (npy(descr: "<f4", shape: "(1, 2)", data: littleEndianFloats([-1, 0.2])), "values span [-1.0, 0.20000000298023224]"),
        (npy(descr: "<f4", shape: "(1, 2, 3, 4, 5)", data: littleEndianFloats([Float](repeating: 0, count: 120))), "is not [N, H, W]"),
        (npy(descr: "<f4", shape: "(2147483647, 2147483647, 2147483647)", data: []), "needs more data"),
        (npy(descr: "<i8", shape: "(1, 1)", data: [1, 0, 0, 0, 0, 0, 0, 0]), "integer images are not supported"),
    ]
    for (bytes, message) in cases {
        let error = try loadError(bytes)
        #expect(error.contains("x.npy: ") && error.contains(message), "expected '\(message)', got \(error)")
    }
    #expect(try loadError(ok, imageShape: [1, 3, 1]).contains("cannot be shaped as [1, 3, 1]"))
    let dir = temporaryDirectory()
    let wrongCount = try write(npy(descr: "|u1", shape: "(3,)", data: [1, 2, 3]), dir, "l.npy")
    #expect(try loadError(ok, labels: wrongCount).contains("holds 3 labels for the 1 images"))
}

@Test func csvWithAndWithoutAHeader() throws {
    let dir = temporaryDirectory()
    let plain = try UserData.load(try write(Array("0,0.5,1\n0.25,0.75,0\n".utf8), dir, "a.csv"))
    #expect(plain.count == 2 && plain.shape == [1, 1, 3] && plain.labels == nil && plain.values == [0, 0.5, 1, 0.25, 0.75, 0])
    let labelled = try UserData.load(try write(Array("p1,label,p2\n255,4,0\n51,1,102\n".utf8), dir, "b.csv"))
    #expect(labelled.labels == [4, 1] && labelled.values == [1, 0, 0.2, 0.4])
    for (text, message) in [("1,2\n3\n", "row 2 has 1 columns, expected 2"),
                            // Found by the fuzzer: a header wider than the rows (a vertical tab is not a line break).
                            ("0,02,label,p2\n20,0\u{0B}2,.50\n", "row 1 has 3 columns, expected 4"), ("1,2\n3,x\n", "row 2, column 2: 'x' is not a number"),
                            ("label\n1\n", "has no data columns"), ("a,b\n", "has a header but no rows"), ("label,p\n1.5,0\n", "row 1: label 1.5 is not a whole number")] {
        do {
            _ = try UserData.load(try write(Array(text.utf8), dir, "bad.csv"))
            Issue.record("accepted \(text)")
        } catch {
            #expect("\(error)".contains("bad.csv: \(message)"), "\(error)")
        }
    }
}

@Test func pngFoldersFlatOrByClass() throws {
    let dir = temporaryDirectory()
    let grey = Image(width: 3, height: 2, channels: 1, pixels: [0, 51, 102, 153, 204, 255])
    let rgb = Image(width: 3, height: 2, channels: 3, pixels: (0..<18).map { UInt8($0 * 10) })
    try FileManager.default.createDirectory(atPath: dir + "/flat", withIntermediateDirectories: true)
    try PNG.write(grey, to: dir + "/flat/b.png")
    try PNG.write(grey, to: dir + "/flat/a.png")
    let flat = try UserData.load(dir + "/flat")
    #expect(flat.count == 2 && flat.shape == [1, 2, 3] && flat.labels == nil && Array(flat.pixels.prefix(6)) == grey.pixels)
    for (i, name) in ["cats", "dogs"].enumerated() {
        try FileManager.default.createDirectory(atPath: "\(dir)/classes/\(name)", withIntermediateDirectories: true)
        for k in 0...i { try PNG.write(rgb, to: "\(dir)/classes/\(name)/\(k).png") }
    }
    let classes = try UserData.load(dir + "/classes")
    #expect(classes.count == 3 && classes.shape == [3, 2, 3] && classes.labels == [0, 1, 1])
    #expect(classes.classNames == ["cats", "dogs"] && classes.subset([2]).classNames == ["cats", "dogs"])
    // Planar: the red channel of the 6 pixels first.
    #expect(Array(classes.pixels.prefix(6)) == [0, 30, 60, 90, 120, 150])
    try PNG.write(Image(width: 4, height: 2, channels: 1, pixels: [UInt8](repeating: 0, count: 8)), to: dir + "/flat/c.png")
    do {
        _ = try UserData.load(dir + "/flat")
        Issue.record("mixed sizes accepted")
    } catch {
        #expect("\(error)".contains("c.png: is 4×2 with 1 channel(s), unlike the first image (3×2, 1)"))
    }
    try Files.writeAtomically([1, 2, 3], to: dir + "/flat/c.png")
    #expect(throws: FileError.self) { try UserData.load(dir + "/flat") }
    try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
    #expect(throws: FileError.self) { try UserData.load(dir + "/empty") }
}

@Test func seededTestSplit() {
    let data = ImageDataset(pixels: (0..<100).map { UInt8($0) }, labels: Array(0..<100), shape: [1, 1, 1])
    let a = UserData.split(data, testFraction: 0.1, seed: 4), b = UserData.split(data, testFraction: 0.1, seed: 4)
    #expect(a.test.count == 10 && a.train.count == 90)
    #expect(a.test.labels == b.test.labels && Set(a.test.labels! + a.train.labels!) == Set(0..<100))
    #expect(UserData.split(data, testFraction: 0.1, seed: 5).test.labels != a.test.labels)
}
