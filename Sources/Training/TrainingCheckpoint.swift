import Files
import Foundation
import NN
import SafeTensors
import Tensor
import VAE

/// Where a run is, exactly enough to continue it bit for bit: the position in the data, the
/// generators, and what the schedule and early stopping have seen.
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
    /// Threads of each matrix product (more than 1 under `--parallel blas`), which the library
    /// may also let change the summation order.
    public var gemmThreads: Int
    /// Processes of the job (`mpirun -np`), which the summation order also depends on.
    public var ranks: Int
    /// Where the steps ran, "cpu" or "cuda:N" (the GPU's kernels round differently from the CPU's).
    public var device: String
    /// Model selection, the plateau schedule and early stopping.
    public var selection: SelectionState

    public init(epoch: Int, batchIndex: Int, step: Int, noiseRNG: [UInt64], dataRNG: [UInt64], order: [Int],
                partialLoss: LossBreakdown, elapsed: Double, workers: Int, gemmThreads: Int = 1, ranks: Int = 1, device: String = "cpu",
                selection: SelectionState = SelectionState()) {
        self.epoch = epoch
        self.batchIndex = batchIndex
        self.step = step
        self.noiseRNG = noiseRNG
        self.dataRNG = dataRNG
        self.order = order
        self.partialLoss = partialLoss
        self.elapsed = elapsed
        self.workers = workers
        self.gemmThreads = gemmThreads
        self.ranks = ranks
        self.device = device
        self.selection = selection
    }
}

/// What a run remembers of its validation figures between epochs.
public struct SelectionState: Equatable, Sendable {
    /// The best validation −ELBO so far and its epoch (from 1); nil before the first.
    public var bestValidation: Double?
    public var bestEpoch = 0
    /// Epochs since the best one (early stopping counts them).
    public var epochsWithoutImprovement = 0
    /// Learning-rate reductions the plateau schedule has made, and its own count of epochs
    /// without improvement since the last reduction.
    public var plateauReductions = 0
    public var plateauBadEpochs = 0

    public init() {}

    /// Records epoch `epoch`'s validation −ELBO; returns whether it is the best so far.
    public mutating func record(validation: Double, epoch: Int, plateauPatience: Int?) -> Bool {
        let improved = bestValidation.map { validation < $0 } ?? true
        if improved {
            bestValidation = validation
            bestEpoch = epoch
            epochsWithoutImprovement = 0
            plateauBadEpochs = 0
        } else {
            epochsWithoutImprovement += 1
            plateauBadEpochs += 1
            if let plateauPatience, plateauBadEpochs > plateauPatience {
                plateauReductions += 1
                plateauBadEpochs = 0
            }
        }
        return improved
    }
}

/// Training checkpoints: model weights, the optimiser's state (`optimizer.<slot>.<name>`, e.g.
/// Adam's `optimizer.m.encoder.0.weight`), the data order (`data.order`) and a
/// ``TrainingState`` in `__metadata__`, in one safetensors file written atomically.
public enum TrainingCheckpoint {
    public static let format = Checkpoint.formatName + "-training"

    public static func save(_ model: VariationalAutoencoder, optimizer: Optimizer, state: TrainingState, runID: String? = nil, to path: String) throws {
        let s = state.selection
        var meta = [
            "format": format,
            "config": Checkpoint.encodeConfig(model.config),
            "epoch": "\(state.epoch)", "batch_index": "\(state.batchIndex)", "step": "\(state.step)",
            "optimizer_step": "\(optimizer.stepCount)", "optimizer_slots": optimizer.stateSlots.map(\.name).joined(separator: ","),
            "workers": "\(state.workers)", "gemm_threads": "\(state.gemmThreads)", "ranks": "\(state.ranks)",
            "device": state.device,
            "noise_rng": state.noiseRNG.map(String.init).joined(separator: ","),
            "data_rng": state.dataRNG.map(String.init).joined(separator: ","),
            "partial_reconstruction": "\(state.partialLoss.reconstruction)", "partial_kl": "\(state.partialLoss.kl)",
            "partial_objective": "\(state.partialLoss.objective)", "partial_images": "\(state.partialLoss.images)",
            "elapsed": "\(state.elapsed)",
            "best_epoch": "\(s.bestEpoch)", "epochs_without_improvement": "\(s.epochsWithoutImprovement)",
            "plateau_reductions": "\(s.plateauReductions)", "plateau_bad_epochs": "\(s.plateauBadEpochs)",
        ]
        if let best = s.bestValidation { meta["best_validation"] = "\(best)" }
        if let runID { meta["run_id"] = runID }
        var writer = SafeTensorsWriter(metadata: meta)
        let slots = optimizer.stateSlots
        for (k, (name, p)) in model.namedParameters.enumerated() {
            writer.add(name, shape: p.shape, floats: UnsafeBufferPointer(p.value.buffer))
            for slot in slots {
                writer.add("optimizer.\(slot.name).\(name)", shape: p.shape, floats: UnsafeBufferPointer(slot.tensors[k].buffer))
            }
        }
        writer.add("data.order", shape: [state.order.count], int64s: state.order.map(Int64.init))
        try Files.writeAtomically(writer.serialize(), to: path)
    }

    /// Reads the checkpoint at `path` and checks, before anything is allocated, that it is a
    /// training checkpoint of this run (its run id, when `runID` is given) for exactly `model`,
    /// and that its data can back that model's size: so that an edited config.json cannot make a
    /// resume build a model the checkpoint does not hold.
    public static func open(_ path: String, model: ModelConfig, runID: String?) throws -> SafeTensorsArchive {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let archive: SafeTensorsArchive
        do {
            archive = try SafeTensorsArchive(bytes: try Files.read(path))
        } catch let error as SafeTensorsError {
            throw fail(error.description)
        }
        let meta = archive.metadata
        guard meta["format"] == format else { throw fail("not a swift-vae training checkpoint") }
        if let runID, meta["run_id"] != runID {
            throw fail("belongs to another run (run id \(meta["run_id"] ?? "none"), config.json says \(runID)); it cannot be resumed here")
        }
        guard let json = meta["config"], let saved = try? JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)), saved == model else {
            throw fail("the checkpoint's model configuration differs from the run's config.json")
        }
        let stored = archive.tensors.values.reduce(0) { $0 + $1.dataRange.count } / 4
        guard model.parameterCount <= Double(stored) else {
            throw fail("the model has \(Int(model.parameterCount)) parameters but the file holds \(stored) values")
        }
        return archive
    }

    /// Restores weights and optimiser state into `model` and `optimizer` (built from the run's
    /// configuration) and returns where training was. Every value is checked; a damaged or
    /// mismatched file is refused with a `CheckpointError`, leaving the model untouched; so is a
    /// checkpoint of another run (its run id differs from `runID`, the run's `config.json`'s).
    /// The cores the run in `archive` was trained with, as it recorded them: its batch workers,
    /// or its GEMM threads under `--parallel blas` (nil for a header without them).
    public static func recordedParallelism(_ archive: SafeTensorsArchive) -> Parallelism? {
        guard let workers = archive.metadata["workers"].flatMap(Int.init), workers >= 1, workers <= Limits.threads.upperBound else { return nil }
        let gemmThreads = archive.metadata["gemm_threads"].flatMap(Int.init) ?? 1
        guard gemmThreads >= 1, gemmThreads <= Limits.threads.upperBound else { return nil }
        return Parallelism(workers: workers, gemmThreads: gemmThreads)
    }

    public static func load(
        _ path: String, into model: VariationalAutoencoder, optimizer: Optimizer, examples: Int, runID: String? = nil
    ) throws -> TrainingState {
        try load(open(path, model: model.config, runID: runID), path: path, into: model, optimizer: optimizer, examples: examples)
    }

    /// The same, from a checkpoint already read and checked by ``open(_:model:runID:)``.
    public static func load(
        _ archive: SafeTensorsArchive, path: String, into model: VariationalAutoencoder, optimizer: Optimizer, examples: Int
    ) throws -> TrainingState {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let meta = archive.metadata
        func integer(_ key: String, atLeast low: Int = 0, default fallback: Int? = nil) throws -> Int {
            guard let s = meta[key] else {
                if let fallback { return fallback }
                throw fail("bad or missing '\(key)' in the header")
            }
            guard let v = Int(s), v >= low else { throw fail("bad or missing '\(key)' in the header") }
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
        var selection = SelectionState()
        if meta["best_validation"] != nil { selection.bestValidation = try number("best_validation") }
        selection.bestEpoch = try integer("best_epoch", default: 0)
        selection.epochsWithoutImprovement = try integer("epochs_without_improvement", default: 0)
        selection.plateauReductions = try integer("plateau_reductions", default: 0)
        selection.plateauBadEpochs = try integer("plateau_bad_epochs", default: 0)
        let state = TrainingState(
            epoch: try integer("epoch"), batchIndex: try integer("batch_index"), step: try integer("step"),
            noiseRNG: try generator("noise_rng"), dataRNG: try generator("data_rng"), order: order,
            partialLoss: LossBreakdown(
                reconstruction: try number("partial_reconstruction"), kl: try number("partial_kl"),
                objective: try number("partial_objective"), images: try integer("partial_images")),
            elapsed: try number("elapsed"), workers: try integer("workers", atLeast: 1),
            gemmThreads: try integer("gemm_threads", atLeast: 1, default: 1), ranks: try integer("ranks", atLeast: 1, default: 1),
            device: meta["device"] ?? "cpu", selection: selection)
        // Checkpoints from before the optimiser protocol name Adam's step `adam_step`.
        let optimizerStep = try meta["optimizer_step"] != nil ? integer("optimizer_step") : integer("adam_step")
        let slots = optimizer.stateSlots
        let savedSlots = meta["optimizer_slots"].map { $0.split(separator: ",").map(String.init) } ?? ["m", "v"]
        guard savedSlots == slots.map(\.name) else {
            throw fail("the checkpoint holds optimiser state [\(savedSlots.joined(separator: ", "))], the run's optimiser keeps [\(slots.map(\.name).joined(separator: ", "))]")
        }

        // Read everything before changing anything.
        var values: [[Float]] = [], slotValues: [[[Float]]] = []
        for (name, p) in model.namedParameters {
            let names = [name] + slots.map { "optimizer.\($0.name).\(name)" }
            for tensor in names {
                guard let info = archive.tensors[tensor] else { throw fail("tensor '\(tensor)' is missing") }
                guard info.dtype == .f32, info.shape == p.shape else {
                    throw fail("tensor '\(tensor)' is \(info.dtype.rawValue) \(info.shape), expected F32 \(p.shape)")
                }
            }
            values.append(try archive.floats(name))
            slotValues.append(try slots.map { try archive.floats("optimizer.\($0.name).\(name)") })
        }
        for (k, (_, p)) in model.namedParameters.enumerated() {
            values[k].withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: $0.count) }
            for (j, slot) in slots.enumerated() {
                slotValues[k][j].withUnsafeBufferPointer { slot.tensors[k].data.update(from: $0.baseAddress!, count: $0.count) }
            }
        }
        optimizer.stepCount = optimizerStep
        return state
    }
}
