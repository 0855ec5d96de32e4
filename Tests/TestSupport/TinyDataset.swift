import Foundation

/// An IDX file's bytes: unsigned bytes with the given dimensions.
public func idxFile(_ dims: [Int], _ data: [UInt8]) -> Data {
    var out: [UInt8] = [0, 0, 8, UInt8(dims.count)]
    for d in dims { out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    return Data(out + data)
}

/// A tiny MNIST-format data set (side × side images of bars, 8 × 8 unless asked, labels k mod
/// 10) under the standard file names in `dir`, for tests that train whole runs in a second.
public func writeTinyDataset(_ dir: String, train: Int = 96, test: Int = 40, side: Int = 8) throws {
    for (split, n) in [("train", train), ("t10k", test)] {
        var pixels: [UInt8] = []
        for k in 0..<n {
            for y in 0..<side { for x in 0..<side { pixels.append((k % 2 == 0 ? x : y) == k % side ? 250 : 10) } }
        }
        try idxFile([n, side, side], pixels).write(to: URL(fileURLWithPath: "\(dir)/\(split)-images-idx3-ubyte"))
        try idxFile([n], (0..<n).map { UInt8($0 % 10) }).write(to: URL(fileURLWithPath: "\(dir)/\(split)-labels-idx1-ubyte"))
    }
}
