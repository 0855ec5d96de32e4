import ArgumentParser
import Datasets
import Files
import Foundation
import Imaging
import Tensor
import Training
import VAE

/// Writes images [n, C, H, W] as a grid of `columns` tiles per row.
func writeGrid(_ tiles: Tensor, of run: TrainedRun, columns: Int, to path: String) throws {
    try PNG.write(Pictures.grid(tiles, columns: columns, shape: run.model.config.inputShape), to: path)
}

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode the path between the latent codes of two test images, as one row of pictures.",
        discussion: "The row shows test image --from, the decoded images along the path from μ(x_from) to μ(x_to), then test image --to. A conditional model decodes the whole path with the label of --from.")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: "Index of the first test image.") var from: Int
    @Option(help: "Index of the second test image.") var to: Int
    @Option(help: "Points on the path, both ends included.") var steps: Int = 10
    @Flag(help: "Follow the great circle (slerp) instead of the straight line.") var spherical = false
    @Option(help: ArgumentHelp("PNG to write (default RUN/interpolation.png).", valueName: "file.png")) var out: String?

    func validate() throws {
        guard steps >= 2 && steps <= 200 else { throw ValidationError("--steps must be between 2 and 200") }
    }

    func run() throws {
        let context = try TrainedRun(RunFolder(path: runFolder))
        let ends = try context.posteriorMeans([from, to])
        let codes = (0..<steps).map { k -> [Float] in
            let t = Float(k) / Float(steps - 1)
            return spherical ? LatentSpace.slerp(ends[0], ends[1], t) : LatentSpace.lerp(ends[0], ends[1], t)
        }
        let first = try context.testImages([from])
        let tiles = stack([first.images, context.decode(codes, label: first.labels?[0] ?? 0), try context.testImages([to]).images])
        let path = out ?? "\(runFolder)/interpolation.png"
        try writeGrid(tiles, of: context, columns: steps + 2, to: path)
        print("wrote \(path): test image \(from), \(steps) decoded points (\(spherical ? "spherical" : "linear")), test image \(to)")
    }
}

struct Manifold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "For a 2-D latent space: decode a grid of codes covering the prior (Kingma & Welling's figures).",
        discussion: """
            Grid point (i, j) decodes z = (Φ⁻¹(u_j), Φ⁻¹(u_i)) with u_k = (k + ½)/n, so the grid \
            covers the prior N(0, I) evenly in probability; z₁ grows to the right, z₂ upwards. \
            Train a model for it with `vae train --latent 2`.
            """)

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: "Images per side of the grid.") var grid: Int = 20
    @Option(help: "Conditional models: the class to decode (default 0).") var label: Int?
    @Option(help: ArgumentHelp("PNG to write (default RUN/manifold.png).", valueName: "file.png")) var out: String?

    func validate() throws {
        guard grid >= 2 && grid <= 100 else { throw ValidationError("--grid must be between 2 and 100") }
    }

    func run() throws {
        let context = try TrainedRun(RunFolder(path: runFolder))
        try context.checkLabel(label)
        guard context.model.latentDimension == 2 else {
            throw CLIError("manifold needs a 2-D latent space, and this model has \(context.model.latentDimension) dimensions (train one with --latent 2, or use `vae traverse`)")
        }
        let quantiles = (0..<grid).map { Float(LatentSpace.inverseNormalCDF((Double($0) + 0.5) / Double(grid))) }
        let codes = (0..<grid).flatMap { row in (0..<grid).map { column in [quantiles[column], quantiles[grid - 1 - row]] } }
        let path = out ?? "\(runFolder)/manifold.png"
        try writeGrid(context.decode(codes, label: label ?? 0), of: context, columns: grid, to: path)
        print("wrote \(path): \(grid)×\(grid) decoded grid, z from \(fixed(Double(quantiles[0]), 2)) to \(fixed(Double(quantiles[grid - 1]), 2))")
    }
}

struct Traverse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Vary one latent dimension at a time around a test image's code: one row per dimension.",
        discussion: "Row j decodes μ(x) with z_j replaced by evenly spaced values in [−range, range]; the first column is the test image itself.")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: "Index of the test image.") var image: Int = 0
    @Option(help: "Values of each dimension span [−range, range].") var range: Float = 3
    @Option(help: "Values per dimension.") var steps: Int = 11
    @Option(help: ArgumentHelp("PNG to write (default RUN/traverse.png).", valueName: "file.png")) var out: String?

    func validate() throws {
        guard steps >= 2 && steps <= 100 else { throw ValidationError("--steps must be between 2 and 100") }
        guard range.isFinite && range > 0 else { throw ValidationError("--range must be a positive number") }
    }

    func run() throws {
        let context = try TrainedRun(RunFolder(path: runFolder))
        let center = try context.posteriorMeans([image])[0]
        let d = context.model.latentDimension
        var rows: [Tensor] = []
        let original = try context.testImages([image])
        for j in 0..<d {
            let codes = (0..<steps).map { k -> [Float] in
                var z = center
                z[j] = -range + 2 * range * Float(k) / Float(steps - 1)
                return z
            }
            rows += [original.images, context.decode(codes, label: original.labels?[0] ?? 0)]
        }
        let path = out ?? "\(runFolder)/traverse.png"
        try writeGrid(stack(rows), of: context, columns: steps + 1, to: path)
        print("wrote \(path): \(d) dimensions × \(steps) values in [−\(range), \(range)] around test image \(image)")
    }
}

struct Scatter: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plot the test set's posterior means, coloured by label (the first two principal components when d > 2).")

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: "Plot only the first N test images.") var limit: Int?
    @Option(help: ArgumentHelp("PNG to write (default RUN/scatter.png).", valueName: "file.png")) var out: String?

    func validate() throws {
        if let limit, limit < 2 { throw ValidationError("--limit must be at least 2") }
    }

    func run() throws {
        let context = try TrainedRun(RunFolder(path: runFolder))
        let testSet = limit.map { context.testSet.prefix($0) } ?? context.testSet
        guard let labels = testSet.labels else { throw CLIError("the test set has no labels to colour by") }
        guard testSet.count >= 2 else { throw CLIError("a scatter plot needs at least 2 test images, and there is \(testSet.count)") }
        let d = context.model.latentDimension
        var means: [[Double]] = []
        var bar = ProgressBar()
        let start = monotonicSeconds()
        for batch in BatchLoader.evaluation(testSet, for: context.model).epoch() {
            let mu = context.model.posteriorMeans(batch.images, condition: batch.condition)
            for r in 0..<batch.count { means.append((0..<d).map { Double(mu[r * d + $0]) }) }
            bar.update(done: means.count, of: testSet.count, elapsed: monotonicSeconds() - start, text: "encoding \(means.count)/\(testSet.count) images")
        }
        bar.end()
        let plane = LatentSpace.plane(means)
        let points = zip(plane.xy, labels).map { ScatterPlot.Point(x: $0.x, y: $0.y, label: $1) }
        let axes = plane.axes
        let names = context.config.training.classNames
        let image = try ScatterPlot.render(
            points, labelNames: names, title: "Posterior means E[z|x] of \(points.count) test images (\(context.config.training.dataset), d = \(d))",
            xLabel: axes.0, yLabel: axes.1)
        let path = out ?? "\(runFolder)/scatter.png"
        try PNG.write(image, to: path)
        print("wrote \(path): \(points.count) test images\(d > 2 ? ", projected on the first two principal components" : "")")
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the test set's posterior parameters and labels as a NumPy file.",
        discussion: """
            The file holds a structured array with one record per test image and the fields \
            mu (float32, d), logvar (float32, d: log σ²) and label (int64); a model with two \
            stochastic layers adds mu2 and logvar2 (float32, d₂: q(z₂|z₁) at z₁ = mu):
              a = numpy.load("latents.npy"); a["mu"].shape == (10000, d)
            """)

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: ArgumentHelp("NPY file to write (default RUN/latents.npy).", valueName: "file.npy")) var out: String?

    func run() throws {
        let context = try TrainedRun(RunFolder(path: runFolder))
        let d = context.model.latentDimension
        var bar = ProgressBar()
        let start = monotonicSeconds()
        let p = context.posteriorParameters { done in
            bar.update(done: done, of: context.testSet.count, elapsed: monotonicSeconds() - start, text: "encoding \(done)/\(context.testSet.count) images")
        }
        bar.end()
        let labels = context.testSet.labels ?? [Int](repeating: -1, count: context.testSet.count)
        var fields: [NPY.Field] = [.float32(name: "mu", values: p.mu, perRow: d), .float32(name: "logvar", values: p.logVariance, perRow: d)]
        let d2 = context.model.config.upperLatentDimension
        if d2 > 0 { fields += [.float32(name: "mu2", values: p.upperMu, perRow: d2), .float32(name: "logvar2", values: p.upperLogVariance, perRow: d2)] }
        let bytes = NPY.structuredArray(rows: context.testSet.count, fields: fields + [.int64(name: "label", values: labels)])
        let path = out ?? "\(runFolder)/latents.npy"
        try Files.writeAtomically(bytes, to: path)
        print("wrote \(path): \(context.testSet.count) records of mu[\(d)], logvar[\(d)]\(d2 > 0 ? ", mu2[\(d2)], logvar2[\(d2)]" : ""), label")
    }
}
