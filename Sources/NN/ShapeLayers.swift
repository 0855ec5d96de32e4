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

/// Nearest-neighbour upsampling of NCHW input by an integer factor f: each value becomes an
/// f × f block. Backward: each input gradient is the sum over its block.
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
        precondition(x.shape.count == 4, "Upsample takes NCHW input, got \(x.shape)")
        inputShape = x.shape
        let (planes, h, w, f) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3], factor)
        let y = Tensor.reusing(output, shape: [x.shape[0], x.shape[1], h * f, w * f])
        output = y
        for p in 0..<planes {
            let src = x.data + p * h * w, dst = y.data + p * h * w * f * f
            for i in 0..<(h * f) {
                let row = dst + i * w * f, srcRow = src + (i / f) * w
                for j in 0..<(w * f) { row[j] = srcRow[j / f] }
            }
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard computesInputGradient else { return nil }
        let (planes, h, w, f) = (inputShape[0] * inputShape[1], inputShape[2], inputShape[3], factor)
        let dx = Tensor.reusing(inputGradient, shape: inputShape)
        inputGradient = dx
        dx.fill(0)
        for p in 0..<planes {
            let src = dy.data + p * h * w * f * f, dst = dx.data + p * h * w
            for i in 0..<(h * f) {
                let row = src + i * w * f, dstRow = dst + (i / f) * w
                for j in 0..<(w * f) { dstRow[j / f] += row[j] }
            }
        }
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
