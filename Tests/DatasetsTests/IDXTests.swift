import CZlib
import Datasets
import Files
import Foundation
import Tensor
import Testing
import TestSupport

/// IDX bytes: 00 00 08 n, big-endian sizes, then the data.
func idx(_ dims: [Int], _ data: [UInt8], typeCode: UInt8 = 8, magic: [UInt8] = [0, 0]) -> [UInt8] {
    var out = magic + [typeCode, UInt8(dims.count)]
    for d in dims { out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    return out + data
}

/// gzip-compresses with zlib's deflate (window bits 31 = gzip wrapper).
func gzip(_ input: [UInt8]) -> [UInt8] {
    var stream = z_stream()
    precondition(deflateInit2_(&stream, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))) + 64)
    var mutableInput = input
    mutableInput.withUnsafeMutableBufferPointer { inBuf in
        output.withUnsafeMutableBufferPointer { outBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = UInt32(inBuf.count)
            stream.next_out = outBuf.baseAddress
            stream.avail_out = UInt32(outBuf.count)
            precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END)
        }
    }
    return Array(output.prefix(Int(stream.total_out)))
}

/// Writes images [n, h, w] and labels [n] as IDX files in `dir` under the MNIST names.
func writeMNISTFiles(_ dir: String, split: DatasetName.Split, count n: Int, height h: Int = 3, width w: Int = 2, compressed: Bool) throws {
    let names = DatasetName.fileNames(split)
    let pixels = (0..<(n * h * w)).map { UInt8(($0 * 37) % 256) }
    let labels = (0..<n).map { UInt8($0 % 10) }
    let suffix = compressed ? ".gz" : ""
    let encode = { (b: [UInt8]) in compressed ? gzip(b) : b }
    try Files.writeAtomically(encode(idx([n, h, w], pixels)), to: "\(dir)/\(names.images)\(suffix)")
    try Files.writeAtomically(encode(idx([n], labels)), to: "\(dir)/\(names.labels)\(suffix)")
}

@Test(arguments: [false, true])
func readsIDXFilesGzippedOrNot(compressed: Bool) throws {
    let dir = temporaryDirectory()
    try writeMNISTFiles(dir, split: .train, count: 5, compressed: compressed)
    let data = try DatasetName.mnist.load(.train, directory: dir)
    #expect(data.count == 5 && data.shape == [1, 3, 2])
    #expect(data.pixels == (0..<30).map { UInt8(($0 * 37) % 256) })
    #expect(data.labels == [0, 1, 2, 3, 4])
}

func idxError(_ bytes: [UInt8], dims: Int = 3) -> IDXError? {
    do {
        _ = try IDXArray(bytes: bytes, path: "f", expectedDimensions: dims)
        return nil
    } catch {
        return error as? IDXError
    }
}

@Test func corruptIDXFilesGiveTypedErrors() {
    #expect(idxError(idx([2, 2, 2], [UInt8](repeating: 0, count: 8))) == nil)
    #expect(idxError(idx([1, 1, 1], [0], magic: [1, 0])) == .badMagic(path: "f", found: [1, 0, 8, 3]))
    #expect(idxError([0, 0]) == .badMagic(path: "f", found: [0, 0]))
    #expect(idxError(idx([1, 1, 1], [0, 0, 0, 0], typeCode: 0x0D)) == .unsupportedType(path: "f", code: 0x0D))
    #expect(idxError(idx([4], [0, 0, 0, 0])) == .wrongDimensions(path: "f", expected: 3, found: 1))
    #expect(idxError(idx([2, 2, 2], [0, 0, 0])) == .truncated(path: "f", expectedBytes: 8, foundBytes: 3))
    #expect(idxError(Array(idx([2, 2, 2], []).prefix(9))) == .truncated(path: "f", expectedBytes: 16, foundBytes: 9))
    #expect(idxError(idx([1, 1, 2], [0, 0, 0])) == .trailingData(path: "f", expectedBytes: 2, foundBytes: 3))
    // Absurd sizes (2³²−1 each) are reported as truncation, not allocated.
    let huge = idx([Int(UInt32.max), Int(UInt32.max), Int(UInt32.max)], [0])
    if case .truncated = idxError(huge) {} else { Issue.record("absurd dimensions not refused") }
}

@Test func errorsNameTheFile() throws {
    let dir = temporaryDirectory()
    try writeMNISTFiles(dir, split: .test, count: 3, compressed: true)
    let names = DatasetName.fileNames(.test)
    // Labels for 4 examples against 3 images.
    try Files.writeAtomically(gzip(idx([4], [0, 1, 2, 3])), to: "\(dir)/\(names.labels).gz")
    #expect(throws: IDXError.countMismatch(images: 3, labels: 4, imagesPath: "\(dir)/\(names.images).gz", labelsPath: "\(dir)/\(names.labels).gz")) {
        try DatasetName.mnist.load(.test, directory: dir)
    }
    // A gzip file cut short, and one with a flipped byte in its deflate stream.
    let full = gzip(idx([3, 3, 2], [UInt8](repeating: 7, count: 18)))
    try Files.writeAtomically(Array(full.prefix(full.count / 2)), to: "\(dir)/\(names.images).gz")
    do {
        _ = try DatasetName.mnist.load(.test, directory: dir)
        Issue.record("truncated gzip accepted")
    } catch let error as IDXError {
        #expect("\(error)".contains("\(names.images).gz: gzip data is truncated"))
    }
    var flipped = full
    flipped[12] ^= 0xFF
    try Files.writeAtomically(flipped, to: "\(dir)/\(names.images).gz")
    #expect(throws: IDXError.self) { try DatasetName.mnist.load(.test, directory: dir) }
    // A missing folder names the file it looked for.
    do {
        _ = try DatasetName.mnist.load(.train, directory: dir + "/nowhere")
        Issue.record("missing files accepted")
    } catch let error as FileError {
        #expect(error.path.hasSuffix("nowhere/train-images-idx3-ubyte.gz") && error.reason == "no such file")
    }
}

@Test func gzipRoundTripAndConcatenatedMembers() throws {
    let a = (0..<5000).map { UInt8($0 % 251) }, b: [UInt8] = [1, 2, 3]
    #expect(try Gzip.decompress(gzip(a)) == a)
    #expect(try Gzip.decompress(gzip(a) + gzip(b)) == a + b)
    #expect(throws: Gzip.Error.self) { try Gzip.decompress(gzip(a), limit: 100) }
}

func syntheticDataset(count: Int) -> ImageDataset {
    ImageDataset(pixels: (0..<(count * 4)).map { UInt8(($0 * 29) % 256) }, labels: (0..<count).map { $0 }, shape: [1, 2, 2])
}

@Test func batchesVisitEveryExampleOncePerEpochInShuffledOrder() {
    let data = syntheticDataset(count: 10)
    let loader = BatchLoader(dataset: data, batchSize: 4, shuffle: true, seed: 1)
    #expect(loader.batchesPerEpoch == 3)
    var orders: [[Int]] = []
    for _ in 0..<2 {
        var seen: [Int] = []
        var sizes: [Int] = []
        for batch in loader.epoch() {
            sizes.append(batch.count)
            #expect(batch.condition == nil)  // no one-hot labels unless asked for
            for (row, label) in (batch.labels ?? []).enumerated() {
                seen.append(label)
                // Values are pixel/255 of that example.
                for i in 0..<4 { #expect(batch.images[row * 4 + i] == Float(data.pixels[label * 4 + i]) / 255) }
            }
        }
        #expect(sizes == [4, 4, 2])
        #expect(seen.sorted() == Array(0..<10))
        orders.append(seen)
    }
    #expect(orders[0] != orders[1])
    #expect(orders[0] != Array(0..<10))
    let again = BatchLoader(dataset: data, batchSize: 4, shuffle: true, seed: 1)
    var first: [Int] = []
    for batch in again.epoch() { first += batch.labels ?? [] }
    #expect(first == orders[0])
}

@Test func dynamicBinarizationResamplesWithTheRightMean() {
    // Every pixel 64/255 ≈ 0.251: binarised values are 0 or 1 with that mean, different each epoch.
    let data = ImageDataset(pixels: [UInt8](repeating: 64, count: 4000 * 4), labels: nil, shape: [1, 2, 2])
    let loader = BatchLoader(dataset: data, batchSize: 4000, shuffle: false, binarize: true, seed: 2)
    var e1 = loader.epoch(), e2 = loader.epoch()
    let first = e1.next()!.images.toArray()
    let second = e2.next()!.images.toArray()
    #expect(first.allSatisfy { $0 == 0 || $0 == 1 })
    let mean = first.reduce(0, +) / Float(first.count)
    #expect(abs(mean - 64 / 255) < 0.02)  // σ ≈ 0.0034
    #expect(first != second)
}

/// Binarisation by counters: each example's binarised pixels are a function of (seed, epoch,
/// example) — the same whatever the batch size and the order — new in another epoch, 0 or 1 with
/// the pixel's mean; each batch says where its examples are (``BatchSource``). A loader that does
/// not fill leaves the images to the consumer, except where only it can make them (its
/// sequential binarisation).
@Test func counterBinarizationIsAFunctionOfEpochAndExample() {
    let data = ImageDataset(pixels: (0..<(64 * 100)).map { UInt8(truncatingIfNeeded: $0 * 37) }, labels: nil, shape: [1, 8, 8])
    func rows(batch: Int, shuffle: Bool, epoch: Int) -> [Int: [Float]] {
        let loader = BatchLoader(dataset: data, batchSize: batch, shuffle: shuffle, binarize: true, seed: 4)
        loader.counterBinarization = CounterNoise(seed: 9)
        var result: [Int: [Float]] = [:]
        for b in loader.epoch(number: epoch) {
            guard let source = b.source else { Issue.record("no source"); return [:] }
            #expect(source.epoch == epoch && source.binarization == CounterNoise(seed: 9) && source.positions.count == b.count)
            let values = b.images.toArray()
            for (r, p) in source.positions.enumerated() { result[source.order[p]] = Array(values[(r * 64)..<((r + 1) * 64)]) }
        }
        return result
    }
    let a = rows(batch: 7, shuffle: true, epoch: 3), b = rows(batch: 100, shuffle: false, epoch: 3), c = rows(batch: 7, shuffle: true, epoch: 4)
    #expect(a.count == 100 && a == b)
    #expect(a != c)
    let all = a.values.flatMap { $0 }
    #expect(all.allSatisfy { $0 == 0 || $0 == 1 })
    let expected = data.pixels.reduce(0.0) { $0 + Double($1) / 255 } / Double(data.pixels.count)
    #expect(abs(Double(all.reduce(0, +)) / Double(all.count) - expected) < 0.02)  // σ ≈ 0.006

    // Order versions: a new epoch's shuffle changes it, and no two loaders share one.
    let one = BatchLoader(dataset: data, batchSize: 10, shuffle: true, seed: 4), two = BatchLoader(dataset: data, batchSize: 10, shuffle: true, seed: 4)
    var (e1, e2) = (one.epoch(), two.epoch())
    let (v1, v2) = (e1.next()!.source!.orderVersion, e2.next()!.source!.orderVersion)
    var again = one.epoch()
    #expect(v1 != v2 && again.next()!.source!.orderVersion != v1)

    // Not filled: the batch tensor keeps its zeros; with sequential binarisation it is filled.
    for counter in [true, false] {
        let loader = BatchLoader(dataset: data, batchSize: 10, shuffle: false, binarize: true, seed: 4)
        if counter { loader.counterBinarization = CounterNoise(seed: 9) }
        loader.fillsImages = false
        var epoch = loader.epoch()
        let batch = epoch.next()!
        #expect((batch.source != nil) == counter)
        #expect(batch.images.toArray().allSatisfy { $0 == 0 } == counter)
    }
}

@Test func batchesCarryTheirOneHotLabels() {
    let data = syntheticDataset(count: 10)
    let loader = BatchLoader(dataset: data, batchSize: 4, shuffle: true, seed: 3, conditionClasses: 10)
    for batch in loader.epoch() {
        let labels = batch.labels ?? []
        #expect(labels.count == batch.count)
        guard let condition = batch.condition else { Issue.record("no one-hot labels"); return }
        #expect(condition.shape == [batch.count, 10])
        for (row, label) in labels.enumerated() {
            for k in 0..<10 { #expect(condition[row * 10 + k] == (k == label ? 1 : 0)) }
        }
    }
}

@Test func fixedBinarizationIsDeterministic() {
    let data = syntheticDataset(count: 50)
    let a = data.binarized(seed: 0), b = data.binarized(seed: 0), c = data.binarized(seed: 1)
    #expect(a.pixels == b.pixels && a.pixels != c.pixels)
    #expect(a.pixels.allSatisfy { $0 == 0 || $0 == 255 })
    #expect(zip(data.pixels, a.pixels).allSatisfy { $0 != 0 || $1 == 0 })  // black stays black
    #expect(a.labels == data.labels)
}

/// Batches made by a pool's threads, a slice of rows each (``BatchLoader/rowPool``), hold what one
/// thread makes, bit for bit, on every path: bytes scaled, float values copied, counter
/// binarisation of either, and the sequential generator's binarisation (which the pool leaves to
/// one thread, in order) — with more threads than some batches have rows.
@Test func batchesMadeByAPoolEqualThoseOfOneThread() {
    let bytes = ImageDataset(pixels: (0..<(64 * 50)).map { UInt8(truncatingIfNeeded: $0 * 37 + 5) }, labels: nil, shape: [1, 8, 8])
    let values = ImageDataset(values: (0..<(64 * 50)).map { Float(($0 * 53) % 97) / 96 }, labels: nil, shape: [1, 8, 8])
    let pool = WorkerPool(count: 3, pinned: false)
    for data in [bytes, values] {
        for (binarize, counter) in [(false, false), (true, true), (true, false)] {
            func epochs(_ pool: WorkerPool?) -> [[Float]] {
                let loader = BatchLoader(dataset: data, batchSize: 7, shuffle: true, binarize: binarize, seed: 4)
                if counter { loader.counterBinarization = CounterNoise(seed: 9) }
                loader.rowPool = pool
                return (0..<2).flatMap { e in loader.epoch(number: e).map { $0.images.toArray() } }
            }
            let (one, pooled) = (epochs(nil), epochs(pool))
            #expect(one.count == 16 && one == pooled, "\(data.values == nil ? "bytes" : "values"), binarize \(binarize), counter \(counter)")
        }
    }
}
