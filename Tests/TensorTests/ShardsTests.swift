import Tensor
import Testing

/// The shards of a flat buffer: contiguous, in owner order, covering every element once, near
/// equal, with every inner bound on a 16-element (64-byte) line.
@Test(arguments: [1, 2, 3, 4, 7, 8, 16])
func shardsCoverTheBufferOnceOnWholeLines(parts: Int) {
    for count in [0, 1, 15, 16, 17, 100, 2244, 652_824] {
        let shards = Shards(count: count, parts: parts)
        #expect(shards.counts.count == parts && shards.offsets.count == parts)
        #expect(shards.count == count)
        var next = 0
        for p in 0..<parts {
            #expect(shards.offsets[p] == next, "\(count) over \(parts): shard \(p) starts at \(shards.offsets[p]), not \(next)")
            #expect(shards.counts[p] >= 0)
            next += shards.counts[p]
            if p < parts - 1 { #expect(next % 16 == 0 || next == count, "inner bound \(next) of \(count) over \(parts)") }
        }
        #expect(next == count)
        // Near equal: no shard more than one line larger than an even share rounded up to lines.
        let lines = (count + 15) / 16
        let most = ((lines + parts - 1) / parts) * 16
        #expect(shards.counts.allSatisfy { $0 <= most }, "\(count) over \(parts): \(shards.counts)")
    }
}

/// A tensor that is a stretch of the flat buffer is shared out as the buffer is: owner p gets the
/// stretch's elements in its shard (checked against a naive element-by-element count).
@Test func restrictedShardsCountTheWindowsElements() {
    let shards = Shards(count: 2244, parts: 4)
    for window in [0..<1024, 1024..<1040, 1040..<1104, 1100..<2244, 0..<2244, 561..<562, 700..<700] {
        let restricted = shards.restricted(to: window)
        var naive = [Int](repeating: 0, count: 4)
        for i in window { naive[(0..<4).first { shards.range($0).contains(i) }!] += 1 }
        #expect(restricted.counts == naive, "\(window): \(restricted.counts) against \(naive)")
        #expect(restricted.count == window.count)
        #expect(restricted.offsets == [0, naive[0], naive[0] + naive[1], naive[0] + naive[1] + naive[2]])
    }
}
