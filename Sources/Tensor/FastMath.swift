/// Elementwise math written as straight-line Float arithmetic and integer bit operations, so
/// that loops calling it auto-vectorise (libm's `expf`/`log1pf` are scalar calls).

/// eˣ with relative error below 2·10⁻⁷ for x in [−87, 88]; 0 below −87.3, +∞ above 88.7.
///
/// x = n·ln 2 + r with |r| ≤ ½ ln 2, eʳ by its degree-7 Taylor polynomial, 2ⁿ built in the
/// exponent bits.
@inlinable @inline(__always)
public func fastExp(_ x: Float) -> Float {
    let clamped = min(max(x, -87.3), 88.7)
    // Round x·log₂e to the nearest integer with the 1.5·2²³ trick (no Float→Int conversion).
    let magic: Float = 12_582_912
    let shifted = clamped * 1.442_695_04 + magic
    let n = shifted - magic
    // r = x − n·ln 2, with ln 2 split in two for accuracy.
    let r = (clamped - n * 0.693_145_75) - n * 1.428_606_8e-6
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // 2ⁿ: n + 127 in the exponent field. n ∈ [−126, 128] after clamping; split in two factors
    // so that the extremes stay representable.
    let k = Int32(bitPattern: shifted.bitPattern &- magic.bitPattern)
    let half = k >> 1
    let scaleA = Float(bitPattern: UInt32(bitPattern: (half &+ 127) &<< 23))
    let scaleB = Float(bitPattern: UInt32(bitPattern: (k &- half &+ 127) &<< 23))
    let result = p * scaleA * scaleB
    return x < -87.3 ? 0 : (x > 88.7 ? .infinity : result)
}

/// log(1 + y) for y in [0, 1], absolute error below 2·10⁻⁷ (relative 10⁻⁶ for small y): 2·atanh(s) with s = y/(2 + y) ≤ ⅓,
/// summed as an odd series (no cancellation for small y).
@inlinable @inline(__always)
public func fastLog1p(unit y: Float) -> Float {
    let s = y / (2 + y)
    let s2 = s * s
    var p: Float = 1.0 / 13
    p = p * s2 + 1.0 / 11
    p = p * s2 + 1.0 / 9
    p = p * s2 + 1.0 / 7
    p = p * s2 + 1.0 / 5
    p = p * s2 + 1.0 / 3
    p = p * s2 + 1
    return 2 * s * p
}

/// Σ p[0..<n] with sixteen interleaved partial sums (a plain `s += p[i]` loop cannot vectorise
/// because reordering float additions changes the result; this fixes one order that can).
@inlinable
public func vectorSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>()
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + 16 <= n {
        acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    var tail: Float = 0
    while i < n {
        tail += p[i]
        i += 1
    }
    return acc.sum() + tail
}
