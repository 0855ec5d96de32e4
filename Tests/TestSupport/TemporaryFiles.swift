import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The tests' scratch folders: all of one test process's under one root,
/// `$TMPDIR/swift-vae-tests.<pid>/`, removed when the process exits — and, at the first folder a
/// process asks for, the roots of test processes that are no longer running (a crash, a kill)
/// together with the flat `swift-vae-tests-*` folders older versions of these tests left behind.
/// `VAE_KEEP_TEST_FILES=1` keeps the root (to run `vae` by hand on a test's emulated GPU, say).
public enum TemporaryFiles {
    public static let prefix = "swift-vae-tests"
    static let keep = ProcessInfo.processInfo.environment["VAE_KEEP_TEST_FILES"] == "1"

    /// This process's root, made (and its predecessors swept) on first use.
    public static let root: String = {
        let base = NSTemporaryDirectory()
        let fm = FileManager.default
        sweep(base)
        let path = base + "\(prefix).\(getpid())"
        try? fm.removeItem(atPath: path)
        try! fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        if !keep { atexit { TemporaryFiles.removeRoot() } }
        return path
    }()

    /// Removes from the folder `base` (ending in "/") the roots of test processes no longer
    /// running and the flat `swift-vae-tests-*` folders of older versions; nothing else.
    public static func sweep(_ base: String) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix(prefix) {
            if name.hasPrefix(prefix + "-") {
                try? fm.removeItem(atPath: base + name)
            } else if name.hasPrefix(prefix + "."), let pid = Int32(name.dropFirst(prefix.count + 1)), !isRunning(pid) {
                try? fm.removeItem(atPath: base + name)
            }
        }
    }

    /// Whether a process with this id exists (kill with signal 0 checks without sending one).
    static func isRunning(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    static func removeRoot() {
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// A fresh empty folder for one test, named after it, under this test process's root (see
/// ``TemporaryFiles``): gone when the tests end unless `VAE_KEEP_TEST_FILES=1`.
public func temporaryDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let path = TemporaryFiles.root + "/\(safe)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
