#if canImport(Glibc)
import Glibc
#endif

/// A shared library opened at run time (`dlopen` with `RTLD_NOW | RTLD_LOCAL`) and the functions
/// taken from it: how NVRTC, cuBLAS and cuBLASLt are loaded, so that nothing of CUDA is needed to
/// build or run `vae` on the CPU. The library stays open for the life of the process.
struct DynamicLibrary {
    let path: String
    let handle: UnsafeMutableRawPointer
    /// The library's name in messages ("cuBLAS 12 or 13").
    let expected: String

    /// Opens `path`; a failure names it and the loader's reason.
    init(_ path: String, expected: String) throws(CUDAError) {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw CUDAError("\(path): cannot be loaded (\(String(cString: dlerror())))")
        }
        (self.path, self.handle, self.expected) = (path, handle, expected)
    }

    /// The function `name` as the C function type `T`; throws when the library lacks it.
    func function<T>(_ name: String, _ type: T.Type) throws(CUDAError) -> T {
        guard let function = optionalFunction(name, type) else { throw CUDAError("\(path) lacks \(name): is it \(expected)?") }
        return function
    }

    /// The function `name` as `T`, or nil (a function of later versions only).
    func optionalFunction<T>(_ name: String, _ type: T.Type) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: type) }
    }
}
