#if canImport(Glibc)
import Glibc
#endif
import CKernels
import Tensor

/// Updates parameters from their gradients.
///
/// A step is `beginStep()` followed by `update(parameterAt:range:)` over every element of every
/// parameter; updates of disjoint ranges may run concurrently (the trainer splits them across
/// cores). `step()` does all of it on the calling thread.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    var learningRate: Float { get set }
    /// Advances the step counter and anything derived from it.
    func beginStep()
    /// Updates elements `range` of parameter `index` from its gradient.
    func update(parameterAt index: Int, range: Range<Int>)
}

extension Optimizer {
    /// One full update using the gradients the last backward pass set.
    public func step() {
        beginStep()
        for (k, p) in parameters.enumerated() { update(parameterAt: k, range: 0..<p.value.count) }
    }
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

    public func beginStep() {}

    public func update(parameterAt k: Int, range: Range<Int>) {
        let (lr, mu) = (learningRate, momentum)
        let p = parameters[k]
        let (w, g, m) = (p.value.data, p.gradient.data, velocity[k].data)
        if mu == 0 {
            for i in range { w[i] -= lr * g[i] }
        } else {
            for i in range {
                m[i] = mu * m[i] + g[i]
                w[i] -= lr * m[i]
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

    private var stepSize: Float = 0
    private var inverseRootCorrection2: Float = 1

    public func beginStep() {
        stepCount += 1
        let t = Double(stepCount)
        stepSize = Float(Double(learningRate) / (1 - pow(Double(beta1), t)))
        inverseRootCorrection2 = Float(1 / (1 - pow(Double(beta2), t)).squareRoot())
    }

    public func update(parameterAt k: Int, range: Range<Int>) {
        update(parameterAt: k, range: range, addingGradient: nil)
    }

    /// Updates elements `range` of parameter `k` with its gradient plus `extra` (another
    /// worker's gradient for the same parameter), summed into the gradient in the same pass.
    public func update(parameterAt k: Int, range: Range<Int>, addingGradient extra: UnsafePointer<Float>?) {
        let p = parameters[k]
        let o = range.lowerBound
        vae_adam_update(
            p.value.data + o, p.gradient.data + o, extra.map { $0 + o }, firstMoments[k].data + o, secondMoments[k].data + o,
            range.count, beta1, beta2, epsilon, stepSize, inverseRootCorrection2, 1 - learningRate * decoupledWeightDecay)
    }
}
