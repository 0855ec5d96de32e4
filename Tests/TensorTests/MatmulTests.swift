import Testing
import Tensor
import TestSupport

/// Naive triple loop: C[i][j] = Σ_k op(A)[i][k] op(B)[k][j].
func referenceMatmul(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let aip = transposeA ? a[p * m + i] : a[i * k + p]
                let bpj = transposeB ? b[j * k + p] : b[p * n + j]
                s += Double(aip) * Double(bpj)
            }
            c[i * n + j] = s
        }
    }
    return c
}

@Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
func matmulMatchesNaiveLoop(transposeA: Bool, transposeB: Bool) {
    let (m, n, k) = (7, 5, 9)
    let a = randomTensor(transposeA ? [k, m] : [m, k], seed: 1)
    let b = randomTensor(transposeB ? [n, k] : [k, n], seed: 2)
    let c = randomTensor([m, n], seed: 3)
    let before = c.toArray()
    matmul(a, b, into: c, transposeA: transposeA, transposeB: transposeB, alpha: 0.5, beta: 2)
    let reference = referenceMatmul(a.toArray(), b.toArray(), m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
    for i in 0..<(m * n) {
        let expected = 0.5 * reference[i] + 2 * Double(before[i])
        #expect(abs(Double(c[i]) - expected) < 1e-5, "element \(i)")
    }
}

/// Both FP32 libraries, every transposition, shapes of the default model's products (64 rows,
/// 784 and 400 wide) and small odd ones, operands read through row strides wider than their
/// rows (views), against the double-precision loop; β = 0 must ignore C's contents (NaN there),
/// β = 1 must add to them, and nothing outside C's block may change.
@Test(arguments: GEMMLibrary.allCases)
func bothFP32LibrariesMatchTheNaiveLoop(library: GEMMLibrary) {
    for (m, n, k) in [(64, 400, 784), (37, 21, 50), (1, 3, 1), (400, 20, 64)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta: Float in [0, 1] {
                let (aRows, aCols) = ta ? (k, m) : (m, k)
                let (bRows, bCols) = tb ? (n, k) : (k, n)
                let (lda, ldb, ldc) = (aCols + 3, bCols + 5, n + 2)
                let a = randomTensor([aRows * lda], seed: 11).toArray(), b = randomTensor([bRows * ldb], seed: 12).toArray()
                let c0 = randomTensor([m * ldc], seed: 13).toArray()
                var c = c0
                if beta == 0 { for i in 0..<m { for j in 0..<n { c[i * ldc + j] = .nan } } }
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            BLAS.sgemm(
                                transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: pa.baseAddress!, lda: lda,
                                b: pb.baseAddress!, ldb: ldb, beta: beta, c: pc.baseAddress!, ldc: ldc, library: library)
                        }
                    }
                }
                // The dense operands the strided ones hold, for the reference.
                let denseA = (0..<aRows).flatMap { r in a[(r * lda)..<(r * lda + aCols)] }
                let denseB = (0..<bRows).flatMap { r in b[(r * ldb)..<(r * ldb + bCols)] }
                let reference = referenceMatmul(denseA, denseB, m: m, n: n, k: k, transposeA: ta, transposeB: tb)
                let magnitude = referenceMatmul(denseA.map(abs), denseB.map(abs), m: m, n: n, k: k, transposeA: ta, transposeB: tb)
                var worst = 0.0, outside = 0
                for i in 0..<m {
                    for j in 0..<ldc {
                        if j >= n { outside += c[i * ldc + j] == c0[i * ldc + j] ? 0 : 1; continue }
                        let expected = 0.5 * reference[i * n + j] + Double(beta) * Double(c0[i * ldc + j])
                        // An FP32 sum of k products is within (k + 2) · 2⁻²⁴ · Σ|a||b| of the exact one
                        // (the classic bound), plus the rounding of β·c and of the result.
                        let bound = Double(k + 2) * 0x1p-24 * 0.5 * magnitude[i * n + j] + 0x1p-23 * (abs(expected) + Double(beta) * abs(Double(c0[i * ldc + j])))
                        let error = abs(Double(c[i * ldc + j]) - expected)
                        worst = error.isNaN ? .infinity : max(worst, error / bound)
                    }
                }
                #expect(worst <= 1, "\(library) \(m)×\(n)×\(k) ta \(ta) tb \(tb) β \(beta): error \(worst) of the bound")
                #expect(outside == 0, "\(library) wrote outside C's block")
            }
        }
    }
}

@Test func theMatrixLibraryComesFromVAE_GEMM() {
    #expect(GEMMLibrary.from(environment: [:]) == .oneDNN)
    #expect(GEMMLibrary.from(environment: ["VAE_GEMM": ""]) == .oneDNN)
    #expect(GEMMLibrary.from(environment: ["VAE_GEMM": "OpenBLAS"]) == .openBLAS)
    #expect(GEMMLibrary.from(environment: ["VAE_GEMM": "onednn"]) == .oneDNN)
    #expect(GEMMLibrary.from(environment: ["VAE_GEMM": "mkl"]) == nil)
}

@Test func sumRowsAddsColumns() {
    let t = Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])
    var out: [Float] = [10, 20]
    out.withUnsafeMutableBufferPointer { t.sumRows(into: $0.baseAddress!) }
    #expect(out == [9, 12])
    out.withUnsafeMutableBufferPointer { t.sumRows(into: $0.baseAddress!, accumulate: true) }
    #expect(out == [18, 24])
}

@Test func setBatchKeepsStorageAndRefusesGrowthPastCapacity() {
    let t = Tensor(shape: [4, 3])
    let storage = t.data
    t.setBatch(2)
    #expect(t.shape == [2, 3] && t.count == 6 && t.data == storage)
    let reused = Tensor.reusing(t, shape: [3, 3])
    #expect(reused === t && reused.shape == [3, 3])
    let grown = Tensor.reusing(t, shape: [5, 3])
    #expect(grown !== t && grown.shape == [5, 3])
}

@Test func reductions() {
    let t = Tensor(shape: [2, 2], values: [1, -4, 2.5, 0.5])
    #expect(t.sum() == 0)
    #expect(t.maxAbs() == 4)
    #expect(t.allFinite())
    t[1] = .nan
    #expect(!t.allFinite())
}

/// Which OpenBLAS kernel `vae` asks for: the CPU's widest vectors, only where OpenBLAS chose narrower
/// on its own and the user has not pinned one.
@Test func widerKernelIsChosenOnlyWhereOpenBLASFellShort() {
    let emeraldRapids = BLAS.VectorISA(cpuFlags: ["fma", "avx", "avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_bf16"])
    let zen3 = BLAS.VectorISA(cpuFlags: ["fma", "avx", "avx2", "sse4_2"])
    #expect(emeraldRapids == .avx512 && zen3 == .avx2)
    #expect(BLAS.VectorISA(cpuFlags: ["avx", "avx2", "fma", "avx512f"]) == .avx2)  // F alone is not what the kernels need
    #expect(BLAS.VectorISA(cpuFlags: ["avx"]) == .avx && BLAS.VectorISA(cpuFlags: ["sse3"]) == .sse)
    #expect(BLAS.betterCoreType(kernel: "Prescott", cpu: emeraldRapids, environment: [:]) == "SkylakeX")
    #expect(BLAS.betterCoreType(kernel: "Haswell", cpu: emeraldRapids, environment: [:]) == "SkylakeX")
    #expect(BLAS.betterCoreType(kernel: "SkylakeX", cpu: emeraldRapids, environment: [:]) == nil)
    #expect(BLAS.betterCoreType(kernel: "Cooperlake", cpu: emeraldRapids, environment: [:]) == nil)
    #expect(BLAS.betterCoreType(kernel: "Zen", cpu: zen3, environment: [:]) == nil)
    #expect(BLAS.betterCoreType(kernel: "Prescott", cpu: zen3, environment: [:]) == "Haswell")
    #expect(BLAS.betterCoreType(kernel: "Prescott", cpu: emeraldRapids, environment: ["OPENBLAS_CORETYPE": "Prescott"]) == nil)
    #expect(BLAS.betterCoreType(kernel: "ARMV8", cpu: emeraldRapids, environment: [:]) == nil)
}
