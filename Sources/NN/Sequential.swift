import Tensor

/// Layers applied in order. Parameters are named by position, as in PyTorch's `nn.Sequential`
/// (`0.weight`, `0.bias`, `2.weight`, …), so checkpoints read naturally in other tools.
public final class Sequential: Layer, PrecisionSetting {
    public let layers: [Layer]
    /// Called after each layer's backward with the layer's index in ``layers`` (its parameters'
    /// gradients are final then): for work that can start before the whole backward pass ends.
    public var afterLayerBackward: ((Int) -> Void)?

    /// A layer that can apply a ReLU itself (`Linear`, the convolutions) and is directly followed
    /// by one gets it fused (see `ReLUFusing`).
    public init(_ layers: [Layer]) {
        precondition(!layers.isEmpty, "Sequential needs at least one layer")
        self.layers = layers
        for (layer, next) in zip(layers, layers.dropFirst()) {
            if let fusing = layer as? ReLUFusing, let relu = next as? ReLU {
                fusing.fusesReLU = true
                relu.isFused = true
            }
        }
    }

    public convenience init(_ layers: Layer...) { self.init(layers) }

    public func replica() -> Layer {
        let copy = Sequential(layers.map { $0.replica() })
        copy.computesInputGradient = computesInputGradient
        return copy
    }

    /// Layout conversions (`ChannelsLast`, `ChannelsFirst`) take no index: they are this
    /// engine's detail, not modules of the PyTorch model the names follow.
    public var namedParameters: [(name: String, parameter: Parameter)] {
        layers.filter { !($0 is LayoutConversion) }.enumerated().flatMap { index, layer in
            layer.namedParameters.map { ("\(index).\($0.name)", $0.parameter) }
        }
    }

    /// The products' operand format, set on every layer that has products (FP32 when none has).
    public var precision: MatrixPrecision {
        get { layers.lazy.compactMap { ($0 as? PrecisionSetting)?.precision }.first ?? .fp32 }
        set { for case let layer as PrecisionSetting in layers { layer.precision = newValue } }
    }

    /// Follows the first layer: a network whose input is data skips its input gradient.
    public var computesInputGradient: Bool {
        get { layers[0].computesInputGradient }
        set { layers[0].computesInputGradient = newValue }
    }

    public func forward(_ input: Tensor) -> Tensor {
        var x = input
        for layer in layers { x = layer.forward(x) }
        return x
    }

    public func backward(_ outputGradient: Tensor) -> Tensor? {
        var g = outputGradient
        for (index, layer) in layers.enumerated().reversed() {
            let next = layer.backward(g)
            afterLayerBackward?(index)
            guard let next else { return nil }
            g = next
        }
        return g
    }
}
