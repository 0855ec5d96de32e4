import Foundation
import Tensor
import Testing

@Test func fastExpMatchesLibmAcrossTheRange() {
    var worst = 0.0
    var x: Float = -87
    while x <= 88 {
        let reference = exp(Double(x))
        let relative = abs(Double(fastExp(x)) - reference) / reference
        worst = max(worst, relative)
        x += 0.0173
    }
    #expect(worst < 3e-7, "worst relative error \(worst)")
    #expect(fastExp(0) == 1)
    #expect(fastExp(-100) == 0 && fastExp(-1000) == 0)
    #expect(fastExp(100) == .infinity)
}

/// fastTanh against Foundation's double-precision tanh: relative error below 10⁻⁶ over
/// [−20, 20] and for tiny arguments, exact limits, odd symmetry, NaN kept.
@Test func fastTanhMatchesDoublePrecision() {
    var worst = 0.0
    var x: Float = -20
    while x <= 20 {
        let reference = Foundation.tanh(Double(x))
        if reference != 0 { worst = max(worst, abs(Double(fastTanh(x)) - reference) / abs(reference)) }
        #expect(fastTanh(-x) == -fastTanh(x))
        x += 0.000_37
    }
    for tiny: Float in [1e-30, 1e-12, 3e-8, 1e-5, 0.0123, 0.2999, 0.3, 0.3001] {
        worst = max(worst, abs(Double(fastTanh(tiny)) - Foundation.tanh(Double(tiny))) / Foundation.tanh(Double(tiny)))
    }
    #expect(worst < 1e-6, "worst relative error \(worst)")
    #expect(fastTanh(0) == 0 && fastTanh(100) == 1 && fastTanh(-100) == -1 && fastTanh(.infinity) == 1)
    #expect(fastTanh(.nan).isNaN)
}
