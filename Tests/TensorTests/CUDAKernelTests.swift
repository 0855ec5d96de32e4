import Foundation
import Tensor
import Testing

/// NVRTC where this machine has it (the loader's path, CUDA_HOME, /usr/local/cuda, or PyPI's
/// nvidia-cuda-nvrtc): compiling needs no GPU.
let nvrtcPath = CUDA.libraries(environment: ProcessInfo.processInfo.environment).first { $0.name == "nvrtc" }?.path

/// The names the library launches are exactly the kernels the embedded source defines.
@Test func theKernelListMatchesTheSource() throws {
    let source = CUDAKernels.source
    let pattern = try Regex(#"extern "C" __global__ void (\w+)\("#)
    let defined = source.matches(of: pattern).map { String($0.output[1].substring!) }
    #expect(defined == CUDAKernels.names, "\(defined)")
    #expect(source.contains("Philox4x32-10"))
}

/// Every kernel compiles to PTX for the H200's architecture (9.0) and an older one (8.0), and
/// each is in the PTX under its own unmangled name, which is how the driver looks it up.
@Test(.enabled(if: nvrtcPath != nil, "needs NVRTC (pip install nvidia-cuda-nvrtc, or a CUDA toolkit)"), arguments: [(9, 0), (8, 0)])
func theKernelsCompileWithNVRTC(major: Int, minor: Int) throws {
    let nvrtc = try NVRTC(path: nvrtcPath!)
    let ptx = try nvrtc.compile(CUDAKernels.source, name: "Kernels.cu", options: CUDAKernels.options(computeCapability: major, minor))
    #expect(ptx.contains(".target sm_\(major)\(minor)"), "\(ptx.prefix(400))")
    for name in CUDAKernels.names { #expect(ptx.contains(".entry \(name)("), "\(name) missing from the PTX") }
}

/// Source that does not compile gives NVRTC's log in the error.
@Test(.enabled(if: nvrtcPath != nil, "needs NVRTC (pip install nvidia-cuda-nvrtc, or a CUDA toolkit)"))
func aCompileErrorCarriesNVRTCsLog() throws {
    let nvrtc = try NVRTC(path: nvrtcPath!)
    #expect {
        _ = try nvrtc.compile("extern \"C\" __global__ void broken(float *x) { x[0] = undefined_name; }", name: "broken.cu", options: [])
    } throws: { error in
        let text = "\(error)"
        return text.contains("broken.cu does not compile") && text.contains("undefined_name")
    }
}
