import CKernels
import Tensor

/// Gives each example a new shape (`Flatten` is `Reshape([n])`); no copy: the output is a view.
public final class Reshape: ParameterFreeLayer {
    /// The shape of one example after the layer.
    public let rowShape: [Int]
    public var computesInputGradient = true
    private var inputShape: [Int] = []
    private var output: Tensor?
    private var gradient: Tensor?

    public init(_ rowShape: [Int]) { self.rowShape = rowShape }

    /// Flattens each example to a vector of `count` values.
    public static func flatten(_ count: Int) -> Reshape { Reshape([count]) }

    public func replica() -> Layer { Reshape(rowShape) }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.rowSize == rowShape.reduce(1, *), "Reshape to \(rowShape) got \(x.shape)")
        inputShape = x.shape
        return Tensor.view(x, shape: [x.rows] + rowShape, reusing: &output)
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard computesInputGradient else { return nil }
        return Tensor.view(dy, shape: inputShape, reusing: &gradient)
    }
}

/// Nearest-neighbour upsampling of channels-last input [B, H, W, C] by an integer factor f:
/// each pixel's C values fill an f × f block. Backward: each input gradient is the sum over its
/// block.
public final class Upsample: ParameterFreeLayer {
    public let factor: Int
    public var computesInputGradient = true
    private var inputShape: [Int] = []
    private var output: Tensor?
    private var inputGradient: Tensor?

    public init(factor: Int) {
        precondition(factor >= 1, "upsampling factor must be positive")
        self.factor = factor
    }

    public func replica() -> Layer { Upsample(factor: factor) }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4, "Upsample takes [B, H, W, C] input, got \(x.shape)")
        inputShape = x.shape
        let (b, h, w, c, f) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], factor)
        let y = Tensor.reusing(output, shape: [b, h * f, w * f, c])
        output = y
        for row in 0..<(b * h * f) {
            let dst = y.data + row * w * f * c, src = x.data + (row / f) * w * c
            for j in 0..<(w * f) { (dst + j * c).update(from: src + (j / f) * c, count: c) }
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard computesInputGradient else { return nil }
        let (w, c, f) = (inputShape[2], inputShape[3], factor)
        let dx = Tensor.reusing(inputGradient, shape: inputShape)
        inputGradient = dx
        dx.fill(0)
        for row in 0..<(dy.count / (w * f * c)) {
            let src = dy.data + row * w * f * c, dst = dx.data + (row / f) * w * c
            for j in 0..<(w * f) {
                let from = src + j * c, to = dst + (j / f) * c
                for k in 0..<c { to[k] += from[k] }
            }
        }
        return dx
    }
}

/// A change of memory layout between PyTorch's channels-first images [B, C, H, W] and the
/// channels-last [B, H, W, C] the convolutions compute in. Not a module in PyTorch's sense:
/// `Sequential` gives it no index, so parameter names match the PyTorch model.
public protocol LayoutConversion: ParameterFreeLayer {}

/// [B, C, H, W] → [B, H, W, C] (a view when C = 1 or H·W = 1, otherwise a transpose per image).
public final class ChannelsLast: LayoutConversion {
    public var computesInputGradient = true
    private let permute: ImagePermutation

    public init() { permute = ImagePermutation() }
    public func replica() -> Layer { ChannelsLast() }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4, "ChannelsLast takes [B, C, H, W] input, got \(x.shape)")
        return permute.forward(x, planes: x.shape[1], positions: x.shape[2] * x.shape[3],
                               outputShape: [x.shape[0], x.shape[2], x.shape[3], x.shape[1]])
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        computesInputGradient ? permute.backward(dy) : nil
    }
}

/// [B, H, W, C] → [B, C, H, W] (a view when C = 1 or H·W = 1, otherwise a transpose per image).
public final class ChannelsFirst: LayoutConversion {
    public var computesInputGradient = true
    private let permute: ImagePermutation

    public init() { permute = ImagePermutation() }
    public func replica() -> Layer { ChannelsFirst() }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4, "ChannelsFirst takes [B, H, W, C] input, got \(x.shape)")
        return permute.forward(x, planes: x.shape[1] * x.shape[2], positions: x.shape[3],
                               outputShape: [x.shape[0], x.shape[3], x.shape[1], x.shape[2]])
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        computesInputGradient ? permute.backward(dy) : nil
    }
}

/// Each example is a [rows, columns] matrix transposed to [columns, rows]; the gradient is
/// transposed back. When either side is 1 the data are already in order and views suffice.
final class ImagePermutation {
    private var inputShape: [Int] = []
    private var rows = 0, columns = 0
    private var output: Tensor?, outputView: Tensor?
    private var gradient: Tensor?, gradientView: Tensor?

    init() {}

    func forward(_ x: Tensor, planes: Int, positions: Int, outputShape: [Int]) -> Tensor {
        inputShape = x.shape
        (rows, columns) = (planes, positions)
        if rows == 1 || columns == 1 { return Tensor.view(x, shape: outputShape, reusing: &outputView) }
        let y = Tensor.reusing(output, shape: outputShape)
        output = y
        for b in 0..<x.rows { vae_transpose(x.data + b * rows * columns, rows, columns, y.data + b * rows * columns) }
        return y
    }

    func backward(_ dy: Tensor) -> Tensor {
        if rows == 1 || columns == 1 { return Tensor.view(dy, shape: inputShape, reusing: &gradientView) }
        let dx = Tensor.reusing(gradient, shape: inputShape)
        gradient = dx
        for b in 0..<dx.rows { vae_transpose(dy.data + b * rows * columns, columns, rows, dx.data + b * rows * columns) }
        return dx
    }
}

/// Appends a per-example condition (a one-hot label) to each example's features:
/// [B, F] → [B, F + K]. The caller sets `condition` ([B, K]) before each forward pass.
/// Backward passes on the first F columns of the gradient.
public final class Conditioning: ParameterFreeLayer {
    public let conditionSize: Int
    public var condition: Tensor?
    public var computesInputGradient = true
    private var inputShape: [Int] = []
    private var output: Tensor?
    private var inputGradient: Tensor?

    public init(conditionSize: Int) { self.conditionSize = conditionSize }

    public func replica() -> Layer { Conditioning(conditionSize: conditionSize) }

    public func forward(_ x: Tensor) -> Tensor {
        guard let c = condition, c.rows == x.rows, c.rowSize == conditionSize else {
            preconditionFailure("Conditioning needs a [\(x.rows), \(conditionSize)] condition")
        }
        inputShape = x.shape
        let f = x.rowSize, width = f + conditionSize
        let y = Tensor.reusing(output, rows: x.rows, columns: width)
        output = y
        for b in 0..<x.rows {
            (y.data + b * width).update(from: x.data + b * f, count: f)
            (y.data + b * width + f).update(from: c.data + b * conditionSize, count: conditionSize)
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard computesInputGradient else { return nil }
        let dx = Tensor.reusing(inputGradient, shape: inputShape)
        inputGradient = dx
        let f = dx.rowSize, width = f + conditionSize
        for b in 0..<dx.rows { (dx.data + b * f).update(from: dy.data + b * width, count: f) }
        return dx
    }
}
