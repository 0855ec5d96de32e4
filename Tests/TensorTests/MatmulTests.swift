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
