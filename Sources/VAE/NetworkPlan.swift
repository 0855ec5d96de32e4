import NN
import Tensor

/// One layer of a network, described before it is built.
///
/// ``ModelConfig/networkPlan(outputsPerValue:)`` lists a model's layers as these values; ``VariationalAutoencoder``
/// builds its networks from that list, and ``ModelConfig/parameterCount`` sums it, so the size of
/// a model and the model itself come from one description (a configuration can be refused for
/// its size before anything is allocated).
public enum LayerSpec: Equatable, Sendable {
    case linear(inputs: Int, outputs: Int)
    case conv(inChannels: Int, outChannels: Int, geometry: ConvolutionGeometry)
    case convTranspose(inChannels: Int, outChannels: Int, geometry: ConvolutionGeometry)
    case activation(ActivationKind)
    /// Appends the one-hot label (of this many classes) to each row.
    case conditioning(classes: Int)
    case reshape([Int])
    case channelsLast
    case channelsFirst
    case upsample(factor: Int)

    /// Trainable values of the layer (weights and biases), in Double so that an absurd size
    /// cannot overflow.
    public var parameterCount: Double {
        switch self {
        case let .linear(i, o): Double(i) * Double(o) + Double(o)
        case let .conv(i, o, g), let .convTranspose(i, o, g): Double(i) * Double(o) * Double(g.kernel * g.kernel) + Double(o)
        default: 0
        }
    }

    /// The layer, initialised from `rng` as PyTorch would (fully connected layers as
    /// `initialization` says; layers without parameters draw nothing).
    func make(rng: inout RandomGenerator, initialization: WeightInitialization = .pytorch) -> Layer {
        switch self {
        case let .linear(i, o): Linear(i, o, rng: &rng, initialization: initialization)
        case let .conv(i, o, g): Conv2D(i, o, geometry: g, rng: &rng)
        case let .convTranspose(i, o, g): ConvTranspose2D(i, o, geometry: g, rng: &rng)
        case let .activation(kind): kind.makeLayer()
        case let .conditioning(classes): Conditioning(conditionSize: classes)
        case let .reshape(shape): Reshape(shape)
        case .channelsLast: ChannelsLast()
        case .channelsFirst: ChannelsFirst()
        case let .upsample(factor): Upsample(factor: factor)
        }
    }
}

extension ModelConfig {
    /// The most values one example produces at any layer of the encoder or the decoder (each
    /// layer's output buffer holds this many per row of its batch), in Double so that an absurd
    /// configuration cannot overflow. Bounds the memory of a batch before anything is built.
    public var largestActivation: Double {
        let outputs = makeLikelihood().outputsPerValue
        let plan = networkPlan(outputsPerValue: outputs)
        func walk(_ layers: [LayerSpec], from shape: [Double]) -> Double {
            var shape = shape, largest = shape.reduce(1, *)
            for layer in layers {
                switch layer {
                case let .linear(_, o): shape = [Double(o)]
                case let .conv(_, o, g):
                    shape = [Double(o), Double(g.convolutionOutput(Int(shape[1]))), Double(g.convolutionOutput(Int(shape[2])))]
                case let .convTranspose(_, o, g):
                    shape = [Double(o), Double(g.transposedOutput(Int(shape[1]))), Double(g.transposedOutput(Int(shape[2])))]
                case let .upsample(f): shape = [shape[0], shape[1] * Double(f), shape[2] * Double(f)]
                case let .conditioning(k): shape = [shape.reduce(1, *) + Double(k)]
                case let .reshape(s): shape = s.map(Double.init)
                case .activation, .channelsLast, .channelsFirst: break
                }
                largest = max(largest, shape.reduce(1, *))
            }
            return largest
        }
        let upper = upperNetworkPlan
        return max(
            walk(plan.encoder, from: inputShape.map(Double.init)), walk(plan.decoder, from: [Double(latentDimension)]),
            walk(upper.encoder, from: [Double(latentDimension)]), walk(upper.decoder, from: [Double(upperLatentDimension)]))
    }

    /// The networks of the second stochastic layer (none for a model with one):
    /// q(z₂|z₁): z₁ → (Linear → act)* → Linear(2d₂) → [μ₂ | log σ₂²];
    /// p(z₁|z₂): z₂ → (Linear → act)* (the widths reversed) → Linear(2d₁) → [μ | log σ²] of z₁.
    public var upperNetworkPlan: (encoder: [LayerSpec], decoder: [LayerSpec]) {
        guard upperLatentDimension > 0 else { return ([], []) }
        func mlp(_ inputs: Int, _ widths: [Int], _ outputs: Int) -> [LayerSpec] {
            var layers: [LayerSpec] = []
            var width = inputs
            for h in widths {
                layers += [.linear(inputs: width, outputs: h), .activation(activation)]
                width = h
            }
            return layers + [.linear(inputs: width, outputs: outputs)]
        }
        return (mlp(latentDimension, upperHiddenSizes, 2 * upperLatentDimension), mlp(upperLatentDimension, upperHiddenSizes.reversed(), 2 * latentDimension))
    }

    /// The encoder's and the decoder's layers, in order. The decoder's last layer has
    /// `outputsPerValue` outputs per data value (2 for a likelihood that also predicts σ).
    public func networkPlan(outputsPerValue: Int) -> (encoder: [LayerSpec], decoder: [LayerSpec]) {
        switch architecture {
        case .mlp: fullyConnectedPlan(outputsPerValue: outputsPerValue)
        case .conv: convolutionalPlan(outputsPerValue: outputsPerValue)
        }
    }

    /// x → [label] → (Linear → act)* → Linear(2d);  z → [label] → (Linear → act)* → Linear.
    func fullyConnectedPlan(outputsPerValue: Int) -> (encoder: [LayerSpec], decoder: [LayerSpec]) {
        let d = latentDimension, k = conditionClasses
        var encoder: [LayerSpec] = k > 0 ? [.conditioning(classes: k)] : []
        var width = inputSize + k
        for h in hiddenSizes {
            encoder += [.linear(inputs: width, outputs: h), .activation(activation)]
            width = h
        }
        encoder.append(.linear(inputs: width, outputs: 2 * d))
        var decoder: [LayerSpec] = k > 0 ? [.conditioning(classes: k)] : []
        width = d + k
        for h in hiddenSizes.reversed() {
            decoder += [.linear(inputs: width, outputs: h), .activation(activation)]
            width = h
        }
        decoder.append(.linear(inputs: width, outputs: inputSize * outputsPerValue))
        return (encoder, decoder)
    }

    /// The convolutional reference model, for channels [c₁, …, c_n]:
    /// x → (Conv k4 s2 p1 → act)ⁿ → Flatten → [label] → Linear(2d);
    /// z → [label] → Linear → act → Reshape → (ConvT k4 s2 p1 → act)ⁿ⁻¹ → ConvT → output,
    /// or with nearest upsampling each ConvT is Upsample(2) → Conv k3 s1 p1.
    /// The convolutions compute channels-last; `channelsLast`/`channelsFirst` convert at the
    /// edges, so the flattened features, the output and every weight keep PyTorch's layout.
    func convolutionalPlan(outputsPerValue: Int) -> (encoder: [LayerSpec], decoder: [LayerSpec]) {
        let d = latentDimension, k = conditionClasses
        let down = ConvolutionGeometry(kernel: 4, stride: 2, padding: 1)
        let (h, w) = convolutionOutputSize
        let last = channels.last ?? 1
        let flat = last * h * w
        var encoder: [LayerSpec] = [.channelsLast]
        var inChannels = inputShape[0]
        for c in channels {
            encoder += [.conv(inChannels: inChannels, outChannels: c, geometry: down), .activation(activation)]
            inChannels = c
        }
        encoder += [.channelsFirst, .reshape([flat])]
        if k > 0 { encoder.append(.conditioning(classes: k)) }
        encoder.append(.linear(inputs: flat + k, outputs: 2 * d))

        var decoder: [LayerSpec] = k > 0 ? [.conditioning(classes: k)] : []
        decoder += [.linear(inputs: d + k, outputs: flat), .activation(activation), .reshape([last, h, w]), .channelsLast]
        let widths = Array(channels.reversed().dropFirst()) + [inputShape[0] * outputsPerValue]
        inChannels = last
        for (i, c) in widths.enumerated() {
            switch upsampling {
            case .transposed:
                decoder.append(.convTranspose(inChannels: inChannels, outChannels: c, geometry: down))
            case .nearest:
                decoder += [.upsample(factor: 2), .conv(inChannels: inChannels, outChannels: c, geometry: ConvolutionGeometry(kernel: 3, stride: 1, padding: 1))]
            }
            if i < widths.count - 1 { decoder.append(.activation(activation)) }
            inChannels = c
        }
        decoder.append(.channelsFirst)
        return (encoder, decoder)
    }
}
