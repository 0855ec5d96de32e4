import Foundation
import Testing
import Tensor

@Test func sameSeedSameNumbersDifferentSeedDifferentNumbers() {
    var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42), c = RandomGenerator(seed: 43)
    let xs = (0..<100).map { _ in a.next() }
    #expect(xs == (0..<100).map { _ in b.next() })
    #expect(xs != (0..<100).map { _ in c.next() })
}

@Test func stateRestoresTheStream() {
    var a = RandomGenerator(seed: 7)
    for _ in 0..<10 { _ = a.next() }
    var b = RandomGenerator(state: a.state)!
    #expect((0..<50).map { _ in a.next() } == (0..<50).map { _ in b.next() })
    #expect(RandomGenerator(state: [0, 0, 0, 0]) == nil)
    #expect(RandomGenerator(state: [1, 2]) == nil)
}

@Test func xoshiroMatchesReferenceRecurrence() {
    // Step the published xoshiro256** recurrence by hand from a known state.
    var s: [UInt64] = [1, 2, 3, 4]
    func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
    var expected: [UInt64] = []
    for _ in 0..<5 {
        expected.append(rotl(s[1] &* 5, 7) &* 9)
        let t = s[1] << 17
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45)
    }
    var g = RandomGenerator(state: [1, 2, 3, 4])!
    #expect((0..<5).map { _ in g.next() } == expected)
    #expect(expected[0] == 11520)  // rotl(2·5, 7)·9 = 1280·9
}

@Test func normalSamplerHasUnitMomentsAndGaussianTails() {
    var rng = RandomGenerator(seed: 1)
    let n = 400_000
    var xs = [Float](repeating: 0, count: n)
    xs.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: n) }
    let mean = xs.reduce(0.0) { $0 + Double($1) } / Double(n)
    let variance = xs.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n - 1)
    let kurtosis = xs.reduce(0.0) { $0 + pow(Double($1) - mean, 4) } / Double(n) / (variance * variance)
    let beyond2 = Double(xs.filter { abs($0) > 2 }.count) / Double(n)
    // Standard errors: mean 1/√n ≈ 0.0016, variance √(2/n) ≈ 0.0022; allow about 4 of them.
    #expect(abs(mean) < 0.0065)
    #expect(abs(variance - 1) < 0.009)
    #expect(abs(kurtosis - 3) < 0.05)
    #expect(abs(beyond2 - 0.0455) < 0.0015)  // P(|Z| > 2) = 0.0455
}

@Test func fillNormalHonoursOddCountsAndMeanStd() {
    var rng = RandomGenerator(seed: 3)
    let t = Tensor(shape: [10_001])
    rng.fillNormal(t, mean: 5, std: 0.5)
    let mean = t.sum() / Double(t.count)
    #expect(abs(mean - 5) < 0.03)
    #expect(t[10_000] != 0)
}

@Test func uniformAndBoundedIntegers() {
    var rng = RandomGenerator(seed: 9)
    var counts = [Int](repeating: 0, count: 7)
    for _ in 0..<70_000 {
        let f = rng.nextFloat()
        #expect(f >= 0 && f < 1)
        counts[rng.nextInt(below: 7)] += 1
    }
    // Each bucket expects 10,000 with σ ≈ 93.
    #expect(counts.allSatisfy { abs($0 - 10_000) < 450 })
    var open = RandomGenerator(seed: 1)
    for _ in 0..<10_000 {
        let u = open.nextOpenDouble()
        #expect(u > 0 && u <= 1)
    }
}

@Test func shuffleIsAPermutationAndSeeded() {
    var a = RandomGenerator(seed: 5), b = RandomGenerator(seed: 5)
    var x = Array(0..<100), y = Array(0..<100)
    a.shuffle(&x)
    b.shuffle(&y)
    #expect(x == y)
    #expect(x != Array(0..<100))
    #expect(x.sorted() == Array(0..<100))
}
