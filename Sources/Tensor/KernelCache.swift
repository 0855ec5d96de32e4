#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// NVRTC's PTX for the project's kernels (and, for a driver older than NVRTC, their machine
/// code), kept on disk between runs: compiling `Kernels.cu` takes about a second (0.9 s on a
/// Zen 3 core), which every `vae … --device cuda` would otherwise pay as it starts.
///
/// An entry is named by a hash of everything its output depends on — the source, NVRTC's options
/// (the GPU's architecture among them) and the NVRTC library itself (its path, size and
/// modification time, so an upgraded toolkit compiles afresh) — and is written whole (a
/// temporary file, then renamed), so a reader finds an entry complete or not at all. An entry
/// that does not declare every kernel, or that the driver refuses to load, is compiled again
/// and replaced. (The driver keeps its own cache of the machine code it makes from PTX, in
/// `~/.nv/ComputeCache`.)
///
/// Where: `$VAE_KERNEL_CACHE` (`off` for none), else `$XDG_CACHE_HOME/swift-vae/kernels`, else
/// `$HOME/.cache/swift-vae/kernels`. A cache that cannot be written is passed over.
public struct KernelCache: Sendable {
    /// The folder of the entries.
    public let directory: String

    /// The cache `environment` names, or nil when it is off or no folder can be named.
    public init?(environment: [String: String]) {
        if let chosen = environment["VAE_KERNEL_CACHE"], !chosen.isEmpty {
            guard !["off", "0", "no", "false"].contains(chosen.lowercased()) else { return nil }
            directory = chosen
        } else if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            directory = xdg + "/swift-vae/kernels"
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            directory = home + "/.cache/swift-vae/kernels"
        } else {
            return nil
        }
    }

    /// The cache this process's environment names.
    public static var processDefault: KernelCache? { KernelCache(environment: ProcessInfo.processInfo.environment) }

    /// The entry's name for `source` compiled with `options` by the NVRTC at `compiler`: 64-bit
    /// FNV-1a of all of it, in hex.
    public static func key(source: String, options: [String], compiler: String) -> String {
        var identity = compiler
        var info = stat()
        if stat(compiler, &info) == 0 { identity += " \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)" }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for part in [source, options.joined(separator: "\u{0}"), identity] {
            for byte in part.utf8 + [0] {
                hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            }
        }
        return String(hash, radix: 16)
    }

    /// What an entry holds: PTX text, or a GPU's machine code (a CUBIN).
    public enum Kind: String, Sendable { case ptx, cubin }

    /// The entry's file.
    public func path(_ key: String, _ kind: Kind = .ptx) -> String { directory + "/" + key + "." + kind.rawValue }

    /// The bytes stored under `key`, if any.
    public func entry(_ key: String, _ kind: Kind) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path(key, kind)), !data.isEmpty else { return nil }
        return [UInt8](data)
    }

    /// The PTX stored under `key`, if any.
    public func ptx(_ key: String) -> String? { entry(key, .ptx).map { String(decoding: $0, as: UTF8.self) } }

    /// How many entries the cache keeps: storing one more removes the oldest (each build of vae
    /// and each GPU architecture makes its own, about 0.5 MB).
    public static let capacity = 8

    /// Stores `ptx` under `key` (whole or not at all), then keeps the ``capacity`` newest
    /// entries; false when the cache cannot be written.
    @discardableResult
    public func store(_ ptx: String, _ key: String) -> Bool { store(Array(ptx.utf8), key, .ptx) }

    /// Stores `bytes` as the `kind` entry of `key` (whole or not at all), then keeps the
    /// ``capacity`` newest entries; false when the cache cannot be written.
    @discardableResult
    public func store(_ bytes: [UInt8], _ key: String, _ kind: Kind) -> Bool {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let temporary = directory + "/.\(key).\(getpid()).tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else { return false }
            guard rename(temporary, path(key, kind)) == 0 else {
                unlink(temporary)
                return false
            }
            prune()
            return true
        } catch {
            return false
        }
    }

    /// Removes all but the ``capacity`` most recently written entries.
    private func prune() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let entries = names.filter { ($0.hasSuffix(".ptx") || $0.hasSuffix(".cubin")) && !$0.hasPrefix(".") }.map { name -> (path: String, written: Double) in
            var info = stat()
            let path = directory + "/" + name
            let written = stat(path, &info) == 0 ? Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) * 1e-9 : 0
            return (path, written)
        }
        guard entries.count > Self.capacity else { return }
        for entry in entries.sorted(by: { $0.written > $1.written }).dropFirst(Self.capacity) { unlink(entry.path) }
    }
}
