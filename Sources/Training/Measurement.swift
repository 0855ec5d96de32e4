import CKernels
#if canImport(Glibc)
import Glibc
#endif
import Datasets
import Tensor
import VAE

/// Wall-clock seconds of `body`.
public func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = monotonicSeconds()
    try body()
    return monotonicSeconds() - start
}

/// The median of `xs` (not empty).
public func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident set size of this process, MiB.
public func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// The best GFLOP/s of a large square sgemm: what the machine can do at all.
public enum GEMMCeiling {
    /// With `threads` OpenBLAS threads, and with one (measured once when `threads` is 1).
    public static func measure(threads: Int, n: Int = 1024) -> (all: Double, one: Double) {
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        var rng = RandomGenerator(seed: 1)
        rng.fillUniform(a)
        rng.fillUniform(b)
        func best(_ t: Int) -> Double {
            BLAS.threads = t
            let seconds = (0..<5).map { _ in timed { matmul(a, b, into: c) } }.min()!
            return 2 * Double(n * n * n) / seconds / 1e9
        }
        let all = best(threads)
        return (all, threads == 1 ? all : best(1))
    }
}

/// The CPU's single-precision FMA peak, probed (`vae_fma_flops`: independent vector FMAs that
/// only the arithmetic units limit), in GFLOP/s: on one core, and on `threads` cores at once.
public enum FMAPeak {
    public static func measure(threads: Int) -> (all: Double, one: Double) {
        measure(threads: threads, probe: vae_fma_flops)
    }

    /// The bf16 dot-product peak (`vae_bf16_dot_flops`, the instruction of the bf16 products),
    /// GFLOP/s; 0 on a CPU without AVX512_BF16.
    public static func measureBF16(threads: Int) -> (all: Double, one: Double) {
        measure(threads: threads, probe: vae_bf16_dot_flops)
    }

    static func measure(threads: Int, probe: (Int, UnsafeMutablePointer<Float>?) -> Double) -> (all: Double, one: Double) {
        func rate(_ cores: Int) -> Double {
            let pool = WorkerPool(count: max(cores, 1))
            let flops = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(cores, 1))
            let sinks = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(cores, 1))
            defer { flops.deallocate(); sinks.deallocate() }
            var best = 0.0
            for _ in 0..<3 {
                let seconds = timed { pool.run { w in flops[w] = probe(4_000_000, sinks.baseAddress! + w) } }
                best = max(best, flops.reduce(0, +) / seconds / 1e9)
            }
            return best
        }
        let all = rate(threads)
        return (all, threads == 1 ? all : rate(1))
    }
}

/// Inference speeds of a model, split across `workers` cores: images per second of
/// reconstruction (encoder + decoder) and of generation (decoder; with two stochastic layers
/// p(z₁|z₂) and then the decoder) on `batch`, and importance
/// samples per second of log p(x) (K = `iwSamples` on the first 100 images). Each figure is the
/// median of `repeats` timings of `rounds` passes, after one untimed pass.
public func inferenceSpeed(
    _ model: VariationalAutoencoder, batch: Batch, workers: Int, repeats: Int, rounds: Int = 10, iwSamples: Int = 1000
) -> (reconstruct: Double, generate: Double, iwSamples: Double) {
    let parallel = DataParallel(model: model, workers: workers)
    let (x, labels) = (batch.images.clone(), batch.condition?.clone())
    let images = Tensor(shape: [x.rows] + model.config.inputShape)
    var rng = RandomGenerator(seed: 1)
    // Codes of the top stochastic layer (z₂ for a model with two, decoded through p(z₁|z₂)'s mean).
    let z = Tensor(shape: [x.rows, model.hasTwoStochasticLayers ? model.config.upperLatentDimension : model.latentDimension])
    rng.fillNormal(z)
    func rate(_ work: Double, _ body: () -> Void) -> Double { work / median(Array((0...repeats).map { _ in timed(body) }.dropFirst())) }
    let reconstruct = rate(Double(x.rows * rounds)) {
        for _ in 0..<rounds { parallel.map(x, condition: labels, into: images) { w, x, c, out in w.reconstruct(x, condition: c, into: out) } }
    }
    let generate = rate(Double(x.rows * rounds)) {
        for _ in 0..<rounds {
            parallel.map(z, condition: labels, into: images) { w, z, c, out in
                w.decodeMean(w.hasTwoStochasticLayers ? w.conditionalPriorMean(z) : z, condition: c, into: out)
            }
        }
    }
    let few = 0..<min(100, x.rows)
    let iw = rate(Double(few.count * iwSamples)) {
        _ = parallel.importanceSampledLogLikelihood(
            Tensor(viewing: x, rows: few), condition: labels.map { Tensor(viewing: $0, rows: few) }, samples: iwSamples, seed: 1)
    }
    return (reconstruct, generate, iw)
}
