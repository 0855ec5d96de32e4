import CKernels
import Foundation
import Testing

/// `vae_tanh` (the Tanh layer's kernel) against Foundation's double-precision tanh: relative
/// error below 10⁻⁶ over [−20, 20] and for tiny arguments, exact limits, odd symmetry, NaN kept;
/// its backward pass is dy · (1 − y²).
@Test func tanhKernelMatchesDoublePrecision() {
    var xs: [Float] = []
    var x: Float = -20
    while x <= 20 { xs.append(x); x += 0.000_37 }
    let tiny: [Float] = [1e-30, 1e-12, 3e-8, 1e-5, 0.0123, 0.2999, 0.3, 0.3001]
    xs += tiny + tiny.map { -$0 } + [0, 100, -100, .infinity, -.infinity, .nan]
    var ys = [Float](repeating: 0, count: xs.count)
    vae_tanh(xs, &ys, xs.count)
    var worst = 0.0
    for (x, y) in zip(xs, ys) where x.isFinite {
        let reference = Foundation.tanh(Double(x))
        if reference != 0 { worst = max(worst, abs(Double(y) - reference) / abs(reference)) }
    }
    #expect(worst < 1e-6, "worst relative error \(worst)")
    var negated = [Float](repeating: 0, count: xs.count)
    vae_tanh(xs.map { -$0 }, &negated, xs.count)
    for i in xs.indices where !xs[i].isNaN { #expect(negated[i] == -ys[i], "tanh(−\(xs[i]))") }
    let n = xs.count
    #expect(ys[n - 6] == 0 && ys[n - 5] == 1 && ys[n - 4] == -1 && ys[n - 3] == 1 && ys[n - 2] == -1)
    #expect(ys[n - 1].isNaN)
    var dx = [Float](repeating: 0, count: 3)
    vae_tanh_backward([0.5, -0.25, 1], [2, 4, 3], &dx, 3)
    #expect(dx == [1.5, 3.75, 0])
}
