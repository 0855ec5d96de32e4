import Tensor

/// A differentiable function of a batch with an explicit backward pass.
///
/// `forward` returns a tensor the layer owns and overwrites on the next call; `backward` takes
/// ∂L/∂output for the batch of the last `forward`, **sets** every parameter's gradient (it does
/// not accumulate), and returns ∂L/∂input, or `nil` when `computesInputGradient` is false (the
/// first layer of a network, whose input is data, skips that GEMM).
public protocol Layer: AnyObject {
    /// Trainable parameters, named relative to this layer (`weight`, `bias`, `0.weight`, …).
    var namedParameters: [(name: String, parameter: Parameter)] { get }
    /// Whether `backward` must compute ∂L/∂input.
    var computesInputGradient: Bool { get set }
    func forward(_ input: Tensor) -> Tensor
    func backward(_ outputGradient: Tensor) -> Tensor?
    /// A copy that shares this layer's parameter values but owns its gradients and buffers, so
    /// that several threads can each run forward and backward on a slice of one batch.
    func replica() -> Layer
}

extension Layer {
    /// `layer(x)` is `layer.forward(x)`.
    public func callAsFunction(_ input: Tensor) -> Tensor { forward(input) }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// The number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }
}

/// A layer without parameters (activations, reshapes).
public protocol ParameterFreeLayer: Layer {}
extension ParameterFreeLayer {
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }
}
