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
/// Where: the `kernels/` folder of the cache (``CacheFolder``): `~/.cache/swift-vae/kernels`,
/// `$XDG_CACHE_HOME/swift-vae/kernels` or `$VAE_CACHE/kernels`; `VAE_CACHE=off` for none.
public struct KernelCache: Sendable {
    /// The entries' folder.
    public let folder: CacheFolder

    /// The folder of the entries.
    public var directory: String { folder.directory }

    /// The cache `environment` names, or nil when it is off or no folder can be named.
    public init?(environment: [String: String]) {
        guard let folder = CacheFolder("kernels", environment: environment) else { return nil }
        self.folder = folder
    }

    /// The cache this process's environment names.
    public static var processDefault: KernelCache? { KernelCache(environment: ProcessInfo.processInfo.environment) }

    /// The entry's name for `source` compiled with `options` by the NVRTC at `compiler`: 64-bit
    /// FNV-1a of all of it, in hex.
    public static func key(source: String, options: [String], compiler: String) -> String {
        CacheFolder.key([source, options.joined(separator: "\u{0}"), CacheFolder.identity(ofFile: compiler)])
    }

    /// What an entry holds: PTX text, or a GPU's machine code (a CUBIN).
    public enum Kind: String, Sendable { case ptx, cubin }

    /// The entry's file.
    public func path(_ key: String, _ kind: Kind = .ptx) -> String { folder.path(key + "." + kind.rawValue) }

    /// The bytes stored under `key`, if any.
    public func entry(_ key: String, _ kind: Kind) -> [UInt8]? { folder.read(key + "." + kind.rawValue) }

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
        folder.write(bytes, key + "." + kind.rawValue, keeping: Self.capacity)
    }
}
