/// Elementwise math written as straight-line Float arithmetic and integer bit operations, so
/// that loops calling it auto-vectorise (libm's `expf` is a scalar call). The C kernels in
/// `CKernels` use the same polynomial.

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
