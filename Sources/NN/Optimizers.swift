#if canImport(Glibc)
import Glibc
#endif
import Tensor

/// Updates parameters from their gradients.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    var learningRate: Float { get set }
    /// Applies one update using the gradients the last backward pass set.
    func step()
}

/// Stochastic gradient descent with optional momentum: v ← μv + g; θ ← θ − η v.
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float
    private let velocity: [Tensor]

    public init(parameters: [Parameter], learningRate: Float, momentum: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        velocity = parameters.map { Tensor(shape: $0.shape) }
    }

    public func step() {
        let (lr, mu) = (learningRate, momentum)
        for (p, v) in zip(parameters, velocity) {
            let (w, g, m, n) = (p.value.data, p.gradient.data, v.data, p.value.count)
            if mu == 0 {
                for i in 0..<n { w[i] -= lr * g[i] }
            } else {
                for i in 0..<n {
                    m[i] = mu * m[i] + g[i]
                    w[i] -= lr * m[i]
                }
            }
        }
    }
}

/// Adam (Kingma & Ba, 2015), with the update written as PyTorch's `torch.optim.Adam`:
///
///     m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
///     θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// With `decoupledWeightDecay` λ > 0 it is AdamW: θ ← θ(1 − ηλ) before the update.
public final class Adam: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let decoupledWeightDecay: Float
    /// Number of updates taken so far (t).
    public private(set) var stepCount: Int = 0
    /// First and second moment estimates, one per parameter.
    public let firstMoments: [Tensor]
    public let secondMoments: [Tensor]

    public init(
        parameters: [Parameter], learningRate: Float = 1e-3,
        beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, decoupledWeightDecay: Float = 0
    ) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.decoupledWeightDecay = decoupledWeightDecay
        firstMoments = parameters.map { Tensor(shape: $0.shape) }
        secondMoments = parameters.map { Tensor(shape: $0.shape) }
    }

    /// Restores the step count saved with a checkpoint (the moments are restored in place).
    public func restore(stepCount: Int) { self.stepCount = stepCount }

    public func step() {
        stepCount += 1
        let t = Double(stepCount)
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        let stepSize = Float(Double(learningRate) / (1 - pow(Double(b1), t)))
        let inverseRootCorrection2 = Float(1 / (1 - pow(Double(b2), t)).squareRoot())
        let decay = 1 - learningRate * decoupledWeightDecay
        for k in parameters.indices {
            let p = parameters[k]
            Self.update(
                p.value.data, gradient: p.gradient.data, m: firstMoments[k].data, v: secondMoments[k].data,
                range: 0..<p.value.count, beta1: b1, beta2: b2, epsilon: eps, stepSize: stepSize,
                inverseRootCorrection2: inverseRootCorrection2, decay: decay)
        }
    }

    /// The Adam update of elements `range` of one parameter (a plain loop that vectorises).
    @inline(__always)
    static func update(
        _ w: UnsafeMutablePointer<Float>, gradient g: UnsafeMutablePointer<Float>,
        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, range: Range<Int>,
        beta1 b1: Float, beta2 b2: Float, epsilon eps: Float, stepSize: Float,
        inverseRootCorrection2: Float, decay: Float
    ) {
        let (c1, c2) = (1 - b1, 1 - b2)
        if decay != 1 {
            for i in range { w[i] *= decay }
        }
        // Sixteen lanes at a time: scalar `squareRoot()` keeps a libm fallback that blocks
        // auto-vectorisation, SIMD16's does not.
        typealias V = SIMD16<Float>
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            let gi = UnsafeRawPointer(g + i).loadUnaligned(as: V.self)
            let mi = b1 * UnsafeRawPointer(m + i).loadUnaligned(as: V.self) + c1 * gi
            let vi = b2 * UnsafeRawPointer(v + i).loadUnaligned(as: V.self) + c2 * (gi * gi)
            let wi = UnsafeRawPointer(w + i).loadUnaligned(as: V.self) - stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + eps)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: V.self)
            UnsafeMutableRawPointer(w + i).storeBytes(of: wi, as: V.self)
            i += 16
        }
        while i < range.upperBound {
            let gi = g[i]
            let mi = b1 * m[i] + c1 * gi
            let vi = b2 * v[i] + c2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            w[i] -= stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + eps)
            i += 1
        }
    }
}
