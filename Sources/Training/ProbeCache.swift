import Foundation
import Tensor
import VAE

/// The splits of the cores that `--threads auto` measured (``ParallelismProbe``), kept on disk
/// so that the next run of the same model on the same machine starts at once — and, since the
/// choice is read back rather than timed again, trains with the same split, so that the same
/// command gives the same numbers run after run.
///
/// An entry is named by a hash of everything the timings depend on: the CPU (its model and the
/// cores this process may use), the matrix library and the instruction set it runs, the build of
/// vae (the executable's path, size and modification time), the model's configuration, the batch
/// size, the objective, the optimiser, gradient clipping, the matrix precision, the candidates
/// and the probe's step counts. It holds each candidate's median seconds per step; the choice is
/// made from them again by ``ParallelismProbe/choice(_:)``. An entry stays until the cache is
/// cleared (`rm -r ~/.cache/swift-vae/probes`) or vae is rebuilt; `VAE_CACHE=off` probes every
/// time and stores nothing. A result is kept only when the probe had the machine to itself:
/// when other processes took more than ``busyLimit`` of its CPU time while the splits were
/// timed (``MachineUse``: parallel runs, a build, a virtual machine's neighbours), the split it
/// found suits that load, not the machine, and the next run probes again.
///
/// Where: the `probes/` folder of the cache (`CacheFolder`: `~/.cache/swift-vae/probes`,
/// `$XDG_CACHE_HOME/swift-vae/probes` or `$VAE_CACHE/probes`).
public struct ProbeCache: Sendable {
    /// The entries' folder.
    public let folder: CacheFolder

    /// The largest share of the machine's CPU time other processes may take during a probe for
    /// its result to be kept: `VAE_PROBE_BUSY_LIMIT` (a fraction), else 0.2.
    public let busyLimit: Double

    /// The cache `environment` names, or nil when it is off or no folder can be named.
    public init?(environment: [String: String]) {
        guard let folder = CacheFolder("probes", environment: environment) else { return nil }
        self.folder = folder
        busyLimit = environment["VAE_PROBE_BUSY_LIMIT"].flatMap(Double.init).flatMap { $0.isFinite ? $0 : nil } ?? 0.2
    }

    /// Why a probe during which other processes took `othersShare` of the machine is not kept,
    /// or nil when it is: more than ``busyLimit``, or a share that could not be measured (no
    /// `/proc/stat`, or a probe shorter than its clock ticks, 10 ms a CPU) unless the limit is 1
    /// (every probe kept, whatever the load).
    public func refusal(othersShare: Double?) -> String? {
        guard let othersShare else { return busyLimit >= 1 ? nil : "not kept: the machine's load could not be measured (/proc/stat)" }
        guard othersShare > busyLimit else { return nil }
        return "not kept: other work took \(Int((100 * othersShare).rounded()))% of the CPU time meanwhile (VAE_PROBE_BUSY_LIMIT \(busyLimit))"
    }

    /// The cache this process's environment names.
    public static var processDefault: ProbeCache? { ProbeCache(environment: ProcessInfo.processInfo.environment) }

    /// How many entries the cache keeps (each a few hundred bytes): one per model and batch
    /// size a user trains, per build of vae.
    public static let capacity = 64

    /// What the timings of a probe depend on, as the key's parts.
    struct Identity: Codable {
        var model: ModelConfig
        var batchSize: Int
        var objective: TrainingObjective
        var optimizer: OptimizerConfig
        var clipNorm: Float?
        var precision: String
        var candidates: [String]
        var steps: Int
        var warmup: Int
    }

    /// The entry's name for probing `candidates` on `steps` (+ `warmup`) steps of `config`'s
    /// model and objective with `precision` products, on this machine and build.
    public static func key(config: RunConfig, precision: MatrixPrecision, candidates: [Parallelism], steps: Int, warmup: Int) -> String {
        let identity = Identity(
            model: config.model, batchSize: config.training.batchSize, objective: config.training.trainingObjective,
            optimizer: config.training.optimizerConfig, clipNorm: config.training.clipNorm, precision: precision.rawValue,
            candidates: candidates.map(Self.name), steps: steps, warmup: warmup)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let run = (try? encoder.encode(identity)).map { String(decoding: $0, as: UTF8.self) } ?? "\(identity)"
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return CacheFolder.key([
            "probe 1", RunStatus.currentCPU, "\(Parallelism.availableCores) cores", GEMMLibrary.summary, CacheFolder.identity(ofFile: executable), run,
        ])
    }

    /// An entry: each candidate's seconds per step, the probe's wall time and its day.
    struct Entry: Codable {
        var candidates: [String]
        var secondsPerStep: [Double]
        var seconds: Double
        var probed: String
    }

    /// A candidate in an entry: "4x2" (workers x GEMM threads).
    static func name(_ p: Parallelism) -> String { "\(p.workers)x\(p.gemmThreads)" }

    /// The entry's file.
    public func path(_ key: String) -> String { folder.path(key + ".json") }

    /// The result stored under `key` for `candidates`, if there is one that times exactly these
    /// candidates with finite, positive times (anything else is passed over, and probed again).
    public func result(_ key: String, candidates: [Parallelism]) -> ParallelismProbe.Result? {
        guard let bytes = folder.read(key + ".json"), let entry = try? JSONDecoder().decode(Entry.self, from: Data(bytes)),
              entry.candidates == candidates.map(Self.name), entry.secondsPerStep.count == candidates.count,
              entry.secondsPerStep.allSatisfy({ $0.isFinite && $0 > 0 }), entry.seconds.isFinite, entry.seconds >= 0
        else { return nil }
        let trials = zip(candidates, entry.secondsPerStep).map { ParallelismProbe.Trial(parallelism: $0, secondsPerStep: $1) }
        return ParallelismProbe.Result(
            best: candidates[ParallelismProbe.choice(entry.secondsPerStep)], trials: trials, seconds: entry.seconds,
            reused: (entry.probed, folder.directory))
    }

    /// Stores `result` under `key`; false when the cache cannot be written or the result has no
    /// finite times (a candidate that failed every step).
    @discardableResult
    public func store(_ result: ParallelismProbe.Result, _ key: String) -> Bool {
        let times = result.trials.map(\.secondsPerStep)
        guard !times.isEmpty, times.allSatisfy({ $0.isFinite && $0 > 0 }) else { return false }
        let day = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        let entry = Entry(
            candidates: result.trials.map { Self.name($0.parallelism) }, secondsPerStep: times,
            seconds: result.seconds, probed: day)
        guard let bytes = try? JSONEncoder().encode(entry) else { return false }
        return folder.write([UInt8](bytes), key + ".json", keeping: Self.capacity)
    }
}
