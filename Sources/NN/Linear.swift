import Tensor

/// Fully connected layer: y = x Wᵀ + b, with x `[B, in]`, W `[out, in]` (PyTorch layout), b `[out]`.
///
/// Backward: ∂L/∂W = (∂L/∂y)ᵀ x, ∂L/∂b = Σ_rows ∂L/∂y, ∂L/∂x = (∂L/∂y) W.
public final class Linear: Layer {
    public let inputSize: Int
    public let outputSize: Int
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true

    private var input: Tensor?
    private var output: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.Linear`: W and b uniform in ±1/√in.
    public init(_ inputSize: Int, _ outputSize: Int, rng: inout RandomGenerator) {
        precondition(inputSize > 0 && outputSize > 0, "Linear sizes must be positive")
        self.inputSize = inputSize
        self.outputSize = outputSize
        weight = Parameter(Tensor(shape: [outputSize, inputSize]))
        bias = Parameter(Tensor(shape: [outputSize]))
        let bound = 1 / Float(inputSize).squareRoot()
        rng.fillUniform(weight.value, low: -bound, high: bound)
        rng.fillUniform(bias.value, low: -bound, high: bound)
    }

    private init(sharingParametersOf other: Linear) {
        inputSize = other.inputSize
        outputSize = other.outputSize
        weight = Parameter(sharingValueOf: other.weight)
        bias = Parameter(sharingValueOf: other.bias)
        computesInputGradient = other.computesInputGradient
    }

    public func replica() -> Layer { Linear(sharingParametersOf: self) }

    public var namedParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight), ("bias", bias)]
    }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.rowSize == inputSize, "Linear(\(inputSize), \(outputSize)) got input \(x.shape)")
        let batch = x.rows
        let y = Tensor.reusing(output, rows: batch, columns: outputSize)
        output = y
        input = x
        // y = b (broadcast over rows), then y += x Wᵀ.
        let (yp, bp, n) = (y.data, bias.value.data, outputSize)
        for i in 0..<batch {
            let row = yp + i * n
            for j in 0..<n { row[j] = bp[j] }
        }
        matmul(x, weight.value, into: y, transposeB: true, beta: 1)
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input else { preconditionFailure("Linear.backward before forward") }
        precondition(dy.rows == x.rows && dy.rowSize == outputSize, "Linear.backward got \(dy.shape)")
        matmul(dy, x, into: weight.gradient, transposeA: true)
        dy.sumRows(into: bias.gradient.data)
        guard computesInputGradient else { return nil }
        let dx = Tensor.reusing(inputGradient, shape: x.shape)
        inputGradient = dx
        matmul(dy, weight.value, into: dx)
        return dx
    }
}
