import Foundation
import NN
import Tensor
import Testing
import TestSupport

@Test func adamMatchesTheAlgorithmInDoublePrecision() {
    let p = Parameter(Tensor(shape: [3], values: [0.5, -1, 2]))
    let adam = Adam(parameters: [p], learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
    var w = [0.5, -1.0, 2.0], m = [0.0, 0.0, 0.0], v = [0.0, 0.0, 0.0]
    let gradients: [[Double]] = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.1, 0.0]]
    for (t, g) in gradients.enumerated() {
        for i in 0..<3 { p.gradient[i] = Float(g[i]) }
        adam.step()
        for i in 0..<3 {
            m[i] = 0.9 * m[i] + 0.1 * g[i]
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
            let mHat = m[i] / (1 - pow(0.9, Double(t + 1)))
            let vHat = v[i] / (1 - pow(0.999, Double(t + 1)))
            w[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
        }
    }
    for i in 0..<3 { #expect(abs(Double(p.value[i]) - w[i]) < 1e-6, "weight \(i)") }
    #expect(adam.stepCount == 3)
}

@Test func adamMomentsOfAnIdleWeightNeverTurnSubnormal() {
    // One gradient of 1, then zeros: m = 0.1 · 0.9ᵏ passes below the smallest normal float
    // (2⁻¹²⁶) after ~807 steps and, computed in plain IEEE arithmetic, sticks at the smallest
    // subnormal (0.9 · 2⁻¹⁴⁹ rounds back up), whose arithmetic costs x86 a microcode assist
    // per element on every later step. The update flushes such values to zero. Both paths: the
    // gradient alone and the gradient plus another worker's.
    for fused in [false, true] {
        let p = Parameter(Tensor(shape: [2], values: [0.5, -0.5]))
        let adam = Adam(parameters: [p], learningRate: 1e-3)
        let other = [Float](repeating: 0, count: 2)
        p.gradient[0] = 1; p.gradient[1] = -1
        for t in 0..<1000 {
            if t == 1 { p.gradient[0] = 0; p.gradient[1] = 0 }
            adam.beginStep()
            other.withUnsafeBufferPointer { adam.update(parameterAt: 0, range: 0..<2, addingGradient: fused ? $0.baseAddress : nil) }
        }
        for i in 0..<2 {
            let m = adam.firstMoments[0][i]
            #expect(m == 0 || abs(m) >= Float.leastNormalMagnitude, "m[\(i)] = \(m) (fused: \(fused))")
        }
        #expect(adam.secondMoments[0][0] >= Float.leastNormalMagnitude)  // 0.001 · 0.999ᵏ is still normal
    }
    // The flush is confined to the update: the caller's arithmetic still produces subnormals.
    let tiny = [Float.leastNormalMagnitude, 0.25]
    #expect(tiny.withUnsafeBufferPointer { $0[0] * $0[1] } > 0)
}

@Test func sgdMomentumOfAnIdleWeightNeverTurnsSubnormal() {
    // v = 0.9ᵏ after one gradient of 1: below 2⁻¹²⁶ after ~830 steps, stuck at a subnormal in
    // plain IEEE arithmetic; flushed to zero by the update.
    let p = Parameter(Tensor(shape: [1], values: [0.5]))
    let sgd = SGD(parameters: [p], learningRate: 1e-3, momentum: 0.9)
    p.gradient[0] = 1
    for t in 0..<1000 {
        if t == 1 { p.gradient[0] = 0 }
        sgd.step()
    }
    let v = sgd.stateSlots[0].tensors[0][0]
    #expect(v == 0 || abs(v) >= Float.leastNormalMagnitude, "v = \(v)")
}

@Test func sgdWeightDecayIsAddedToTheGradient() {
    // g ← g + λw, then w ← w − lr·g: w = 2, g = 1, λ = 0.5, lr = 0.1 → g = 2, w = 1.8.
    let p = Parameter(Tensor(shape: [1], values: [2]))
    let sgd = SGD(parameters: [p], learningRate: 0.1, weightDecay: 0.5)
    p.gradient[0] = 1
    sgd.step()
    #expect(abs(p.value[0] - 1.8) < 1e-6 && abs(p.gradient[0] - 2) < 1e-6)
}

@Test func adamWDecaysWeightsBeforeTheUpdate() {
    let p = Parameter(Tensor(shape: [1], values: [2]))
    let adam = Adam(parameters: [p], learningRate: 0.1, decoupledWeightDecay: 0.5)
    p.gradient[0] = 0  // no gradient: only the decay and a zero Adam step act
    adam.step()
    #expect(abs(p.value[0] - 2 * (1 - 0.1 * 0.5)) < 1e-6)
}

@Test func sgdWithAndWithoutMomentum() {
    let p = Parameter(Tensor(shape: [1], values: [1]))
    let sgd = SGD(parameters: [p], learningRate: 0.1, momentum: 0.5)
    p.gradient[0] = 2
    sgd.step()  // v = 2, w = 1 − 0.2
    sgd.step()  // v = 0.5·2 + 2 = 3, w = 0.8 − 0.3
    #expect(abs(p.value[0] - 0.5) < 1e-6)
    let q = Parameter(Tensor(shape: [1], values: [1]))
    let plain = SGD(parameters: [q], learningRate: 0.25)
    q.gradient[0] = -4
    plain.step()
    #expect(q.value[0] == 2)
}

@Test func gradientClippingScalesToTheNorm() {
    let a = Parameter(Tensor(shape: [2])), b = Parameter(Tensor(shape: [1]))
    a.gradient[0] = 3; a.gradient[1] = 0; b.gradient[0] = 4
    let norm = clipGradientNorm([a, b], maxNorm: 1)
    #expect(norm == 5)
    #expect(abs(a.gradient[0] - 0.6) < 1e-6 && abs(b.gradient[0] - 0.8) < 1e-6)
    #expect(clipGradientNorm([a, b], maxNorm: 10) <= 1.0001)
    #expect(abs(a.gradient[0] - 0.6) < 1e-6)
}

@Test func adamMinimisesAQuadratic() {
    // f(w) = Σ (w − c)²; Adam should bring w close to c.
    let p = Parameter(Tensor(shape: [4], values: [0, 0, 0, 0]))
    let target: [Float] = [1, -2, 0.5, 3]
    let adam = Adam(parameters: [p], learningRate: 0.05)
    for _ in 0..<2000 {
        for i in 0..<4 { p.gradient[i] = 2 * (p.value[i] - target[i]) }
        adam.step()
    }
    for i in 0..<4 { #expect(abs(p.value[i] - target[i]) < 0.01) }
}
