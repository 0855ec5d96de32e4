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
///
/// Everything an optimiser remembers between steps is `stepCount` and its ``stateSlots``: named
/// tensors, one per parameter and slot (Adam's moments `m` and `v`, SGD's momentum buffer). A
/// checkpoint saves and restores exactly these, so any optimiser resumes bit for bit.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    var learningRate: Float { get set }
    /// Updates taken so far (restored with a checkpoint).
    var stepCount: Int { get set }
    /// Per-parameter state, by slot name: `tensors[k]` belongs to `parameters[k]`.
    var stateSlots: [(name: String, tensors: [Tensor])] { get }
    /// Advances the step counter and anything derived from it.
    func beginStep()
    /// Updates elements `range` of parameter `index` from its gradient.
    func update(parameterAt index: Int, range: Range<Int>)
    /// Updates elements `range` of parameter `index` from its gradient plus `extra` (another
    /// worker's gradient of the same parameter, nil for none), the sum written into the gradient.
    func update(parameterAt index: Int, range: Range<Int>, addingGradient extra: UnsafePointer<Float>?)
}

extension Optimizer {
    /// One full update using the gradients the last backward pass set.
    public func step() {
        beginStep()
        for (k, p) in parameters.enumerated() { update(parameterAt: k, range: 0..<p.value.count) }
    }

    /// Adds `extra` into the gradient, then updates (optimisers may fuse the two).
    public func update(parameterAt k: Int, range: Range<Int>, addingGradient extra: UnsafePointer<Float>?) {
        if let extra {
            let g = parameters[k].gradient.data
            for i in range { g[i] += extra[i] }
        }
        update(parameterAt: k, range: range)
    }
}

/// Stochastic gradient descent with optional momentum and L2 weight decay, as PyTorch's
/// `torch.optim.SGD` (dampening 0, not Nesterov):
///
///     g ← g + λθ,   v ← μv + g (v₀ = 0),   θ ← θ − η v.
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    public var stepCount = 0
    private let velocity: [Tensor]

    public init(parameters: [Parameter], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        velocity = momentum == 0 ? [] : parameters.map { Tensor(shape: $0.shape) }
    }

    public var stateSlots: [(name: String, tensors: [Tensor])] { momentum == 0 ? [] : [("momentum", velocity)] }

    public func beginStep() { stepCount += 1 }

    /// The update is a C kernel (`vae_sgd_update`) that, like Adam's, flushes subnormal values to
    /// zero: a momentum buffer whose gradient stays zero decays into them.
    public func update(parameterAt k: Int, range: Range<Int>) {
        let p = parameters[k]
        let o = range.lowerBound
        vae_sgd_update(
            p.value.data + o, p.gradient.data + o, momentum == 0 ? nil : velocity[k].data + o, range.count,
            learningRate, momentum, weightDecay)
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
    public var stepCount: Int = 0
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

    public var stateSlots: [(name: String, tensors: [Tensor])] { [("m", firstMoments), ("v", secondMoments)] }

    private var stepSize: Float = 0
    private var inverseRootCorrection2: Float = 1

    public func beginStep() {
        stepCount += 1
        (stepSize, inverseRootCorrection2) = stepConstants(step: stepCount)
    }

    /// Step t's bias-corrected constants, η / (1 − β₁ᵗ) and 1 / √(1 − β₂ᵗ), at the current
    /// learning rate (what the update kernels take; the GPU's step uses them too).
    public func stepConstants(step t: Int) -> (stepSize: Float, inverseRootCorrection2: Float) {
        let t = Double(t)
        return (Float(Double(learningRate) / (1 - pow(Double(beta1), t))), Float(1 / (1 - pow(Double(beta2), t)).squareRoot()))
    }

    public func update(parameterAt k: Int, range: Range<Int>) {
        update(parameterAt: k, range: range, addingGradient: nil)
    }

    /// The gradient sum is fused into the update kernel (one pass over the memory).
    public func update(parameterAt k: Int, range: Range<Int>, addingGradient extra: UnsafePointer<Float>?) {
        let p = parameters[k]
        let o = range.lowerBound
        vae_adam_update(
            p.value.data + o, p.gradient.data + o, extra.map { $0 + o }, firstMoments[k].data + o, secondMoments[k].data + o,
            range.count, beta1, beta2, epsilon, stepSize, inverseRootCorrection2, 1 - learningRate * decoupledWeightDecay)
    }
}
