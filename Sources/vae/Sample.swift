import ArgumentParser
import Imaging
import Training
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

    @Option(help: "Conditional models: the class to generate.")
    var label: Int?

    @Option(help: ArgumentHelp("Conditional models: a grid with one row per class and this many samples in each.", valueName: "n"))
    var perClass: Int?

    @OptionGroup var precision: PrecisionOptions

    func validate() throws {
        guard count >= 1 && count <= 10_000 else { throw ValidationError("--count must be between 1 and 10000") }
        if let perClass, perClass < 1 || perClass > 100 { throw ValidationError("--per-class must be between 1 and 100") }
        if label != nil && perClass != nil { throw ValidationError("choose --label or --per-class, not both") }
    }

    func run() throws {
        let (model, config) = try RunFolder(path: runFolder).loadModel()
        model.precision = precision.resolved()
        let classes = model.config.conditionClasses
        try model.config.checkLabel(label ?? perClass.map { _ in 0 }, run: runFolder)
        if let perClass {
            try PNG.write(Pictures.samplesPerClass(model, perClass: perClass, seed: seed), to: out)
            let names = config.training.classNames
            print("wrote \(out): \(classes) rows of \(perClass) samples, one row per class (\(names.prefix(classes).joined(separator: ", ")))")
            return
        }
        try PNG.write(Pictures.samples(model, count: count, seed: seed, label: label ?? 0), to: out)
        print("wrote \(count) samples\(classes > 0 ? " of class \(label ?? 0)" : "") to \(out)")
    }
}

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reconstruct the first test images (x → μ(x) → E[x|z]) and save originals over reconstructions as a PNG.")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run"))
    var runFolder: String

    @Option(help: "Number of test images.")
    var count: Int = 8

    @OptionGroup var precision: PrecisionOptions

    @Option(help: ArgumentHelp("PNG file to write.", valueName: "file.png"))
    var out: String

    func validate() throws {
        guard count >= 1 && count <= 10_000 else { throw ValidationError("--count must be between 1 and 10000") }
    }

    func run() throws {
        let (model, config) = try RunFolder(path: runFolder).loadModel()
        model.precision = precision.resolved()
        let testSet = try config.training.loadTestSet(for: config.model)
        try PNG.write(Pictures.reconstructions(model, testSet: testSet, count: min(count, testSet.count)), to: out)
        print("wrote \(min(count, testSet.count)) test images and their reconstructions to \(out)")
    }
}
