import Foundation
import Tensor
import Testing
import TestSupport

// `vae devices` loads the CUDA driver at run time. Without a GPU here, a stand-in driver — a
// C library with the driver API's entry points, compiled by the test — checks what vae reads
// from it and how it reports the driver's errors.

let cCompiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// A stand-in `libcuda.so.1` in `dir`: two devices, or cuInit failing with `initStatus`.
func writeStandInDriver(_ dir: String, initStatus: Int = 0, extra: String = "") throws {
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
        """ + "\n" + extra
    try source.write(toFile: dir + "/driver.c", atomically: true, encoding: .utf8)
    let built = try run(cCompiler!, ["-shared", "-fPIC", "-o", dir + "/libcuda.so.1", dir + "/driver.c"])
    #expect(built.status == 0, "\(built.stderr)")
}

@Test(.enabled(if: cCompiler != nil, "needs a C compiler for the stand-in driver"))
func devicesReportsWhatTheDriverSaysAndWhyNone() throws {
    let dir = temporaryDirectory()
    try writeStandInDriver(dir)
    let two = try vae(["devices"], environment: ["LD_LIBRARY_PATH": dir, "VAE_CACHE": dir + "/cache"])
    #expect(two.status == 0, "\(two.stderr)")
    #expect(two.stdout.contains("cpu: "), "\(two.stdout)")
    #expect(two.stdout.contains("\n  probe cache (--threads auto): \(dir)/cache/probes\n"), "\(two.stdout)")
    #expect(two.stdout.contains("\n  kernel cache: \(dir)/cache/kernels\n"), "\(two.stdout)")
    #expect(two.stdout.contains("cuda:0: Stand-in GPU 0, 80.0 GiB, compute capability 9.0, 132 multiprocessors (CUDA driver 13.0)"), "\(two.stdout)")
    #expect(two.stdout.contains("cuda:1: Stand-in GPU 1, 120.0 GiB, compute capability 9.1, 132 multiprocessors (CUDA driver 13.0)"), "\(two.stdout)")

    let failing = temporaryDirectory()
    try writeStandInDriver(failing, initStatus: 100)
    let none = try vae(["devices"], environment: ["LD_LIBRARY_PATH": failing])
    #expect(none.status == 0)
    #expect(none.stdout.contains("\n  probe cache (--threads auto): off (VAE_CACHE)\n") && none.stdout.contains("\n  kernel cache: off (VAE_CACHE)\n"), "\(none.stdout)")
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

/// The compute half of the stand-in driver: device memory is host memory, a module is the PTX
/// text, a function is its name, and a launch computes nothing but writes the kernel's name and
/// its argument count (up to the null that ends no list: the count the PTX declares is what
/// vae checked) to $STAND_IN_LAUNCHES.
let standInCompute = """
    #include <stdlib.h>
    #include <string.h>
    int cuDevicePrimaryCtxRetain(void **context, int device) { *context = (void *)16; return device >= 10 ? 0 : 101; }
    int cuCtxSetCurrent(void *context) { return context ? 0 : 201; }
    int cuCtxSynchronize(void) { return 0; }
    // NVRTC itself opens libcuda.so.1 and asks for this; "not found" makes it carry on alone.
    int cuGetExportTable(const void **table, const void *id) { *table = NULL; return 500; }
    int cuMemAlloc_v2(unsigned long long *p, size_t n) { *p = (unsigned long long)malloc(n); return *p ? 0 : 2; }
    int cuMemFree_v2(unsigned long long p) { free((void *)p); return 0; }
    int cuMemcpyHtoD_v2(unsigned long long d, const void *h, size_t n) { memcpy((void *)d, h, n); return 0; }
    int cuMemcpyDtoH_v2(void *h, unsigned long long d, size_t n) { memcpy(h, (void *)d, n); return 0; }
    int cuModuleLoadData(void **module, const void *image) { *module = strdup((const char *)image); return strstr(*module, ".entry") ? 0 : 218; }
    int cuModuleGetFunction(void **f, void *module, const char *name) {
        char entry[256];
        snprintf(entry, sizeof entry, ".entry %s(", name);
        if (!strstr((const char *)module, entry)) return 500;
        *f = strdup(name);
        return 0;
    }
    int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void *stream,
                       void **args, void **extra) {
        FILE *log = fopen(getenv("STAND_IN_LAUNCHES"), "a");
        if (!log) return 1;
        fprintf(log, "%s grid %u block %u shared %u\\n", (const char *)f, gx, bx, shared);
        fclose(log);
        return gx >= 1 && bx >= 1 && gy == 1 && by == 1 && args ? 0 : 1;
    }
    """

/// `vae devices --check-kernels` on the stand-in driver, with the real NVRTC (where this machine
/// has it): the kernels compile, load and are found by name, and every launch's arguments fit
/// the kernel's parameters as the PTX declares them (vae checks before it launches) — so the
/// table has every row; the stand-in computes nothing, so the rows differ and the exit is 1.
/// Without a driver, or with a bad device, one line says why.
@Test(.enabled(if: cCompiler != nil, "needs a C compiler for the stand-in driver"))
func checkKernelsLaunchesEveryKernelWithArgumentsThatFit() throws {
    let dir = temporaryDirectory()
    try writeStandInDriver(dir, extra: standInCompute)
    let bad = try vae(["devices", "--check-kernels", "gpu0"], environment: ["LD_LIBRARY_PATH": dir])
    #expect(bad.status != 0 && bad.stderr.contains("--check-kernels takes cuda or cuda:N, not gpu0"), "\(bad.stderr)")
    // The driver is named first when it is what is missing (here, or a driver that cannot start).
    let failing = temporaryDirectory()
    try writeStandInDriver(failing, initStatus: 100)
    let noGPU = try vae(["devices", "--check-kernels", "cuda"], environment: ["LD_LIBRARY_PATH": failing])
    #expect(noGPU.status != 0 && noGPU.stderr.contains("--check-kernels cuda:0: cuInit failed: no CUDA-capable device is detected (CUDA error 100)"), "\(noGPU.stderr)")
    let nvrtc = CUDALibrariesForTests.nvrtc
    guard nvrtc != nil else {
        // No NVRTC here: the check says so in one line.
        let missing = try vae(["devices", "--check-kernels", "cuda:0"], environment: ["LD_LIBRARY_PATH": dir])
        #expect(missing.status != 0 && missing.stderr.contains("--check-kernels needs NVRTC"), "\(missing.stderr)")
        return
    }
    let launches = dir + "/launches.txt"
    let absent = try vae(["devices", "--check-kernels", "cuda:5"], environment: ["LD_LIBRARY_PATH": dir, "STAND_IN_LAUNCHES": launches])
    #expect(absent.status != 0 && absent.stderr.contains("cuda:5: this machine has 2 CUDA devices (cuda:0 … cuda:1)"), "\(absent.stderr)")
    let result = try vae(["devices", "--check-kernels", "cuda:0"], environment: ["LD_LIBRARY_PATH": dir, "STAND_IN_LAUNCHES": launches])
    #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
    #expect(!result.stderr.contains("the launch gave"), "\(result.stderr)")
    #expect(result.stdout.contains("cuda:0: Stand-in GPU 0"), "\(result.stdout)")
    #expect(result.stdout.contains("kernel checks differ from the CPU"), "\(result.stdout)")
    let log = (try? String(contentsOfFile: launches, encoding: .utf8)) ?? ""
    for name in CUDAKernels.names {
        #expect(log.contains(name + " grid "), "\(name) was not launched: \(log)")
    }
    #expect(log.contains("vae_bernoulli_nll grid 128 block 256 shared 1024"), "\(log)")
}

enum CUDALibrariesForTests {
    static let nvrtc = CUDA.libraries(environment: ProcessInfo.processInfo.environment).first { $0.name == "nvrtc" }?.path
}
