import NN
import Tensor

extension Communicator {
    /// Every rank calls this once it has set up, whether that failed or not (so that no rank is
    /// left waiting in a collective call for one that gave up): the lowest rank whose set-up
    /// failed, or nil when none did. That rank reports its error for the whole job.
    public func lowestFailingRank(failed: Bool) -> Int? {
        gather(failed ? 1 : 0).firstIndex { $0 != 0 }
    }

    /// Every rank's `value`, on every rank (in rank order). Sent as 16-bit pieces in a sum of
    /// doubles, each rank filling only its own places, so the values arrive exactly.
    public func gather(_ value: UInt64) -> [UInt64] {
        guard size > 1 else { return [value] }
        var pieces = [Double](repeating: 0, count: 4 * size)
        for k in 0..<4 { pieces[4 * rank + k] = Double((value >> (16 * UInt64(k))) & 0xFFFF) }
        pieces.withUnsafeMutableBufferPointer { sum($0) }
        return (0..<size).map { r in (0..<4).reduce(UInt64(0)) { $0 | UInt64(pieces[4 * r + $1]) << (16 * UInt64($1)) } }
    }
}

/// Checks that every rank of a job holds the same weights: once training has started (after
/// rank 0's weights were broadcast) and after every step, each rank hashes the bytes of all of
/// its parameters and the ranks compare their hashes. Costs one pass over the weights and one
/// small sum per step: a test and debugging aid (`vae train --check-replicas`).
public final class ReplicaCheck: TrainingObserver {
    /// Comparisons made.
    public private(set) var checks = 0
    /// The first optimiser step (0: after the broadcast) at which the ranks' hashes differed,
    /// with every rank's hash.
    public private(set) var firstMismatch: (step: Int, hashes: [UInt64])?

    public init() {}

    public func runStarted(_ run: TrainingRun, at state: TrainingState) { check(run, step: state.step) }
    public func stepDone(_ run: TrainingRun, _ progress: StepReport) { check(run, step: progress.globalStep) }

    private func check(_ run: TrainingRun, step: Int) {
        let hashes = run.communicator.gather(Self.hash(run.model.parameters))
        checks += 1
        if firstMismatch == nil, hashes.contains(where: { $0 != hashes[0] }) { firstMismatch = (step, hashes) }
    }

    /// FNV-1a over the 32-bit words of every parameter's values, in order.
    public static func hash(_ parameters: [Parameter]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for p in parameters {
            p.value.data.withMemoryRebound(to: UInt32.self, capacity: p.value.count) { words in
                for i in 0..<p.value.count { h = (h ^ UInt64(words[i])) &* 0x0000_0100_0000_01B3 }
            }
        }
        return h
    }
}
