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

@Test func fastLog1pMatchesLibmOnTheUnitInterval() {
    var worst = 0.0
    for i in 0...100_000 {
        let y = Float(i) / 100_000
        worst = max(worst, abs(Double(fastLog1p(unit: y)) - log1p(Double(y))))
    }
    for y: Float in [1e-30, 1e-12, 1e-7, 3e-5] {
        let reference = log1p(Double(y))
        #expect(abs(Double(fastLog1p(unit: y)) - reference) <= 1e-6 * reference)
    }
    #expect(worst < 2e-7, "worst absolute error \(worst)")  // ≈ 3 ulp of log 2
    #expect(fastLog1p(unit: 0) == 0)
}
