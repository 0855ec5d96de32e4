import Foundation
import Testing
import Tensor
import TestSupport

/// x rounded to bfloat16, nearest even (the top 16 bits of the FP32 pattern after adding
/// 0x7FFF plus the lowest kept bit), written independently of the kernel's `vcvtne2ps2bf16`.
func roundedToBF16(_ x: Float) -> Float {
    let bits = x.bitPattern
    let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
    return Float(bitPattern: rounded)
}

/// bf16 products against double-precision references, for the four transposition cases and
/// shapes with every kind of tail (odd k, n not a multiple of 16 or 32, fewer rows than a block):
/// (1) against the exact product of the *bf16-rounded* operands, to FP32 summation error
/// (1e-6 of Σ|a·b|): the kernel rounds as the definition says and sums in FP32;
/// (2) against the exact product of the unrounded operands, to bf16's own error: each operand
/// carries at most 2⁻⁸ relative error (the unit roundoff of 8 significant bits), a product of two
/// at most 2⁻⁷ + 2⁻¹⁶, so |C − C_exact| ≤ (2⁻⁷ + 2⁻¹⁶)·|α|·Σ|a·b| + FP32 error; FP32 products (OpenBLAS) meet 1e-6;
/// (3) the bf16 result is not the FP32 one (the operands really were rounded).
@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func bf16ProductsMatchDoublePrecisionReferences() {
    let shapes = [(1, 1, 1), (3, 5, 7), (13, 33, 9), (20, 40, 400), (64, 400, 129), (25, 17, 2), (12, 32, 1)]
    var seed: UInt64 = 1
    for (m, n, k) in shapes {
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                seed += 1
                let a = randomTensor(transposeA ? [k, m] : [m, k], seed: seed)
                let b = randomTensor(transposeB ? [n, k] : [k, n], seed: seed + 1000)
                let c0 = randomTensor([m, n], seed: seed + 2000)
                let (alpha, beta): (Float, Float) = seed % 2 == 0 ? (0.7, 0) : (1.3, 0.5)
                let c16 = c0.clone(), c32 = c0.clone()
                matmul(a, b, into: c16, transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: beta, precision: .bf16)
                matmul(a, b, into: c32, transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: beta)
                let (aValues, bValues) = (a.toArray(), b.toArray())
                let exact = referenceMatmul(aValues, bValues, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
                let ofRounded = referenceMatmul(aValues.map(roundedToBF16), bValues.map(roundedToBF16), m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
                let magnitude = referenceMatmul(aValues.map(abs), bValues.map(abs), m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
                var worst = (rounded: 0.0, bf16: 0.0, fp32: 0.0)
                var differs = false
                for i in 0..<(m * n) {
                    let base = Double(beta) * Double(c0[i])
                    let scale = Double(alpha) * magnitude[i] + abs(base) + 1e-30
                    worst.rounded = max(worst.rounded, abs(Double(c16[i]) - (Double(alpha) * ofRounded[i] + base)) / scale)
                    worst.bf16 = max(worst.bf16, abs(Double(c16[i]) - (Double(alpha) * exact[i] + base)) / scale)
                    worst.fp32 = max(worst.fp32, abs(Double(c32[i]) - (Double(alpha) * exact[i] + base)) / scale)
                    differs = differs || c16[i] != c32[i]
                }
                let label = "\(m)×\(n)×\(k)\(transposeA ? " Aᵀ" : "")\(transposeB ? " Bᵀ" : "")"
                #expect(worst.rounded <= 1e-6, "\(label): \(worst.rounded) of Σ|ab| from the rounded operands' product")
                #expect(worst.bf16 <= 0x1p-7 + 0x1p-16 + 1e-6, "\(label): \(worst.bf16) of Σ|ab| from the exact product")
                #expect(worst.fp32 <= 1e-6, "\(label): FP32 \(worst.fp32)")
                if m * n * k > 8 { #expect(differs, "\(label): the bf16 result equals the FP32 one") }
            }
        }
    }
}

/// The kernel writes only the m × n block of C: columns past n in a wider row stride, and rows
/// past m, keep their values.
@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func bf16ProductWritesOnlyItsBlock() {
    let (m, n, k, ldc) = (5, 19, 6, 40)
    let a = randomTensor([m, k], seed: 1), b = randomTensor([k, n], seed: 2)
    let c = randomTensor([m + 1, ldc], seed: 3), before = c.toArray()
    BLAS.sgemm(transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: 1, a: a.data, lda: k, b: b.data, ldb: n,
               beta: 0, c: c.data, ldc: ldc, precision: .bf16)
    for i in 0..<((m + 1) * ldc) where i / ldc >= m || i % ldc >= n {
        #expect(c[i] == before[i], "C[\(i / ldc)][\(i % ldc)] was overwritten")
    }
}

/// Without AVX512_BF16 bf16 falls back to FP32 with one line saying so; with it, bf16 is kept.
@Test func bf16ResolvesToWhatTheCPUCanRun() {
    let resolved = BF16.resolve(.bf16)
    if BF16.isSupported {
        #expect(resolved.precision == .bf16 && (resolved.message == nil || !resolved.message!.contains("\n")))
    } else {
        #expect(resolved.precision == .fp32 && resolved.message == "this CPU has no AVX512_BF16: running in FP32")
    }
    let fp32 = BF16.resolve(.fp32)
    #expect(fp32.precision == .fp32 && fp32.message == nil)
    #expect(roundedToBF16(1 + 0x1p-8) == 1 && roundedToBF16(1 + 0x1p-8 + 0x1p-20) == 1 + 0x1p-7 && roundedToBF16(1 + 3 * 0x1p-8) == 1 + 0x1p-6)
}

/// oneDNN's matmul in its bf16 math mode (the AMX path): for the four transposition cases, odd
/// shapes, row strides wider than the rows, and with and without accumulating into C, within
/// bf16's own error of the double-precision product — |C − AB| ≤ 2⁻⁷ Σ_l |a_il b_lj| (each
/// operand rounded to 8 significant bits, the sums in FP32); on a CPU without bf16 units oneDNN
/// computes in FP32 and the bound holds with room. More shapes than the per-thread table holds
/// (32), so that its reuse of slots is exercised, and each shape twice (the kept primitive).
@Test func oneDNNBF16MatmulMatchesTheProductWithinBF16Error() {
    var rng = RandomGenerator(seed: 17)
    var shapes: [(Int, Int, Int)] = [(1, 1, 1), (3, 5, 7), (33, 17, 64), (128, 40, 400)]
    for i in 0..<36 { shapes.append((2 + i % 7, 3 + i % 5, 1 + i)) }
    for round in 0..<2 {
        for (index, (m, n, k)) in shapes.enumerated() {
            let transposeA = index % 2 == 1, transposeB = index % 4 >= 2, accumulate = (index + round) % 3 == 0
            let (aRows, aCols) = transposeA ? (k, m) : (m, k)
            let (bRows, bCols) = transposeB ? (n, k) : (k, n)
            let (lda, ldb, ldc) = (aCols + 3, bCols + 1, n + 2)
            let a = (0..<(aRows * lda)).map { _ in rng.nextFloat() * 2 - 1 }
            let b = (0..<(bRows * ldb)).map { _ in rng.nextFloat() * 2 - 1 }
            let c0 = (0..<(m * ldc)).map { _ in rng.nextFloat() * 2 - 1 }
            var c = c0
            let done = c.withUnsafeMutableBufferPointer {
                BLAS.oneDNNBF16Product(transposeA, transposeB, m, n, k, a, lda, b, ldb, accumulate: accumulate, $0.baseAddress!, ldc)
            }
            #expect(done, "oneDNN declined \(m)×\(k)·\(k)×\(n)")
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var exact = accumulate ? Double(c0[i * ldc + j]) : 0, magnitude = 0.0
                    for l in 0..<k {
                        let x = Double(transposeA ? a[l * lda + i] : a[i * lda + l]), y = Double(transposeB ? b[j * ldb + l] : b[l * ldb + j])
                        exact += x * y
                        magnitude += abs(x * y)
                    }
                    worst = max(worst, abs(Double(c[i * ldc + j]) - exact) / max(magnitude, 1e-30) * 128)
                }
                // The padding past each row of C is left alone.
                for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) }
            }
            #expect(worst <= 1, "\(m)×\(k)·\(k)×\(n) (transposed: \(transposeA), \(transposeB); accumulate: \(accumulate)): error \(worst) of the bound")
        }
    }
}
