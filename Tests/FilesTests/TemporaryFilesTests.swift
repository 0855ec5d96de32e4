import Foundation
import Testing
import TestSupport

/// The tests' scratch folders must not pile up: a test process's root is named after its id, and
/// the sweep removes dead processes' roots and older flat folders but nothing that is live or not
/// the tests'.
@Test func theSweepRemovesOnlyDeadTestProcessesFoldersAndOldFlatOnes() throws {
    let base = temporaryDirectory() + "/"
    let fm = FileManager.default
    let prefix = TemporaryFiles.prefix
    let dead = "\(prefix).2147483000"  // above Linux's pid_max (2^22): no such process
    let live = "\(prefix).\(ProcessInfo.processInfo.processIdentifier)"
    let parent = "\(prefix).1"  // init: always running
    let old = "\(prefix)-someTest-0A1B2C3D"
    let others = ["\(prefix).notapid", "other-folder", "swift-vae-mount-probe-7"]
    for name in [dead, live, parent, old] + others {
        try fm.createDirectory(atPath: base + name + "/inner", withIntermediateDirectories: true)
    }
    TemporaryFiles.sweep(base)
    let left = Set(try fm.contentsOfDirectory(atPath: base))
    #expect(left == Set([live, parent] + others))
    // This process's own root holds the test's folder, named after the test.
    #expect(base.hasPrefix(TemporaryFiles.root + "/theSweepRemovesOnlyDeadTestProcessesFoldersAndOldFlatOnes"))
    #expect(TemporaryFiles.root.hasSuffix("/\(prefix).\(getpid())"))
}
