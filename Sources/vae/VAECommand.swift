import ArgumentParser
import Foundation
import Tensor
import Training

@main
struct VAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Train Variational Autoencoders on images (on the CPU or an NVIDIA GPU), evaluate them, and draw what they learned.",
        discussion: """
            A run folder (written by `vae train --out RUN`) holds everything about one model:
            model.safetensors (weights + configuration), config.json, metrics.csv and pictures. \
            The other commands take that folder.

            Losses are in nats per image: −ELBO = reconstruction (−log p(x|z)) + KL(q(z|x) ‖ p(z)), \
            summed over pixels and latent dimensions, averaged over images.
            """,
        version: VersionInfo.line,
        subcommands: [Train.self, Evaluate.self, Sample.self, Reconstruct.self, Interpolate.self, Manifold.self, Traverse.self, Scatter.self, Encode.self, Score.self, Report.self, Bench.self, Devices.self]
    )

    static func main() {
        StopSignals.exitOnSignals(interruptLine: "vae: stopped by SIGINT", terminateLine: "vae: stopped by SIGTERM")  // 130/143, not a signal death
        if isatty(STDOUT_FILENO) == 0 { setvbuf(stdout, nil, _IOLBF, 0) }  // a log file gets each line as it is printed
        if let problem = GEMMLibrary.environmentError { exit(withError: CLIError(problem)) }
        KernelCheck.restartWithWidestKernel()
        Job.silenceOtherRanks()
        do {
            let arguments = Array(CommandLine.arguments.dropFirst())
            main(joiningNegativeValues(try Preset.expand(arguments, dropping: arguments.first == "bench" ? Bench.presetFlagsItLacks : [])))
        } catch {
            exit(withError: ValidationError("\(error)"))
        }
    }

    /// `--epochs -1` as `--epochs=-1`: a negative number after an option is its value (the
    /// parser would take it for a flag and say the value is missing), so that the validator
    /// sees it and names the real problem.
    static func joiningNegativeValues(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { return out + arguments[i...] }
            if a.hasPrefix("--"), !a.contains("="), i + 1 < arguments.count, Double(arguments[i + 1]) != nil, arguments[i + 1].hasPrefix("-") {
                out.append(a + "=" + arguments[i + 1])
                i += 2
            } else {
                out.append(a)
                i += 1
            }
        }
        return out
    }
}

/// `vae --version`: the release, the commit it was built from, and the matrix library this
/// machine runs.
enum VersionInfo {
    static let version = "0.9.0"

    static var line: String {
        "vae \(version) (commit \(buildCommit)); FP32 matrix products: \(GEMMLibrary.summary); built with Swift \(swiftVersion)"
    }

    static var swiftVersion: String {
        #if compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2)
        "6.2"
        #else
        "6.x"
        #endif
    }
}
