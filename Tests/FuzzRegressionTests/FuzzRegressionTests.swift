import Foundation
import FuzzTargets
import Testing

/// The repository's Fuzz/ folder.
let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")

func inputs(_ kind: String, _ parser: String) -> [URL] {
    let dir = fuzzFolder.appendingPathComponent(kind).appendingPathComponent(parser)
    return ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
        .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
}

@Test(arguments: FuzzTargets.names)
func everySeedIsAccepted(parser: String) throws {
    let seeds = inputs("seeds", parser)
    #expect(!seeds.isEmpty, "no seeds for \(parser)")
    for url in seeds {
        #expect(FuzzTargets.run(parser, Array(try Data(contentsOf: url))), "\(parser) refused its seed \(url.lastPathComponent)")
    }
}

/// Every input the fuzzers kept (interesting ones, and any that once crashed a parser) must be
/// handled: accepted or refused with an error, never a crash. A crash here fails the run.
@Test(arguments: FuzzTargets.names)
func fuzzFindingsAreHandled(parser: String) throws {
    for url in inputs("regressions", parser) + inputs("crashes", parser) {
        FuzzTargets.run(parser, Array(try Data(contentsOf: url)))
    }
}

@Test func corruptedSeedsAreRefusedNotCrashed() throws {
    // Every prefix and a byte flip at every position of each seed: no crash; and the formats
    // whose header fixes the size (IDX, NPY, safetensors) refuse a truncated file. (libpng reads
    // a PNG cut after its image data, missing only the end marker: that image is complete; an
    // event file cut short keeps its whole records by design.)
    for parser in ["idx", "npy", "safetensors", "png", "tfevents"] {
        for url in inputs("seeds", parser) {
            let bytes = Array(try Data(contentsOf: url))
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 64)) {
                let accepted = FuzzTargets.run(parser, Array(bytes.prefix(cut)))
                if parser != "png" && (parser != "tfevents" || cut < 16) { #expect(!accepted, "\(parser) accepted \(url.lastPathComponent) cut at \(cut)") }
            }
            for i in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 64)) {
                var flipped = bytes
                flipped[i] ^= 0xFF
                FuzzTargets.run(parser, flipped)
            }
        }
    }
}
