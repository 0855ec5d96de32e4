import Foundation
import Imaging
import Testing
import TestSupport

/// The project's root, from this file's path (Tests/ExampleTests/ExampleTests.swift).
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The README's "Using the library" program is the example target's source, character for character.
@Test func readmeShowsTheExampleVerbatim() throws {
    let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
    let source = try String(contentsOfFile: root + "/Examples/LibraryTour/main.swift", encoding: .utf8)
    #expect(readme.contains("```swift\n" + source + "```\n"), "README.md must show Examples/LibraryTour/main.swift verbatim in a ```swift block")
}

/// The example builds (it is a target of the package) and runs: it trains, evaluates, writes a
/// sample grid and loads the run back.
@Test func libraryExampleRuns() throws {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var binary = "library-tour"
    for _ in 0..<3 {
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("library-tour").path) {
            binary = dir.appendingPathComponent("library-tour").path
            break
        }
        dir = dir.deletingLastPathComponent()
    }
    let folder = temporaryDirectory() + "/tour"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = [folder]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(text)")
    let lines = text.split(separator: "\n").map(String.init)
    #expect(lines.count == 4, "\(text)")
    #expect(lines.first?.hasPrefix("epoch 1: train −ELBO ") == true)
    #expect(lines.dropFirst().first == "finished(epochs: 1)")
    // The figures are plausible for one epoch of the classic model, and log p(x) ≥ ELBO.
    let numbers = lines[2].split(whereSeparator: { $0 == " " || $0 == "," }).compactMap { Double($0) }
    #expect(numbers.count == 3, "\(lines[2])")
    if numbers.count == 3 {
        #expect(numbers[0] > 230 && numbers[0] < 290)
        #expect(numbers[1] >= -numbers[0] - 3 * numbers[2] && numbers[1] < -200)
    }
    #expect(lines.last?.hasPrefix("reloaded MLP VAE 784-400-20: test −ELBO \(String(format: "%.2f", numbers.first ?? 0))") == true, "\(text)")
    let samples = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: folder + "/tour-samples.png"))))
    #expect(samples.width == 8 * 29 + 1 && samples.height == 8 * 29 + 1)
}
