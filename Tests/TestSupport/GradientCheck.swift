import Foundation
import Tensor

/// Central finite differences: ∂f/∂t[i] ≈ (f(t + h eᵢ) − f(t − h eᵢ)) / 2h for each index in
/// `indices` (all elements when nil). `t` is perturbed in place and restored exactly.
public func numericalGradient(of f: () -> Double, wrt t: Tensor, indices: [Int]? = nil, step h: Float = 1e-2) -> [Double] {
    (indices ?? Array(0..<t.count)).map { i in
        let original = t[i]
        t[i] = original + h
        let up = f()
        t[i] = original - h
        let down = f()
        t[i] = original
        return (up - down) / (2 * Double(h))
    }
}

/// The largest violation of |a − n| ≤ atol + rtol·max(|a|, |n|) (≤ 0 means all within tolerance),
/// with the worst index, for reporting.
public func gradientMismatch(analytic: [Float], numeric: [Double], atol: Double = 1e-3, rtol: Double = 1e-2) -> (excess: Double, index: Int, analytic: Double, numeric: Double) {
    precondition(analytic.count == numeric.count)
    var worst = (excess: -Double.infinity, index: -1, analytic: 0.0, numeric: 0.0)
    for i in analytic.indices {
        let a = Double(analytic[i]), n = numeric[i]
        let excess = abs(a - n) - (atol + rtol * max(abs(a), abs(n)))
        if excess > worst.excess || !excess.isFinite && !a.isNaN { worst = (excess, i, a, n) }
        if a.isNaN || n.isNaN { return (.infinity, i, a, n) }
    }
    return worst
}

/// Σ r ⊙ y in Double: a scalar loss whose gradient with respect to y is r.
public func weightedSum(_ y: Tensor, _ r: Tensor) -> Double {
    precondition(y.count == r.count)
    var s = 0.0
    for i in 0..<y.count { s += Double(y[i]) * Double(r[i]) }
    return s
}

/// A tensor of uniform values in [low, high) from a seeded generator.
public func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let t = Tensor(shape: shape)
    rng.fillUniform(t, low: low, high: high)
    return t
}
