import Tensor

/// A trainable tensor and the gradient of the loss with respect to it.
public final class Parameter {
    /// The values; a view of a flat buffer after ``packValues(_:)``.
    public private(set) var value: Tensor
    /// ∂loss/∂value for the last backward pass (overwritten, not accumulated, by each backward).
    /// Layers reach it through the parameter on every call, never keeping the tensor, so
    /// ``packGradients(_:)`` can move it into a shared flat buffer.
    public private(set) var gradient: Tensor

    public init(_ value: Tensor) {
        self.value = value
        self.gradient = Tensor(shape: value.shape)
    }

    /// A parameter that shares `other`'s values but has its own gradient (for a replica of a
    /// network that works on another slice of the batch).
    public init(sharingValueOf other: Parameter) {
        self.value = other.value
        self.gradient = Tensor(shape: other.value.shape)
    }

    public var shape: [Int] { value.shape }

    /// Moves the gradients of `parameters` into one flat buffer, in order (each gradient becomes
    /// a view of its stretch, keeping its values), and returns that buffer: one in-place sum
    /// across processes then covers every gradient with no packing or unpacking.
    public static func packGradients(_ parameters: [Parameter]) -> Tensor { pack(parameters, \.gradient) }

    /// Moves the values of `parameters` into one flat buffer, as ``packGradients(_:)`` does the
    /// gradients (for one in-place gather of every weight across processes). Call it before any
    /// replica shares the values (``init(sharingValueOf:)`` shares the tensor it finds).
    public static func packValues(_ parameters: [Parameter]) -> Tensor { pack(parameters, \.value) }

    private static func pack(_ parameters: [Parameter], _ field: ReferenceWritableKeyPath<Parameter, Tensor>) -> Tensor {
        let flat = Tensor(shape: [parameters.reduce(0) { $0 + $1[keyPath: field].count }])
        var offset = 0
        for p in parameters {
            let view = Tensor(viewing: flat, offset: offset, shape: p[keyPath: field].shape)
            view.copy(from: p[keyPath: field])
            p[keyPath: field] = view
            offset += view.count
        }
        return flat
    }
}

/// Scales all gradients so that their joint L2 norm is at most `maxNorm`; returns the norm before.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    var squares = 0.0
    for p in parameters {
        let g = p.gradient.data
        for i in 0..<p.gradient.count { squares += Double(g[i]) * Double(g[i]) }
    }
    let norm = Float(squares.squareRoot())
    if norm > maxNorm, norm > 0 {
        for p in parameters { p.gradient.scale(by: maxNorm / norm) }
    }
    return norm
}
