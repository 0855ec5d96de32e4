import Foundation
import Testing
import Tensor

/// The published known-answer vectors of Philox4x32-10 (Random123's kat_vectors: counter, key
/// → output).
@Test func philoxMatchesThePublishedKnownAnswers() {
    func check(_ counter: (UInt32, UInt32, UInt32, UInt32), _ key: (UInt32, UInt32), _ expected: [UInt32]) {
        let out = CounterNoise.philox(counter: counter, key: key)
        #expect([out.0, out.1, out.2, out.3] == expected, "\(counter) \(key)")
    }
    check((0, 0, 0, 0), (0, 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
    check((.max, .max, .max, .max), (.max, .max), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
    check((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0), [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
}

/// Number i does not depend on how the numbers are drawn: pieces at any offsets equal one call,
/// and each number equals Box–Muller written out here on the Philox words of its block.
@Test func counterNoiseIsAPureFunctionOfItsIndex() {
    let noise = CounterNoise(seed: 0x1234_5678_9abc_def0)
    let whole = noise.normals(stream: 7, count: 1001)
    var pieces: [Float] = []
    var start = 0
    for length in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 393] {
        pieces += noise.normals(stream: 7, first: UInt64(start), count: length)
        start += length
    }
    #expect(start == 1001 && pieces == whole)
    for i in [0, 1, 2, 3, 4, 517, 1000] {
        let block = UInt64(i / 4)
        let w = CounterNoise.philox(counter: (UInt32(truncatingIfNeeded: block), UInt32(block >> 32), 7, 0), key: (0x9abc_def0, 0x1234_5678))
        let words = [w.0, w.1, w.2, w.3]
        let pair = (i % 4) / 2
        let u1 = (Double(words[2 * pair]) + 0.5) / 4_294_967_296, u2 = (Double(words[2 * pair + 1]) + 0.5) / 4_294_967_296
        let r = (-2 * Foundation.log(u1)).squareRoot()
        let expected = Float(i % 2 == 0 ? r * Foundation.cos(2 * Double.pi * u2) : r * Foundation.sin(2 * Double.pi * u2))
        #expect(whole[i] == expected, "number \(i)")
    }
    // Another stream or seed gives other numbers.
    #expect(noise.normals(stream: 8, count: 16) != Array(whole.prefix(16)))
    #expect(CounterNoise(seed: 1).normals(stream: 7, count: 16) != Array(whole.prefix(16)))
}

/// A million numbers: mean 0 and variance 1 within five standard errors, and the fractions beyond
/// ±1, ±2 and ±3 as the normal distribution has them (within five binomial standard errors).
@Test func counterNoiseIsStandardNormal() {
    let n = 1 << 20
    let z = CounterNoise(seed: 42).normals(stream: 0, count: n).map(Double.init)
    let mean = z.reduce(0, +) / Double(n)
    let variance = z.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
    #expect(abs(mean) < 5 / Double(n).squareRoot(), "mean \(mean)")
    #expect(abs(variance - 1) < 5 * (2 / Double(n)).squareRoot(), "variance \(variance)")
    for (k, tail) in [(1.0, 0.317_310_507_862_914_2), (2.0, 0.045_500_263_896_358_4), (3.0, 0.002_699_796_063_260_2)] {
        let observed = Double(z.filter { abs($0) > k }.count) / Double(n)
        #expect(abs(observed - tail) < 5 * (tail * (1 - tail) / Double(n)).squareRoot(), "P(|z| > \(k)) = \(observed), expected \(tail)")
    }
}
