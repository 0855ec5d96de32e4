#if canImport(Glibc)
import Glibc
#endif

/// A seeded pseudo-random generator: xoshiro256** (Blackman & Vigna), seeded through SplitMix64.
///
/// One generator per run makes every run reproducible: the same seed gives the same numbers,
/// bit for bit, on every machine. Its whole `state` can be saved and restored.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    @usableFromInline var s0, s1, s2, s3: UInt64

    /// The generator's four state words, for saving and restoring.
    public var state: [UInt64] { [s0, s1, s2, s3] }

    public init(seed: UInt64) {
        var sm = seed
        func splitMix() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        (s0, s1, s2, s3) = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// Restores a saved state (four words, not all zero).
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        (s0, s1, s2, s3) = (state[0], state[1], state[2], state[3])
    }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inlinable @inline(__always) func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits (every Float in the grid k·2⁻²⁴).
    @inlinable
    public mutating func nextFloat() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// Uniform in (0, 1] with 53 random bits, safe to take the logarithm of.
    @inlinable
    public mutating func nextOpenDouble() -> Double {
        Double((next() >> 11) + 1) * 0x1p-53
    }

    /// Uniform integer in 0..<bound, without modulo bias (Lemire's multiply-and-reject).
    @inlinable
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Fills `count` floats with independent N(0, 1) draws (Box–Muller in Double precision).
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, mean: Float = 0, std: Float = 1) {
        var i = 0
        while i < count {
            let u1 = nextOpenDouble()
            let u2 = nextOpenDouble()
            let r = (-2 * log(u1)).squareRoot()
            let theta = 2 * Double.pi * u2
            out[i] = mean + std * Float(r * cos(theta))
            if i + 1 < count { out[i + 1] = mean + std * Float(r * sin(theta)) }
            i += 2
        }
    }

    /// Fills `count` floats uniform in [low, high).
    public mutating func fillUniform(_ out: UnsafeMutablePointer<Float>, count: Int, low: Float = 0, high: Float = 1) {
        let width = high - low
        for i in 0..<count { out[i] = low + width * nextFloat() }
    }

    /// Fills a tensor with N(mean, std²) draws.
    public mutating func fillNormal(_ t: Tensor, mean: Float = 0, std: Float = 1) {
        fillNormal(t.data, count: t.count, mean: mean, std: std)
    }

    /// Fills a tensor uniform in [low, high).
    public mutating func fillUniform(_ t: Tensor, low: Float = 0, high: Float = 1) {
        fillUniform(t.data, count: t.count, low: low, high: high)
    }

    /// Shuffles `array` in place (Fisher–Yates). Inlinable so that callers get a specialised
    /// copy: the unspecialised generic `swapAt` allocates on every swap.
    @inlinable
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            array.swapAt(i, nextInt(below: i + 1))
        }
    }
}
