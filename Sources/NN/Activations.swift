#if canImport(Glibc)
import Glibc
#endif
import CKernels
import Tensor

/// Shared plumbing for elementwise activations y = f(x): one output buffer, one gradient buffer,
/// and a backward rule written in terms of x and y.
public class ElementwiseActivation: ParameterFreeLayer {
    public var computesInputGradient = true
    var input: Tensor?
    var output: Tensor?
    var inputGradient: Tensor?

    init() {}

    public func replica() -> Layer {
        let copy = makeCopy()
        copy.computesInputGradient = computesInputGradient
        return copy
    }

    /// A new instance with the same settings.
    func makeCopy() -> ElementwiseActivation { fatalError("subclass must implement makeCopy") }

    /// Writes f(x[i]) into y[i] for `count` elements.
    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        fatalError("subclass must implement apply")
    }

    /// Writes ∂L/∂x = ∂L/∂y · f′(x) given x, y and ∂L/∂y.
    func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ count: Int
    ) {
        fatalError("subclass must implement derivative")
    }

    public func forward(_ x: Tensor) -> Tensor {
        let y = Tensor.reusing(output, shape: x.shape)
        output = y
        input = x
        apply(x.data, y.data, x.count)
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input, let y = output else { preconditionFailure("backward before forward") }
        precondition(dy.count == y.count, "activation backward got \(dy.shape) for output \(y.shape)")
        guard computesInputGradient else { return nil }
        let dx = Tensor.reusing(inputGradient, shape: x.shape)
        inputGradient = dx
        derivative(x.data, y.data, dy.data, dx.data, x.count)
        return dx
    }
}

/// ReLU: y = max(x, 0); ∂y/∂x = 1 where x > 0, else 0.
///
/// Fused into the layer before it (see `ReLUFusing`), it passes values and gradients through.
public final class ReLU: ElementwiseActivation {
    /// Whether the layer before applies this ReLU (set by `Sequential`).
    public internal(set) var isFused = false

    public override init() {}
    override func makeCopy() -> ElementwiseActivation { ReLU() }

    public override func forward(_ x: Tensor) -> Tensor {
        isFused ? x : super.forward(x)
    }

    public override func backward(_ dy: Tensor) -> Tensor? {
        guard isFused else { return super.backward(dy) }
        return computesInputGradient ? dy : nil
    }

    override func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        // Load first, then select: a conditional load would compile to a branch.
        for i in 0..<n {
            let v = x[i]
            y[i] = v > 0 ? v : 0
        }
    }
    override func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        for i in 0..<n {
            let g = dy[i]
            dx[i] = x[i] > 0 ? g : 0
        }
    }
}

/// Leaky ReLU: y = x for x > 0, else α·x.
public final class LeakyReLU: ElementwiseActivation {
    public let slope: Float
    public init(slope: Float = 0.01) { self.slope = slope }
    override func makeCopy() -> ElementwiseActivation { LeakyReLU(slope: slope) }
    override func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let a = slope
        for i in 0..<n {
            let v = x[i]
            y[i] = v > 0 ? v : a * v
        }
    }
    override func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        let a = slope
        for i in 0..<n {
            let g = dy[i]
            dx[i] = x[i] > 0 ? g : a * g
        }
    }
}

/// Tanh: y = tanh x; ∂y/∂x = 1 − y².
public final class Tanh: ElementwiseActivation {
    public override init() {}
    override func makeCopy() -> ElementwiseActivation { Tanh() }
    /// In C (`vae_tanh`: a Taylor series below |x| = 0.3, (1 − e^(−2|x|))/(1 + e^(−2|x|)) above)
    /// so that it runs with the CPU's widest vectors; relative error below 10⁻⁶.
    override func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        vae_tanh(x, y, n)
    }
    override func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        vae_tanh_backward(y, dy, dx, n)
    }
}

/// Sigmoid: y = 1/(1 + e⁻ˣ); ∂y/∂x = y(1 − y).
public final class Sigmoid: ElementwiseActivation {
    public override init() {}
    override func makeCopy() -> ElementwiseActivation { Sigmoid() }
    override func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] = sigmoid(x[i]) }
    }
    override func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        for i in 0..<n { dx[i] = dy[i] * y[i] * (1 - y[i]) }
    }
}

/// Softplus: y = log(1 + eˣ), computed as max(x, 0) + log1p(e^−|x|); ∂y/∂x = sigmoid(x).
public final class Softplus: ElementwiseActivation {
    public override init() {}
    override func makeCopy() -> ElementwiseActivation { Softplus() }
    override func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] = softplus(x[i]) }
    }
    override func derivative(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        for i in 0..<n { dx[i] = dy[i] * sigmoid(x[i]) }
    }
}

/// The logistic function 1/(1 + e⁻ˣ), without overflow for large |x|.
@inlinable
public func sigmoid(_ x: Float) -> Float {
    if x >= 0 {
        return 1 / (1 + expf(-x))
    }
    let e = expf(x)
    return e / (1 + e)
}

/// log(1 + eˣ) in the stable form max(x, 0) + log1p(e^−|x|).
@inlinable
public func softplus(_ x: Float) -> Float {
    max(x, 0) + log1pf(expf(-abs(x)))
}

/// The activations `vae train --activation` can name.
public enum ActivationKind: String, Codable, CaseIterable, Sendable {
    case relu, leakyRelu = "leaky-relu", tanh, sigmoid, softplus

    public func makeLayer() -> Layer {
        switch self {
        case .relu: ReLU()
        case .leakyRelu: LeakyReLU()
        case .tanh: Tanh()
        case .sigmoid: Sigmoid()
        case .softplus: Softplus()
        }
    }
}
