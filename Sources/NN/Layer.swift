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

/// A layer that can apply the ReLU after it itself, while its output is still in cache:
/// forward ends with max(y, 0); backward masks ∂L/∂y where y ≤ 0 in the same pass that sums the
/// bias gradient. `Sequential` turns this on for each such layer directly followed by a `ReLU`,
/// and that `ReLU` then passes values and gradients through unchanged (it keeps its index, so
/// parameter names do not move). The results are the unfused ones.
protocol ReLUFusing: AnyObject {
    var fusesReLU: Bool { get set }
}

/// A layer whose matrix products can take bf16 operands (see `MatrixPrecision`). `Sequential`
/// passes the choice on to each of its layers that has products; replicas keep it.
public protocol PrecisionSetting: AnyObject {
    var precision: MatrixPrecision { get set }
}
