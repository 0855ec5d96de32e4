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
