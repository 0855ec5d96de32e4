import Datasets
import Foundation
import Tensor
import VAE

/// A trained model loaded from its run folder, with its test set: what the commands that
/// explore a model start from (the test images by index, their latent codes, decoded codes).
public struct TrainedRun {
    public let folder: RunFolder
    public let model: VariationalAutoencoder
    public let config: RunConfig
    /// The test set as the model sees it (binarised if it was trained binarised).
    public let testSet: ImageDataset

    /// Loads the final (or best) weights, the configuration and the test set of `folder`.
    public init(_ folder: RunFolder, weights: RunFolder.Weights = .final) throws {
        self.folder = folder
        (model, config) = try folder.loadModel(weights)
        testSet = try config.training.loadTestSet(for: config.model)
    }

    /// Checks a `--label` flag against the model: nil is fine; a label needs a conditional
    /// model and must be one of its classes.
    public func checkLabel(_ label: Int?) throws {
        try config.model.checkLabel(label, run: folder.path)
    }

    /// Test images `indices` as a batch (images [n, C, H, W] in [0, 1], labels, one-hot labels
    /// for a conditional model).
    public func testImages(_ indices: [Int]) throws -> Batch {
        let size = testSet.exampleSize
        let out = Tensor(shape: [indices.count] + testSet.shape)
        for (row, i) in indices.enumerated() {
            guard i >= 0 && i < testSet.count else {
                throw DataError("image \(i) does not exist: the test set has images 0…\(testSet.count - 1)")
            }
            testSet.copyExample(i, to: out.data + row * size)
        }
        let labels = testSet.labels.map { all in indices.map { all[$0] } }
        return Batch(images: out, labels: labels, condition: model.config.oneHot(labels ?? indices.map { _ in 0 }))
    }

    /// Posterior means μ(x) of test images `indices`, one array of d values per image.
    public func posteriorMeans(_ indices: [Int]) throws -> [[Float]] {
        let batch = try testImages(indices)
        let mu = model.posteriorMeans(batch.images, condition: batch.condition)
        let d = model.latentDimension
        return (0..<indices.count).map { r in (0..<d).map { mu[r * d + $0] } }
    }

    /// The mean images E[x|z] of latent codes `codes` (a conditional model decodes them all
    /// with class `label`).
    public func decode(_ codes: [[Float]], label: Int = 0) -> Tensor {
        let condition = model.config.oneHot([Int](repeating: label, count: codes.count))
        return model.decodeMean(Tensor(shape: [codes.count, model.latentDimension], values: codes.flatMap { $0 }), condition: condition)
    }

    /// The posterior's parameters (``PosteriorParameters``) of every image of `dataset` (default:
    /// the test set), in data-set order.
    /// `progress` sees the images done after each batch.
    public func posteriorParameters(_ dataset: ImageDataset? = nil, progress: (Int) -> Void = { _ in }) -> PosteriorParameters {
        let d = model.latentDimension, d2 = model.config.upperLatentDimension
        var out = PosteriorParameters()
        var done = 0
        var means: Tensor?
        for batch in BatchLoader.evaluation(dataset ?? testSet, for: model).epoch() {
            let h = model.encode(batch.images, condition: batch.condition)
            for r in 0..<batch.count {
                out.mu += UnsafeBufferPointer(start: h.data + r * 2 * d, count: d)
                out.logVariance += UnsafeBufferPointer(start: h.data + r * 2 * d + d, count: d)
            }
            if let encoder2 = model.encoder2 {
                // q(z₂|z₁) at z₁ = μ₁(x).
                let m = Tensor.reusing(means, rows: batch.count, columns: d)
                means = m
                for r in 0..<batch.count { (m.data + r * d).update(from: h.data + r * 2 * d, count: d) }
                let h2 = encoder2(m)
                for r in 0..<batch.count {
                    out.upperMu += UnsafeBufferPointer(start: h2.data + r * 2 * d2, count: d2)
                    out.upperLogVariance += UnsafeBufferPointer(start: h2.data + r * 2 * d2 + d2, count: d2)
                }
            }
            done += batch.count
            progress(done)
        }
        return out
    }
}

/// The posterior's parameters of a data set's examples, row after row: μ and log σ² of q(z₁|x)
/// (of q(z|x) with one stochastic layer) and, with two, of q(z₂|z₁) at z₁ = μ₁(x).
public struct PosteriorParameters {
    public var mu: [Float] = []
    public var logVariance: [Float] = []
    public var upperMu: [Float] = []
    public var upperLogVariance: [Float] = []
}

/// Stacks tensors of the same row shape into one.
public func stack(_ parts: [Tensor]) -> Tensor {
    let out = Tensor(shape: [parts.reduce(0) { $0 + $1.rows }] + parts[0].shape.dropFirst())
    var offset = 0
    for p in parts {
        (out.data + offset).update(from: p.data, count: p.count)
        offset += p.count
    }
    return out
}

extension ModelConfig {
    /// Checks a class label asked of this model (`run` names it in the message): nil is fine; a
    /// label needs a conditional model and must be one of its classes.
    public func checkLabel(_ label: Int?, run: String) throws {
        guard let label else { return }
        guard isConditional else {
            throw ConfigurationError("\(run) holds an unconditional model: --label and --per-class need one trained with --conditional")
        }
        guard label >= 0 && label < conditionClasses else {
            throw ConfigurationError("--label \(label) is not a class of this model (0…\(conditionClasses - 1))")
        }
    }
}
