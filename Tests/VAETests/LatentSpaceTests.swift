import Foundation
import Tensor
import Testing
import VAE

@Test func interpolationsHitTheirEndsAndSlerpKeepsTheRadius() {
    let a: [Float] = [3, 0, 0], b: [Float] = [0, 3, 0]
    #expect(LatentSpace.lerp(a, b, 0) == a && LatentSpace.lerp(a, b, 1) == b)
    #expect(LatentSpace.lerp(a, b, 0.5) == [1.5, 1.5, 0])
    for t: Float in [0, 0.25, 0.5, 0.9, 1] {
        let p = LatentSpace.slerp(a, b, t)
        #expect(abs(p.reduce(0) { $0 + $1 * $1 }.squareRoot() - 3) < 1e-5)  // stays on the sphere
    }
    let mid = LatentSpace.slerp(a, b, 0.5)
    #expect(abs(mid[0] - mid[1]) < 1e-6 && abs(Double(mid[0]) - 3 / 2.0.squareRoot()) < 1e-5)
    #expect(LatentSpace.slerp(a, a, 0.3) == LatentSpace.lerp(a, a, 0.3))  // parallel: falls back to lerp
}

@Test func inverseNormalCDFMatchesKnownQuantiles() {
    let known: [(Double, Double)] = [(0.5, 0), (0.975, 1.959963984540054), (0.8413447460685429, 1), (0.001, -3.090232306167813), (1e-10, -6.361340902404056)]
    for (p, x) in known {
        #expect(abs(LatentSpace.inverseNormalCDF(p) - x) < 1e-9, "Φ⁻¹(\(p))")
        // 1 − p is rounded in Double (relative error up to 1e-16 / p in the tail).
        #expect(abs(LatentSpace.inverseNormalCDF(1 - p) + x) < 1e-6)
    }
}

@Test func principalComponentsFindTheAxesOfSpread() {
    // Points spread 3:1 along (1, 1, 0)/√2 and (1, −1, 0)/√2, barely along z.
    var rng = RandomGenerator(seed: 1)
    var points: [[Double]] = []
    for _ in 0..<5000 {
        var e = [Float](repeating: 0, count: 3)
        e.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: 3) }
        let (u, v, w) = (3 * Double(e[0]), Double(e[1]), 0.1 * Double(e[2]))
        points.append([(u + v) / 2.0.squareRoot() + 5, (u - v) / 2.0.squareRoot() - 1, w])
    }
    let pca = LatentSpace.principalComponents(points, count: 2)
    let s = 1 / 2.0.squareRoot()
    #expect(abs(pca.mean[0] - 5) < 0.1 && abs(pca.mean[1] + 1) < 0.1)
    #expect(abs(abs(pca.directions[0][0]) - s) < 0.02 && abs(abs(pca.directions[0][1]) - s) < 0.02)
    #expect(pca.directions[0][0] * pca.directions[0][1] > 0)  // (1, 1) direction first
    #expect(pca.directions[1][0] * pca.directions[1][1] < 0)  // then (1, −1)
    #expect(abs(pca.explained[0] - 9 / 10.01) < 0.03 && abs(pca.explained[1] - 1 / 10.01) < 0.02)
}
