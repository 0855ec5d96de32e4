import CKernels

/// Standard normals that are a pure function of (seed, stream, index): number i of a stream is
/// the same however the numbers are drawn — in one call or in pieces, by any thread, rank or
/// device. Built on Philox4x32-10 (Salmon et al. 2011), a counter-based generator that GPUs
/// implement as cheaply as CPUs, so that a GPU run can draw the CPU run's ε.
///
/// Number i: the four 32-bit words w of Philox4x32-10 at counter (⌊i/4⌋, stream) under key
/// `seed`; words (w₀, w₁) give normals 0 and 1 of the block and (w₂, w₃) normals 2 and 3 by
/// Box–Muller, u = (w + ½)·2⁻³², z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂), in double precision and
/// rounded to Float.
public struct CounterNoise: Sendable, Equatable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Fills `out` with numbers `first`, `first` + 1, … of `stream`.
    public func normals(stream: UInt64, first: UInt64, into out: UnsafeMutableBufferPointer<Float>) {
        guard let base = out.baseAddress, !out.isEmpty else { return }
        vae_philox_normals(seed, stream, first, out.count, base)
    }

    /// Numbers `first` ..< `first` + `count` of `stream`.
    public func normals(stream: UInt64, first: UInt64 = 0, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            normals(stream: stream, first: first, into: buffer)
            initialized = count
        }
    }

    /// The stream that binarises example `example` in epoch `epoch` (from 0) under the run's data
    /// seed: 2⁶² + epoch · 2³² + example, apart from the ε streams (below 2⁶² and from 2⁶³ on).
    public static func binarizationStream(epoch: Int, example: Int) -> UInt64 {
        1 << 62 | UInt64(epoch) << 32 | UInt64(UInt32(truncatingIfNeeded: example))
    }

    /// Dynamic binarisation by counters: `out[i]` = 1 when uniform i of `stream` is below pᵢ =
    /// `bytes[i]`/255, else 0 — uniform i being Philox word i (as ``normals(stream:first:into:)``
    /// numbers them) shifted right by 8, times 2⁻²⁴. The GPU's `vae_gather` draws the same.
    public func binarize(stream: UInt64, bytes: UnsafePointer<UInt8>, into out: UnsafeMutableBufferPointer<Float>) {
        guard let base = out.baseAddress, !out.isEmpty else { return }
        vae_philox_binarize(seed, stream, bytes, nil, out.count, base)
    }

    /// As ``binarize(stream:bytes:into:)`` with probabilities pᵢ = `values[i]` in [0, 1].
    public func binarize(stream: UInt64, values: UnsafePointer<Float>, into out: UnsafeMutableBufferPointer<Float>) {
        guard let base = out.baseAddress, !out.isEmpty else { return }
        vae_philox_binarize(seed, stream, nil, values, out.count, base)
    }

    /// The raw Philox4x32-10 block: the 128 bits of `counter` under `key`.
    public static func philox(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        let c = [counter.0, counter.1, counter.2, counter.3], k = [key.0, key.1]
        var out = [UInt32](repeating: 0, count: 4)
        vae_philox4x32_10(c, k, &out)
        return (out[0], out[1], out[2], out[3])
    }
}
