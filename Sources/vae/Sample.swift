import ArgumentParser
import Imaging
import VAE

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode images from z ~ N(0, I) and save them as a PNG grid (the mean image E[x|z] of each).")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run"))
    var runFolder: String

    @Option(help: "Number of images.")
    var count: Int = 64

    @Option(help: ArgumentHelp("PNG file to write.", valueName: "file.png"))
    var out: String

    @Option(help: "Seed for z.")
    var seed: UInt64 = 1

    func validate() throws {
        guard count >= 1 && count <= 10_000 else { throw ValidationError("--count must be between 1 and 10000") }
    }

    func run() throws {
        let (model, _) = try RunFolder(path: runFolder).loadModel()
        try PNG.write(Pictures.samples(model, count: count, seed: seed), to: out)
        print("wrote \(count) samples to \(out)")
    }
}

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reconstruct the first test images (x → μ(x) → E[x|z]) and save originals over reconstructions as a PNG.")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run"))
    var runFolder: String

    @Option(help: "Number of test images.")
    var count: Int = 8

    @Option(help: ArgumentHelp("PNG file to write.", valueName: "file.png"))
    var out: String

    func validate() throws {
        guard count >= 1 && count <= 10_000 else { throw ValidationError("--count must be between 1 and 10000") }
    }

    func run() throws {
        let (model, config) = try RunFolder(path: runFolder).loadModel()
        let testSet = try config.training.loadTestSet()
        try PNG.write(Pictures.reconstructions(model, testSet: testSet, count: min(count, testSet.count)), to: out)
        print("wrote \(min(count, testSet.count)) test images and their reconstructions to \(out)")
    }
}
