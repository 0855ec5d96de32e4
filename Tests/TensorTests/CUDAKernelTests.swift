import Foundation
import Tensor
import Testing

/// NVRTC where this machine has it (the loader's path, CUDA_HOME, /usr/local/cuda, or PyPI's
/// nvidia-cuda-nvrtc): compiling needs no GPU.
let nvrtcPath = CUDA.libraries(environment: ProcessInfo.processInfo.environment).first { $0.name == "nvrtc" }?.path

/// Every kernel of the source is in the list the library loads: each `__global__` function is
/// `extern "C"` (so the driver finds it by its plain name), with a name of its own.
@Test func theKernelListMatchesTheSource() throws {
    let source = CUDAKernels.source
    let globals = source.components(separatedBy: "__global__").count - 1
    #expect(CUDAKernels.names.count == globals, "\(CUDAKernels.names.count) named kernels, \(globals) __global__ functions")
    #expect(Set(CUDAKernels.names).count == CUDAKernels.names.count)
    #expect(CUDAKernels.names.allSatisfy { $0.hasPrefix("vae_") && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } }, "\(CUDAKernels.names)")
    #expect(CUDAKernels.names.contains("vae_adam") && CUDAKernels.names.contains("vae_im2col"))
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

/// For a driver older than NVRTC: the kernels' machine code for the architecture (an ELF image
/// for a real GPU, sm_90 and sm_80) in which every kernel's name stands.
@Test(.enabled(if: nvrtcPath != nil, "needs NVRTC (pip install nvidia-cuda-nvrtc, or a CUDA toolkit)"), arguments: [(9, 0), (8, 0)])
func theKernelsCompileToMachineCodeWithNVRTC(major: Int, minor: Int) throws {
    let nvrtc = try NVRTC(path: nvrtcPath!)
    try #require(nvrtc.makesMachineCode, "\(nvrtcPath!) lacks nvrtcGetCUBIN")
    let binary = try nvrtc.compileMachineCode(
        CUDAKernels.source, name: "Kernels.cu", options: CUDAKernels.options(computeCapability: major, minor, machineCode: true))
    #expect(binary.starts(with: [0x7F, 0x45, 0x4C, 0x46]), "not an ELF image: \(binary.prefix(16))")
    let text = String(decoding: binary, as: UTF8.self)
    for name in CUDAKernels.names { #expect(text.contains(name), "\(name) missing from the machine code") }
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

/// A launch's arguments are checked against the kernel's parameters as the PTX declares them:
/// the same count, pointers and 64-bit integers in 64-bit slots, int32 in 32-bit ones, floats
/// in f32 — otherwise one line names the kernel and both lists.
@Test func launchArgumentsAreCheckedAgainstThePTX() throws {
    let ptx = """
        .visible .entry vae_add_bias(
        \t.param .u64 vae_add_bias_param_0,
        \t.param .u64 vae_add_bias_param_1,
        \t.param .u32 vae_add_bias_param_2,
        \t.param .f32 vae_add_bias_param_3
        )
        {
        \tld.param.u64 \t%rd1, [vae_add_bias_param_0];
        }
        .visible .entry vae_empty(
        )
        {
        }
        """
    let signatures = CUDAKernels.parameters(inPTX: ptx)
    #expect(signatures == ["vae_add_bias": ["u64", "u64", "u32", "f32"], "vae_empty": []])
    try CUDAKernels.check([.buffer(nil), .int64(3), .int32(1), .float(2)], against: signatures["vae_add_bias"]!, kernel: "vae_add_bias")
    try CUDAKernels.check([], against: signatures["vae_empty"]!, kernel: "vae_empty")
    #expect(throws: CUDAError.self) { try CUDAKernels.check([.buffer(nil), .buffer(nil), .int64(1), .float(2)], against: signatures["vae_add_bias"]!, kernel: "vae_add_bias") }
    #expect(throws: CUDAError.self) { try CUDAKernels.check([.buffer(nil), .buffer(nil), .int32(1)], against: signatures["vae_add_bias"]!, kernel: "vae_add_bias") }
    do {
        try CUDAKernels.check([.float(1)], against: ["u64"], kernel: "k")
        Issue.record("a float passed for a pointer")
    } catch {
        #expect("\(error)" == "k takes (u64); the launch gave (float)")
    }
}

/// With NVRTC: the PTX of the project's kernels declares, for each, as many parameters as its
/// C signature in the source has.
@Test(.enabled(if: nvrtcPath != nil, "needs NVRTC (pip install nvidia-cuda-nvrtc, or a CUDA toolkit)"))
func everyKernelsPTXParametersMatchItsSignature() throws {
    let ptx = try NVRTC(path: nvrtcPath!).compile(CUDAKernels.source, name: "Kernels.cu", options: CUDAKernels.options(computeCapability: 9, 0))
    let signatures = CUDAKernels.parameters(inPTX: ptx)
    let source = CUDAKernels.source
    for name in CUDAKernels.names {
        let start = source.range(of: "void \(name)(")!.upperBound
        let list = source[start...].prefix { $0 != ")" }
        #expect(signatures[name]?.count == list.split(separator: ",").count, "\(name): \(signatures[name] ?? []) against (\(list))")
    }
}
