import CCUDA

/// The project's kernels as a module of the current context: NVRTC's PTX — from the kernel cache
/// when an earlier run compiled the same source with the same NVRTC for the same architecture,
/// else compiled now (and stored there) — loaded by the driver. Should the driver be older than
/// NVRTC and refuse the PTX (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), the kernels are loaded as the
/// GPU's machine code, which NVRTC compiles for it (cached likewise) and a driver of the same
/// major version loads.
struct KernelModule {
    /// The loaded module (CUmodule).
    let module: UnsafeMutableRawPointer?
    /// The PTX the kernels compiled to (their parameters are read from it).
    let ptx: String
    /// The cache entry the PTX was read from, or nil when NVRTC compiled it in this process.
    let cachedPTX: String?
    /// Whether the module is the GPU's machine code rather than the PTX.
    let machineCode: Bool
    /// Seconds NVRTC took in this process (0 when everything came from the cache).
    let compileSeconds: Double

    /// cuModuleLoadData's status for PTX from a newer toolchain than the driver's
    /// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
    static let unsupportedPTXVersion: Int32 = 222

    /// The kernels for a GPU of compute capability `major`.`minor`, compiled by `nvrtc` or read
    /// from `cache`.
    init(computeCapability major: Int, _ minor: Int, nvrtc: NVRTC, cache: KernelCache?) throws {
        let options = CUDAKernels.options(computeCapability: major, minor)
        let key = KernelCache.key(source: CUDAKernels.source, options: options, compiler: nvrtc.path)
        // The PTX: the cache's if it declares every kernel, else NVRTC's.
        var compileSeconds = 0.0
        func compilePTX() throws -> String {
            let start = monotonicSeconds()
            defer { compileSeconds += monotonicSeconds() - start }
            let compiled = try nvrtc.compile(CUDAKernels.source, name: "Kernels.cu", options: options)
            cache?.store(compiled, key)
            return compiled
        }
        var text = cache?.ptx(key).flatMap { Self.declaresEveryKernel($0) ? $0 : nil }
        var fromCache = text != nil
        if text == nil { text = try compilePTX() }
        var loaded = Self.load(Array(text!.utf8) + [0])
        if case .failure(let status, _) = loaded, fromCache && status != Self.unsupportedPTXVersion {
            // A cached entry the driver refuses: compiled again, and replaced.
            text = try compilePTX()
            fromCache = false
            loaded = Self.load(Array(text!.utf8) + [0])
        }
        var machineCode = false
        if case .failure(let status, let error) = loaded, status == Self.unsupportedPTXVersion, nvrtc.makesMachineCode {
            let binaryOptions = CUDAKernels.options(computeCapability: major, minor, machineCode: true)
            let binaryKey = KernelCache.key(source: CUDAKernels.source, options: binaryOptions, compiler: nvrtc.path)
            var binary = cache?.entry(binaryKey, .cubin)
            if binary == nil {
                let start = monotonicSeconds()
                defer { compileSeconds += monotonicSeconds() - start }
                do {
                    binary = try nvrtc.compileMachineCode(CUDAKernels.source, name: "Kernels.cu", options: binaryOptions)
                } catch {
                    throw CUDAError("\(error) (\(nvrtc.path)'s PTX is newer than this driver takes)")
                }
                cache?.store(binary!, binaryKey, .cubin)
            }
            loaded = Self.load(binary!)
            if case .failure(_, let binaryError) = loaded { throw CUDAError("\(error); its machine code: \(binaryError)") }
            machineCode = true
        }
        switch loaded {
        case .success(let loadedModule): module = loadedModule
        case .failure(_, let error): throw error
        }
        ptx = text!
        cachedPTX = fromCache ? cache?.path(key) : nil
        self.machineCode = machineCode
        self.compileSeconds = compileSeconds
    }

    /// Whether `ptx` declares every kernel of the source.
    private static func declaresEveryKernel(_ ptx: String) -> Bool {
        let declared = CUDAKernels.parameters(inPTX: ptx)
        return CUDAKernels.names.allSatisfy { declared[$0] != nil }
    }

    /// A module loaded, or the driver's status and error.
    private enum Loaded {
        case success(UnsafeMutableRawPointer?)
        case failure(Int32, CUDAError)
    }

    /// Loads `image` (PTX text with its NUL, or a CUBIN) as a module of the current context.
    private static func load(_ image: [UInt8]) -> Loaded {
        var module: UnsafeMutableRawPointer?
        var status: Int32 = 0
        do {
            try image.withUnsafeBytes { bytes in
                try cudaCall { message, capacity in
                    status = vae_cuda_load_module(bytes.baseAddress, &module, message, capacity)
                    return status
                }
            }
            return .success(module)
        } catch {
            return .failure(status, error as? CUDAError ?? CUDAError("\(error)"))
        }
    }
}
