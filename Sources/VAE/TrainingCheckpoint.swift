import Files
import Foundation
import NN
import SafeTensors
import Tensor

/// Where training is, exactly enough to continue bit for bit.
public struct TrainingState: Equatable, Sendable {
    /// The epoch in progress, from 0.
    public var epoch: Int
    /// Batches of that epoch already trained on.
    public var batchIndex: Int
    /// Optimiser steps taken in total.
    public var step: Int
    /// State of the generator that draws ε.
    public var noiseRNG: [UInt64]
    /// State of the data loader's generator (shuffling, binarisation).
    public var dataRNG: [UInt64]
    /// The order of the training examples in this epoch.
    public var order: [Int]
    /// Sums of the loss terms over this epoch's batches so far.
    public var partialLoss: LossBreakdown
    /// Seconds spent on this epoch so far.
    public var elapsed: Double
    /// Batch workers in use (the summation order depends on it).
    public var workers: Int

    public init(epoch: Int, batchIndex: Int, step: Int, noiseRNG: [UInt64], dataRNG: [UInt64], order: [Int],
                partialLoss: LossBreakdown, elapsed: Double, workers: Int) {
        self.epoch = epoch
        self.batchIndex = batchIndex
        self.step = step
        self.noiseRNG = noiseRNG
        self.dataRNG = dataRNG
        self.order = order
        self.partialLoss = partialLoss
        self.elapsed = elapsed
        self.workers = workers
    }
}

/// Training checkpoints: model weights, Adam's moments and step count, and a `TrainingState`,
/// in one safetensors file (`optimizer.m.<name>`, `optimizer.v.<name>`, `data.order`; the
/// rest in `__metadata__`). Written atomically.
extension Checkpoint {
    public static func saveTraining(_ model: VariationalAutoencoder, optimizer: Adam, state: TrainingState, to path: String) throws {
        var writer = SafeTensorsWriter(metadata: [
            "format": formatName + "-training",
            "config": encodeConfig(model.config),
            "epoch": "\(state.epoch)", "batch_index": "\(state.batchIndex)", "step": "\(state.step)",
            "adam_step": "\(optimizer.stepCount)", "workers": "\(state.workers)",
            "noise_rng": state.noiseRNG.map(String.init).joined(separator: ","),
            "data_rng": state.dataRNG.map(String.init).joined(separator: ","),
            "partial_reconstruction": "\(state.partialLoss.reconstruction)", "partial_kl": "\(state.partialLoss.kl)",
            "partial_objective": "\(state.partialLoss.objective)", "partial_images": "\(state.partialLoss.images)",
            "elapsed": "\(state.elapsed)",
        ])
        for (k, (name, p)) in model.namedParameters.enumerated() {
            writer.add(name, shape: p.shape, floats: UnsafeBufferPointer(p.value.buffer))
            writer.add("optimizer.m.\(name)", shape: p.shape, floats: UnsafeBufferPointer(optimizer.firstMoments[k].buffer))
            writer.add("optimizer.v.\(name)", shape: p.shape, floats: UnsafeBufferPointer(optimizer.secondMoments[k].buffer))
        }
        writer.add("data.order", shape: [state.order.count], int64s: state.order.map(Int64.init))
        try Files.writeAtomically(writer.serialize(), to: path)
    }

    /// Restores weights and optimiser state into `model` and `optimizer` (built from the run's
    /// configuration) and returns where training was. Every value is checked; a damaged or
    /// mismatched file is refused with a `CheckpointError`, leaving the model untouched.
    public static func loadTraining(_ path: String, into model: VariationalAutoencoder, optimizer: Adam, examples: Int) throws -> TrainingState {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let archive: SafeTensorsArchive
        do {
            archive = try SafeTensorsArchive(bytes: try Files.read(path))
        } catch let error as SafeTensorsError {
            throw fail(error.description)
        }
        let meta = archive.metadata
        guard meta["format"] == formatName + "-training" else { throw fail("not a swift-vae training checkpoint") }
        guard let json = meta["config"], let config = try? JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)), config == model.config else {
            throw fail("the checkpoint's model configuration differs from the run's config.json")
        }
        func integer(_ key: String, atLeast low: Int = 0) throws -> Int {
            guard let s = meta[key], let v = Int(s), v >= low else { throw fail("bad or missing '\(key)' in the header") }
            return v
        }
        func number(_ key: String) throws -> Double {
            guard let s = meta[key], let v = Double(s), v.isFinite else { throw fail("bad or missing '\(key)' in the header") }
            return v
        }
        func generator(_ key: String) throws -> [UInt64] {
            let words = (meta[key] ?? "").split(separator: ",").compactMap { UInt64($0) }
            guard RandomGenerator(state: words) != nil else { throw fail("bad or missing '\(key)' in the header") }
            return words
        }
        let order: [Int]
        do {
            order = try archive.int64s("data.order").map { Int($0) }
        } catch let error as SafeTensorsError {
            throw fail(error.description)
        }
        guard order.count == examples, Set(order).count == examples, order.allSatisfy({ $0 >= 0 && $0 < examples }) else {
            throw fail("the saved data order is not a permutation of the \(examples) training examples")
        }
        let state = TrainingState(
            epoch: try integer("epoch"), batchIndex: try integer("batch_index"), step: try integer("step"),
            noiseRNG: try generator("noise_rng"), dataRNG: try generator("data_rng"), order: order,
            partialLoss: LossBreakdown(
                reconstruction: try number("partial_reconstruction"), kl: try number("partial_kl"),
                objective: try number("partial_objective"), images: try integer("partial_images")),
            elapsed: try number("elapsed"), workers: try integer("workers", atLeast: 1))
        let adamStep = try integer("adam_step")

        // Read everything before changing anything.
        var values: [[Float]] = [], moments: [([Float], [Float])] = []
        for (name, p) in model.namedParameters {
            for tensor in [name, "optimizer.m.\(name)", "optimizer.v.\(name)"] {
                guard let info = archive.tensors[tensor] else { throw fail("tensor '\(tensor)' is missing") }
                guard info.dtype == .f32, info.shape == p.shape else {
                    throw fail("tensor '\(tensor)' is \(info.dtype.rawValue) \(info.shape), expected F32 \(p.shape)")
                }
            }
            values.append(try archive.floats(name))
            moments.append((try archive.floats("optimizer.m.\(name)"), try archive.floats("optimizer.v.\(name)")))
        }
        for (k, (_, p)) in model.namedParameters.enumerated() {
            values[k].withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: $0.count) }
            moments[k].0.withUnsafeBufferPointer { optimizer.firstMoments[k].data.update(from: $0.baseAddress!, count: $0.count) }
            moments[k].1.withUnsafeBufferPointer { optimizer.secondMoments[k].data.update(from: $0.baseAddress!, count: $0.count) }
        }
        optimizer.restore(stepCount: adamStep)
        return state
    }
}
