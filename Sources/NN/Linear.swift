import CKernels
import Tensor

/// Fully connected layer: y = x Wᵀ + b, with x `[B, in]`, W `[out, in]` (PyTorch layout), b `[out]`.
///
/// Backward: ∂L/∂W = (∂L/∂y)ᵀ x, ∂L/∂b = Σ_rows ∂L/∂y, ∂L/∂x = (∂L/∂y) W.
/// Followed by a ReLU in a `Sequential`, it applies the ReLU itself (`ReLUFusing`). The passes
/// besides the products (the bias broadcast, the ReLU, the bias gradient by columns) run on the
/// threads that split the products (`BLAS.splitOverGEMMThreads`): the same numbers on any split.
public final class Linear: Layer, ReLUFusing, PrecisionSetting {
    public let inputSize: Int
    public let outputSize: Int
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true
    /// Whether this layer applies the ReLU after it (set by `Sequential`; see `ReLUFusing`).
    public internal(set) var fusesReLU = false
    /// The operands' format in this layer's three products (see `MatrixPrecision`).
    public var precision: MatrixPrecision = .fp32

    private var input: Tensor?
    private var output: Tensor?
    private var inputGradient: Tensor?
    private var maskedGradient: Tensor?

    /// Initialised as PyTorch's `nn.Linear` (W and b uniform in ±1/√in), or with `.glorot` as
    /// Glorot & Bengio (2010) for tanh layers: W uniform in ±√(6/(in + out)), b = 0.
    public init(_ inputSize: Int, _ outputSize: Int, rng: inout RandomGenerator, initialization: WeightInitialization = .pytorch) {
        precondition(inputSize > 0 && outputSize > 0, "Linear sizes must be positive")
        self.inputSize = inputSize
        self.outputSize = outputSize
        weight = Parameter(Tensor(shape: [outputSize, inputSize]))
        bias = Parameter(Tensor(shape: [outputSize]))
        switch initialization {
        case .pytorch:
            let bound = 1 / Float(inputSize).squareRoot()
            rng.fillUniform(weight.value, low: -bound, high: bound)
            rng.fillUniform(bias.value, low: -bound, high: bound)
        case .glorot:
            let bound = (6 / Float(inputSize + outputSize)).squareRoot()
            rng.fillUniform(weight.value, low: -bound, high: bound)
        }
    }

    private init(sharingParametersOf other: Linear) {
        inputSize = other.inputSize
        outputSize = other.outputSize
        weight = Parameter(sharingValueOf: other.weight)
        bias = Parameter(sharingValueOf: other.bias)
        computesInputGradient = other.computesInputGradient
        precision = other.precision
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
        // y = b (broadcast over rows), then y += x Wᵀ; the passes over y split over the threads
        // that split the product.
        let (n, b) = (outputSize, bias.value.data)
        BLAS.splitOverGEMMThreads(batch, work: n) { rows in vae_fill_rows(y.data + rows.lowerBound * n, b, rows.count, n) }
        matmul(x, weight.value, into: y, transposeB: true, beta: 1, precision: precision)
        if fusesReLU {
            BLAS.splitOverGEMMThreads(y.count, multipleOf: 16) { part in vae_relu_inplace(y.data + part.lowerBound, part.count) }
        }
        return y
    }

    public func backward(_ outputGradient: Tensor) -> Tensor? {
        guard let x = input, let y = output else { preconditionFailure("Linear.backward before forward") }
        precondition(outputGradient.rows == x.rows && outputGradient.rowSize == outputSize, "Linear.backward got \(outputGradient.shape)")
        var dy = outputGradient
        let (rows, n, db) = (x.rows, outputSize, bias.gradient.data)
        bias.gradient.fill(0)
        // The bias gradient's columns (each summed in row order) split over the product's threads.
        if fusesReLU {
            // ∂L/∂(xWᵀ + b) = ∂L/∂y where y > 0; the bias gradient summed in the same pass.
            let masked = Tensor.reusing(maskedGradient, shape: outputGradient.shape)
            maskedGradient = masked
            dy = masked
            BLAS.splitOverGEMMThreads(n, work: rows, multipleOf: 16) { c in
                let o = c.lowerBound
                vae_relu_mask_column_sums(y.data + o, outputGradient.data + o, masked.data + o, rows, c.count, n, db + o)
            }
        } else {
            BLAS.splitOverGEMMThreads(n, work: rows, multipleOf: 16) { c in
                vae_add_column_sums(outputGradient.data + c.lowerBound, rows, c.count, n, db + c.lowerBound)
            }
        }
        matmul(dy, x, into: weight.gradient, transposeA: true, precision: precision)
        guard computesInputGradient else { return nil }
        let dx = Tensor.reusing(inputGradient, shape: x.shape)
        inputGradient = dx
        matmul(dy, weight.value, into: dx, precision: precision)
        return dx
    }
}

/// How a fully connected layer's weights start.
public enum WeightInitialization: String, Codable, CaseIterable, Sendable {
    /// PyTorch's `nn.Linear` default: W and b uniform in ±1/√in.
    case pytorch
    /// Glorot & Bengio (2010), as Burda et al.'s code: W uniform in ±√(6/(in + out)), b = 0.
    case glorot
}
