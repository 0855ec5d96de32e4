#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// How busy the machine is, from two readings: the CPU time every process has spent (the
/// `cpu` line of `/proc/stat`, the hypervisor's steal time included — a virtual machine's
/// neighbours) and this process's own (`getrusage`). Between two readings, what the others
/// spent over the machine's capacity says whether a measurement had the cores to itself: a
/// split of the cores timed while other work ran is the split for that load, not the machine's.
public struct MachineUse: Sendable, Equatable {
    /// CPU seconds every process spent (summed over the CPUs), and the machine's seconds in all
    /// (busy and idle, summed over the CPUs), since boot.
    public var busy: Double, total: Double
    /// CPU seconds this process spent, its threads' user and system time.
    public var own: Double

    public init(busy: Double, total: Double, own: Double) {
        self.busy = busy
        self.total = total
        self.own = own
    }

    /// Now, or nil where `/proc/stat` cannot be read.
    public static func now() -> MachineUse? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }),
              let (busy, total) = times(cpuLine: String(line))
        else { return nil }
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let own = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6
        let tick = Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return MachineUse(busy: busy / tick, total: total / tick, own: own)
    }

    /// Busy and total clock ticks from `/proc/stat`'s `cpu` line ("cpu user nice system idle
    /// iowait irq softirq steal guest guest_nice"; guest time is counted in user time already):
    /// busy = user + nice + system + irq + softirq + steal, total = busy + idle + iowait.
    public static func times(cpuLine: String) -> (busy: Double, total: Double)? {
        let fields = cpuLine.split(separator: " ").dropFirst().map { Double($0) }
        guard fields.count >= 8, fields.prefix(8).allSatisfy({ $0 != nil }) else { return nil }
        let f = fields.prefix(8).map { $0! }
        let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
        return (busy, busy + f[3] + f[4])
    }

    /// The share of the machine's capacity since `start` that other processes took (0 when only
    /// this one ran, 1 when the others took every core), or nil when no time passed.
    public func othersShare(since start: MachineUse) -> Double? {
        let total = self.total - start.total
        guard total > 0 else { return nil }
        let others = (busy - start.busy) - (own - start.own)
        return min(max(others / total, 0), 1)
    }
}
