import Tensor

extension Communicator {
    /// Every rank calls this once it has set up, whether that failed or not (so that no rank is
    /// left waiting in a collective call for one that gave up): the lowest rank whose set-up
    /// failed, or nil when none did. That rank reports its error for the whole job.
    public func lowestFailingRank(failed: Bool) -> Int? {
        guard size > 1 else { return failed ? rank : nil }
        var marks = [Double](repeating: 0, count: size)
        if failed { marks[rank] = 1 }
        marks.withUnsafeMutableBufferPointer { sum($0) }
        return marks.firstIndex { $0 > 0 }
    }
}
