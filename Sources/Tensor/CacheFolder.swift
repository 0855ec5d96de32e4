#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One folder of swift-vae's cache: what a run compiled or measured, kept on disk for the next
/// run — the GPU kernels NVRTC compiled (``KernelCache``, `kernels/`) and the split of the cores
/// that `--threads auto` measured (`probes/`).
///
/// The cache's root is `$VAE_CACHE` (`off`, `0`, `no` or `false` for no cache), else
/// `$XDG_CACHE_HOME/swift-vae`, else `$HOME/.cache/swift-vae`; relative XDG and HOME paths are
/// not used. Entries are named by a hash of everything they depend on (``key(_:)``), written
/// whole (a temporary file, then renamed) so a reader finds an entry complete or not at all,
/// and each folder keeps its newest few. A cache that cannot be written is passed over.
public struct CacheFolder: Sendable, Equatable {
    /// The folder's path.
    public let directory: String

    /// The folder `name` of the cache `environment` names, or nil when the cache is off or no
    /// folder can be named.
    public init?(_ name: String, environment: [String: String]) {
        let root: String
        if let chosen = environment["VAE_CACHE"], !chosen.isEmpty {
            guard !["off", "0", "no", "false"].contains(chosen.lowercased()) else { return nil }
            root = chosen
        } else if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            root = xdg + "/swift-vae"
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            root = home + "/.cache/swift-vae"
        } else {
            return nil
        }
        directory = root + "/" + name
    }

    /// An entry's name for `parts`: 64-bit FNV-1a of each part and a zero byte after it, in hex
    /// (so `["ab", "c"]` and `["a", "bc"]` differ).
    public static func key(_ parts: [String]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for part in parts {
            for byte in part.utf8 + [0] {
                hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            }
        }
        return String(hash, radix: 16)
    }

    /// "path size mtime" of the file at `path` (its path alone when it cannot be read): a part
    /// of a key that changes when the file is replaced, as an upgrade or a rebuild does.
    public static func identity(ofFile path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return path }
        return "\(path) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }

    /// The file `name` in the folder.
    public func path(_ name: String) -> String { directory + "/" + name }

    /// The bytes of the file `name`, if it is there and not empty.
    public func read(_ name: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path(name)), !data.isEmpty else { return nil }
        return [UInt8](data)
    }

    /// Writes `bytes` as the file `name` (whole or not at all), then keeps the `capacity` most
    /// recently written entries of the folder; false when the folder cannot be written.
    @discardableResult
    public func write(_ bytes: [UInt8], _ name: String, keeping capacity: Int) -> Bool {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            return false
        }
        let temporary = directory + "/.\(name).\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else { return false }
        guard rename(temporary, path(name)) == 0 else {
            unlink(temporary)
            return false
        }
        prune(keeping: capacity)
        return true
    }

    /// Removes all but the `capacity` most recently written entries (temporary files, whose
    /// names start with a dot, are left to their writers).
    private func prune(keeping capacity: Int) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let entries = names.filter { !$0.hasPrefix(".") }.map { name -> (path: String, written: Double) in
            var info = stat()
            let path = path(name)
            let written = stat(path, &info) == 0 ? Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) * 1e-9 : 0
            return (path, written)
        }
        guard entries.count > capacity else { return }
        for entry in entries.sorted(by: { $0.written > $1.written }).dropFirst(capacity) { unlink(entry.path) }
    }
}
