import CCUDA
#if canImport(Glibc)
import Glibc
#endif

/// A CUDA library `vae` loads at run time (NVRTC, cuBLAS, cuBLASLt, cuDNN), where it was found
/// and its version — or where it was looked for.
public struct CUDALibrary: Sendable {
    public let name: String
    /// The file loaded, or nil if none was found.
    public let path: String?
    /// "13.0.88" as the library reports it, or nil.
    public let version: String?
    /// Where it was looked for, in order (for the line that says it is missing).
    public let searched: [String]

    /// "nvrtc 13.0 (/usr/local/cuda/lib64/libnvrtc.so.13)" or "nvrtc: not found (looked …)".
    public var summary: String {
        guard let path else { return "\(name): not found (looked on the loader's path, then in \(searched.joined(separator: ", ")))" }
        return "\(name) \(version ?? "(version unknown)") (\(path))"
    }
}

extension CUDA {
    /// The folders searched after the loader's own path, in order: `$CUDA_HOME/lib64` (and
    /// `$CUDA_PATH/lib64`), the toolkit's standard `/usr/local/cuda/lib64` and
    /// `/usr/local/cuda/targets/x86_64-linux/lib`, and the `lib` folders of PyPI's `nvidia-*`
    /// packages in the active virtual environment and the usual site-packages folders.
    public static func librarySearchFolders(environment: [String: String]) -> [String] {
        var folders: [String] = []
        for variable in ["CUDA_HOME", "CUDA_PATH"] { if let root = environment[variable], !root.isEmpty { folders += [root + "/lib64", root + "/lib"] } }
        folders += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        var sitePackages: [String] = []
        if let venv = environment["VIRTUAL_ENV"] { sitePackages += pythonFolders(venv + "/lib") }
        if let home = environment["HOME"] { sitePackages += pythonFolders(home + "/.local/lib") }
        sitePackages += pythonFolders("/usr/local/lib") + pythonFolders("/usr/lib")
        for site in sitePackages {
            let nvidia = site + "/nvidia"
            for package in (try? contents(nvidia)) ?? [] { folders.append("\(nvidia)/\(package)/lib") }
        }
        return folders
    }

    /// NVRTC, cuBLAS, cuBLASLt and cuDNN as this machine offers them (CUDA 13, then 12).
    public static func libraries(environment: [String: String]) -> [CUDALibrary] {
        let folders = librarySearchFolders(environment: environment)
        return [
            find("nvrtc", files: ["libnvrtc.so.13", "libnvrtc.so.12"], in: folders) { handle in
                guard let version = cFunction("nvrtcVersion", NVRTCVersion.self, in: handle) else { return nil }
                var major: Int32 = 0, minor: Int32 = 0
                return version(&major, &minor) == 0 ? "\(major).\(minor)" : nil
            },
            find("cublas", files: ["libcublas.so.13", "libcublas.so.12"], in: folders) { handle in
                libraryProperty(cFunction("cublasGetProperty", LibraryProperty.self, in: handle))
            },
            find("cublasLt", files: ["libcublasLt.so.13", "libcublasLt.so.12"], in: folders) { handle in
                libraryProperty(cFunction("cublasLtGetProperty", LibraryProperty.self, in: handle))
            },
            find("cudnn", files: ["libcudnn.so.9"], in: folders) { handle in
                guard let version = cFunction("cudnnGetVersion", CUDNNVersion.self, in: handle) else { return nil }
                let v = version()  // 9.x: 10000·major + 100·minor + patch
                return "\(v / 10000).\(v % 10000 / 100).\(v % 100)"
            },
        ]
    }

    /// The first of `files` the loader finds by itself, else in `folders`; its version by `version`.
    static func find(_ name: String, files: [String], in folders: [String], version: (UnsafeMutableRawPointer) -> String?) -> CUDALibrary {
        for file in files {
            if let handle = dlopen(file, RTLD_NOW | RTLD_LOCAL) {
                return CUDALibrary(name: name, path: loadedPath(handle) ?? file, version: version(handle), searched: folders)
            }
        }
        for folder in folders {
            for file in files where access(folder + "/" + file, R_OK) == 0 {
                guard let handle = dlopen(folder + "/" + file, RTLD_NOW | RTLD_LOCAL) else { continue }
                return CUDALibrary(name: name, path: folder + "/" + file, version: version(handle), searched: folders)
            }
        }
        return CUDALibrary(name: name, path: nil, version: nil, searched: folders)
    }

    /// nvrtcVersion(int *major, int *minor).
    typealias NVRTCVersion = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    /// cuBLAS's and cuBLASLt's `…GetProperty(libraryPropertyType, int *)`.
    typealias LibraryProperty = @convention(c) (Int32, UnsafeMutablePointer<Int32>) -> Int32
    /// cudnnGetVersion().
    typealias CUDNNVersion = @convention(c) () -> Int

    /// The function `name` of the library `handle` as `type` (the ABI check reads each such call),
    /// or nil when the library lacks it.
    static func cFunction<T>(_ name: String, _ type: T.Type, in handle: UnsafeMutableRawPointer) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: type) }
    }

    /// The version `get` reports: MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2.
    static func libraryProperty(_ get: LibraryProperty?) -> String? {
        guard let get else { return nil }
        var parts: [Int32] = []
        for property in Int32(0)...2 {
            var value: Int32 = 0
            guard get(property, &value) == 0 else { return nil }
            parts.append(value)
        }
        return parts.map(String.init).joined(separator: ".")
    }

    /// The file a handle came from (the loader's choice), through dlinfo's link map.
    static func loadedPath(_ handle: UnsafeMutableRawPointer) -> String? {
        var path = [CChar](repeating: 0, count: 4096)
        guard vae_library_path(handle, &path, path.count) == 0 else { return nil }
        return String(decoding: path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func pythonFolders(_ lib: String) -> [String] {
        ((try? contents(lib)) ?? []).filter { $0.hasPrefix("python3") }.sorted().flatMap { ["\(lib)/\($0)/site-packages", "\(lib)/\($0)/dist-packages"] }
    }

    private static func contents(_ folder: String) throws -> [String] {
        guard let dir = opendir(folder) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}
