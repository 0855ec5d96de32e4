#if canImport(Glibc)
import Glibc
#endif
import Tensor
import VAE

/// Where a run's training steps are computed: the CPU, or NVIDIA GPU N (`--device cuda:N`).
/// Not part of a run's configuration: a run trained on one resumes on the other.
public enum ComputeDevice: Equatable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    /// "cpu", "cuda" (GPU 0) or "cuda:N"; nil for anything else.
    public init?(_ text: String) {
        if text == "cpu" {
            self = .cpu
        } else if text == "cuda" {
            self = .cuda(0)
        } else if text.hasPrefix("cuda:"), let n = Int(text.dropFirst(5)), n >= 0 {
            self = .cuda(n)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .cpu: "cpu"
        case .cuda(let n): "cuda:\(n)"
        }
    }

    /// cuBLASLt where it is found and loads, unless `VAE_CUDA_LT=0` (nil: the products are
    /// cuBLAS's and the biases are added by a kernel of their own).
    public static func cuBLASLt(_ libraries: [CUDALibrary], environment: [String: String]) -> CUBLASLt? {
        guard environment["VAE_CUDA_LT"] != "0", let path = libraries.first(where: { $0.name == "cublasLt" })?.path else { return nil }
        return try? CUBLASLt(path: path)
    }

    /// cuDNN where it is found and loads, unless `VAE_CUDA_CUDNN=0`: the library, or why not
    /// (nil: the convolutions are products with their patch matrices).
    public static func cuDNN(_ libraries: [CUDALibrary], environment: [String: String]) -> (CUDNN?, note: String) {
        if environment["VAE_CUDA_CUDNN"] == "0" { return (nil, "VAE_CUDA_CUDNN=0") }
        guard let path = libraries.first(where: { $0.name == "cudnn" })?.path else { return (nil, "no cuDNN 9 found") }
        do {
            return (try CUDNN(path: path), "")
        } catch {
            return (nil, "\(error)")
        }
    }

    /// The GPU's training step for `model`: the driver, NVRTC and cuBLAS found and loaded, the
    /// kernels compiled for the GPU, its products in `precision` (bf16 runs on the GPU's tensor
    /// cores whatever the host CPU can do). Throws one line naming what is missing.
    public func makeStep(
        for model: VariationalAutoencoder, precision: MatrixPrecision = .fp32, environment: [String: String]
    ) throws -> (CUDAStep, summary: String) {
        guard case .cuda(let ordinal) = self else { throw CUDAError("the CPU has no GPU step") }
        _ = try CUDA.device(ordinal, for: "--device")  // the driver and the GPU before the libraries
        let libraries = CUDA.libraries(environment: environment)
        func path(_ name: String) throws -> String {
            guard let library = libraries.first(where: { $0.name == name }), let path = library.path else {
                throw CUDAError("--device \(self) needs \(libraries.first { $0.name == name }?.summary ?? name + ": not found")")
            }
            return path
        }
        let (nvrtcPath, cublasPath) = (try path("nvrtc"), try path("cublas"))
        do {
            let context = try CUDAContext(ordinal: ordinal, nvrtc: try NVRTC(path: nvrtcPath))
            let cublas = try CUBLAS(path: cublasPath)
            cublas.lt = Self.cuBLASLt(libraries, environment: environment)
            let step = try CUDAStep(model: model, context: context, cublas: cublas)
            step.precision = precision
            var convolutions = ""
            if step.hasConvolutions {
                let (cudnn, note) = Self.cuDNN(libraries, environment: environment)
                step.cudnn = cudnn
                convolutions = cudnn.map { precision == .fp32 ? ", convolutions by cuDNN \($0.version)" : ", convolutions through patch matrices (cuDNN \($0.version) runs FP32 steps only)" }
                    ?? ", convolutions through patch matrices (\(note))"
            }
            return (step, "\(self): \(context.device.summary)" + (precision == .bf16 ? ", bf16 products" : "")
                + (context.machineCode ? ", kernels as machine code (the driver is older than NVRTC)" : "")
                + (cublas.lt != nil ? ", biases fused into products by cuBLASLt" : "") + convolutions)
        } catch let error as CUDAError {
            throw CUDAError("--device \(self): \(error)")
        }
    }
}
