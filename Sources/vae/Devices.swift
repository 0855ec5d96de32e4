import ArgumentParser
import Foundation
import Tensor
import Training
import VAE

/// `vae devices`: what this machine can compute on.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices vae finds: this machine's CPU and the NVIDIA GPUs the CUDA driver reports.",
        discussion: """
            The CUDA driver (libcuda.so.1), NVRTC, cuBLAS and cuDNN are loaded at run time, only \
            when a command asks for a GPU: vae needs nothing of CUDA to build or to run on the CPU. \
            Without a driver the GPU line says what is missing. train, eval, score and bench run on \
            a GPU with --device cuda[:N]. The project's CUDA kernels are compiled by NVRTC on first \
            use and their PTX kept in the kernel cache (under VAE_CACHE: a folder, or off), as the \
            split of the cores --threads auto measures is kept in the probe cache. \
            --check-kernels runs each kernel on the GPU on a training step's shapes and compares it \
            with its CPU twin, and GPU training steps, importance sampling and evaluation with the CPU's.
            """)

    @Option(help: ArgumentHelp("Run every CUDA kernel on this GPU against its CPU twin and print the table (exit 1 if one differs by more than its tolerance).", valueName: "cuda:N"))
    var checkKernels: String?

    func run() throws {
        if let device = checkKernels { return try check(device) }
        print("cpu: \(RunStatus.currentMachine); FP32 matrix products: \(GEMMLibrary.summary)")
        print("  probe cache (--threads auto): " + (ProbeCache.processDefault.map { $0.folder.directory } ?? "off (VAE_CACHE)"))
        do {
            let gpus = try CUDA.devices()
            let driver = CUDA.driverVersion.map { "CUDA driver \($0)" } ?? "CUDA driver"
            if gpus.isEmpty { print("cuda: the \(driver) sees no GPU") }
            for gpu in gpus { print("cuda:\(gpu.ordinal): \(gpu.summary) (\(driver))") }
        } catch {
            print("cuda: none — \(error)")
        }
        for library in CUDA.libraries(environment: ProcessInfo.processInfo.environment) { print("  " + library.summary) }
        print("  kernel cache: " + (KernelCache.processDefault.map { $0.directory } ?? "off (VAE_CACHE)"))
    }

    /// `--check-kernels cuda:N`.
    private func check(_ device: String) throws {
        guard device == "cuda" || device.hasPrefix("cuda:"), let ordinal = device == "cuda" ? 0 : Int(device.dropFirst(5)), ordinal >= 0 else {
            throw CUDAError("--check-kernels takes cuda or cuda:N, not \(device)")
        }
        _ = try CUDA.device(ordinal, for: "--check-kernels")  // the driver and the GPU before NVRTC
        let libraries = CUDA.libraries(environment: ProcessInfo.processInfo.environment)
        guard let nvrtcPath = libraries.first(where: { $0.name == "nvrtc" })?.path else {
            throw CUDAError("--check-kernels needs NVRTC: \(libraries.first { $0.name == "nvrtc" }?.summary ?? "nvrtc: not found")")
        }
        let context = try CUDAContext(ordinal: ordinal, nvrtc: try NVRTC(path: nvrtcPath))
        let compiled = context.compileSeconds > 0 ? String(format: " in %.2f s", context.compileSeconds) : ""
        print("cuda:\(ordinal): \(context.device.summary); kernels compiled by \(nvrtcPath)\(compiled)" + (context.cachedPTX.map { " (PTX from the cache: \($0))" } ?? "")
            + (context.machineCode ? "; loaded as machine code for this GPU (the driver is older than NVRTC and refuses its PTX)" : ""))
        let cublas = try libraries.first(where: { $0.name == "cublas" })?.path.map { try CUBLAS(path: $0) }
        cublas?.lt = ComputeDevice.cuBLASLt(libraries, environment: ProcessInfo.processInfo.environment)
        if cublas == nil { print("(cuBLAS not found: the training steps and importance sampling are not checked)") }
        let (cudnn, note) = ComputeDevice.cuDNN(libraries, environment: ProcessInfo.processInfo.environment)
        if cublas != nil { print(cudnn.map { "convolutions: cuDNN \($0.version) (\($0.path))" } ?? "convolutions: patch matrices (\(note))") }
        let rows = try GPUKernelCheck.all(context, cublas: cublas, cudnn: cudnn)
        print("| kernel | CPU twin | elements | largest relative difference | tolerance | |")
        print("|---|---|---|---|---|---|")
        for row in rows {
            print("| \(row.kernel) | \(row.twin) | \(row.elements) | \(String(format: "%.2e", row.largestError)) | \(String(format: "%.0e", row.tolerance)) | \(row.passed ? "ok" : "DIFFERS") |")
        }
        let failed = rows.filter { !$0.passed }
        print(failed.isEmpty ? "all \(rows.count) kernel checks agree with the CPU" : "\(failed.count) of \(rows.count) kernel checks differ from the CPU")
        if !failed.isEmpty { throw ExitCode(1) }
    }
}
