import ArgumentParser
import Foundation
import Tensor
import Training

/// `vae devices`: what this machine can compute on.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices vae finds: this machine's CPU and the NVIDIA GPUs the CUDA driver reports.",
        discussion: """
            The CUDA driver (libcuda.so.1) is loaded at run time, only by this command: vae needs \
            nothing of CUDA to build or to run on the CPU. Without a driver the GPU line says what \
            is missing. Training and evaluation run on the CPU; the GPU backend is being built.
            """)

    func run() throws {
        print("cpu: \(RunStatus.currentMachine); FP32 matrix products: \(GEMMLibrary.summary)")
        do {
            let gpus = try CUDA.devices()
            let driver = CUDA.driverVersion.map { "CUDA driver \($0)" } ?? "CUDA driver"
            if gpus.isEmpty { print("cuda: the \(driver) sees no GPU") }
            for gpu in gpus { print("cuda:\(gpu.ordinal): \(gpu.summary) (\(driver))") }
        } catch {
            print("cuda: none — \(error)")
        }
        for library in CUDA.libraries(environment: ProcessInfo.processInfo.environment) { print("  " + library.summary) }
    }
}
