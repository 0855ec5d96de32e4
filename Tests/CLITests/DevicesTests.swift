import Foundation
import Testing
import TestSupport

// `vae devices` loads the CUDA driver at run time. Without a GPU here, a stand-in driver — a
// C library with the driver API's entry points, compiled by the test — checks what vae reads
// from it and how it reports the driver's errors.

let cCompiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// A stand-in `libcuda.so.1` in `dir`: two devices, or cuInit failing with `initStatus`.
func writeStandInDriver(_ dir: String, initStatus: Int = 0) throws {
    let source = """
        #include <stddef.h>
        #include <stdio.h>
        int cuInit(unsigned int flags) { return flags == 0 ? \(initStatus) : 1; }
        int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
        int cuDeviceGetCount(int *n) { *n = 2; return 0; }
        int cuDeviceGet(int *d, int ordinal) { if (ordinal < 0 || ordinal > 1) return 101; *d = 10 + ordinal; return 0; }
        int cuDeviceGetName(char *name, int length, int d) { snprintf(name, (size_t)length, "Stand-in GPU %d", d - 10); return 0; }
        int cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = (size_t)(80 + 40 * (d - 10)) << 30; return 0; }
        int cuDeviceGetAttribute(int *v, int attribute, int d) {
            switch (attribute) { case 75: *v = 9; return 0; case 76: *v = d - 10; return 0; case 16: *v = 132; return 0; default: return 1; }
        }
        int cuGetErrorString(int status, const char **text) { *text = status == 100 ? "no CUDA-capable device is detected" : "other"; return 0; }
        """
    try source.write(toFile: dir + "/driver.c", atomically: true, encoding: .utf8)
    let built = try run(cCompiler!, ["-shared", "-fPIC", "-o", dir + "/libcuda.so.1", dir + "/driver.c"])
    #expect(built.status == 0, "\(built.stderr)")
}

@Test(.enabled(if: cCompiler != nil, "needs a C compiler for the stand-in driver"))
func devicesReportsWhatTheDriverSaysAndWhyNone() throws {
    let dir = temporaryDirectory()
    try writeStandInDriver(dir)
    let two = try vae(["devices"], environment: ["LD_LIBRARY_PATH": dir])
    #expect(two.status == 0, "\(two.stderr)")
    #expect(two.stdout.contains("cpu: "), "\(two.stdout)")
    #expect(two.stdout.contains("cuda:0: Stand-in GPU 0, 80.0 GiB, compute capability 9.0, 132 multiprocessors (CUDA driver 13.0)"), "\(two.stdout)")
    #expect(two.stdout.contains("cuda:1: Stand-in GPU 1, 120.0 GiB, compute capability 9.1, 132 multiprocessors (CUDA driver 13.0)"), "\(two.stdout)")

    let failing = temporaryDirectory()
    try writeStandInDriver(failing, initStatus: 100)
    let none = try vae(["devices"], environment: ["LD_LIBRARY_PATH": failing])
    #expect(none.status == 0)
    #expect(none.stdout.contains("cuda: none — cuInit failed: no CUDA-capable device is detected (CUDA error 100)"), "\(none.stdout)")

    // No driver at all (unless this machine has a real one).
    if dlopen("libcuda.so.1", RTLD_NOW) == nil {
        let missing = try vae(["devices"])
        #expect(missing.stdout.contains("cuda: none — the NVIDIA driver's libcuda.so.1 cannot be loaded"), "\(missing.stdout)")
    }
}

/// Compiles `source` into the shared library `path`.
func compileLibrary(_ source: String, to path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try source.write(toFile: path + ".c", atomically: true, encoding: .utf8)
    let built = try run(cCompiler!, ["-shared", "-fPIC", "-o", path, path + ".c"])
    #expect(built.status == 0, "\(built.stderr)")
}

/// NVRTC under `$CUDA_HOME/lib64`, cuBLAS in a virtual environment's `nvidia/cublas/lib` (PyPI's
/// layout), cuDNN nowhere: `vae devices` names each with the version it reports and the file
/// it loaded, and says where it looked for the missing one.
@Test(.enabled(if: cCompiler != nil, "needs a C compiler for the stand-in libraries"))
func devicesFindsTheCUDALibrariesWhereTheyAreInstalled() throws {
    let dir = temporaryDirectory()
    try compileLibrary("int nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 0; return 0; }", to: dir + "/toolkit/lib64/libnvrtc.so.13")
    try compileLibrary("int cublasGetProperty(int p, int *v) { *v = p == 0 ? 13 : p == 1 ? 1 : 2; return 0; }",
                       to: dir + "/venv/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.13")
    let result = try vae(["devices"], environment: ["CUDA_HOME": dir + "/toolkit", "VIRTUAL_ENV": dir + "/venv"], removing: ["CUDA_PATH", "LD_LIBRARY_PATH"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("nvrtc 13.0 (\(dir)/toolkit/lib64/libnvrtc.so.13)"), "\(result.stdout)")
    #expect(result.stdout.contains("cublas 13.1.2 (\(dir)/venv/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.13)"), "\(result.stdout)")
    if dlopen("libcudnn.so.9", RTLD_NOW) == nil {
        #expect(result.stdout.contains("cudnn: not found (looked on the loader's path, then in \(dir)/toolkit/lib64, "), "\(result.stdout)")
    }
}
