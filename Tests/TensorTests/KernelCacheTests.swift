import Foundation
import Tensor
import Testing

/// Where the cache is: `VAE_CACHE` first (`off` and its spellings turn it off), then
/// `XDG_CACHE_HOME`, then `HOME`; relative XDG and HOME paths are not used. The kernels are its
/// `kernels/` folder.
@Test func theCacheIsWhereTheEnvironmentSays() {
    #expect(KernelCache(environment: ["VAE_CACHE": "/x/k", "XDG_CACHE_HOME": "/c", "HOME": "/h"])?.directory == "/x/k/kernels")
    #expect(CacheFolder("probes", environment: ["VAE_CACHE": "/x/k", "HOME": "/h"])?.directory == "/x/k/probes")
    for off in ["off", "OFF", "0", "no", "false"] {
        #expect(KernelCache(environment: ["VAE_CACHE": off, "HOME": "/h"]) == nil)
        #expect(CacheFolder("probes", environment: ["VAE_CACHE": off, "HOME": "/h"]) == nil)
    }
    #expect(KernelCache(environment: ["XDG_CACHE_HOME": "/c", "HOME": "/h"])?.directory == "/c/swift-vae/kernels")
    #expect(KernelCache(environment: ["VAE_CACHE": "", "XDG_CACHE_HOME": "relative", "HOME": "/h"])?.directory == "/h/.cache/swift-vae/kernels")
    #expect(KernelCache(environment: ["HOME": "relative"]) == nil)
    #expect(KernelCache(environment: [:]) == nil)
}

/// A key changes with each part and with where the parts split.
@Test func aCacheKeyTellsItsPartsApart() {
    let key = CacheFolder.key(["ab", "c"])
    #expect(key == CacheFolder.key(["ab", "c"]))
    for other in [["a", "bc"], ["abc"], ["ab", "c", ""], ["ab", "d"], ["c", "ab"]] { #expect(CacheFolder.key(other) != key, "\(other)") }
}

/// An entry's key changes with anything the PTX depends on — a character of the source, an
/// option, the compiler's path, its file's size — and with nothing else.
@Test func aKernelCacheKeyNamesEverythingThePTXDependsOn() throws {
    let dir = NSTemporaryDirectory() + "kernel-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let compiler = dir + "/libnvrtc.so.13"
    try "1".write(toFile: compiler, atomically: false, encoding: .utf8)
    let key = KernelCache.key(source: "a b", options: ["-x", "-y"], compiler: compiler)
    #expect(key == KernelCache.key(source: "a b", options: ["-x", "-y"], compiler: compiler))
    let others = [
        KernelCache.key(source: "a c", options: ["-x", "-y"], compiler: compiler),
        KernelCache.key(source: "a b", options: ["-x", "-z"], compiler: compiler),
        KernelCache.key(source: "a b", options: ["-x-y"], compiler: compiler),
        KernelCache.key(source: "a b", options: ["-x", "-y"], compiler: compiler + "x"),
    ]
    for other in others { #expect(other != key) }
    try "12".write(toFile: compiler, atomically: false, encoding: .utf8)
    #expect(KernelCache.key(source: "a b", options: ["-x", "-y"], compiler: compiler) != key)

    // Stored whole and read back; nothing left beside the entry.
    let cache = try #require(KernelCache(environment: ["VAE_CACHE": dir + "/cache"]))
    #expect(cache.ptx(key) == nil)
    #expect(cache.store(".version 9.0\n", key))
    #expect(cache.ptx(key) == ".version 9.0\n")
    #expect(try FileManager.default.contentsOfDirectory(atPath: cache.directory) == [key + ".ptx"])
}

/// The cache keeps its newest entries: storing one more than its capacity removes the oldest.
@Test func theKernelCacheKeepsItsNewestEntries() throws {
    let dir = NSTemporaryDirectory() + "kernel-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let cache = try #require(KernelCache(environment: ["VAE_CACHE": dir]))
    for i in 0..<KernelCache.capacity {
        #expect(cache.store("entry \(i)", "k\(i)"))
        // Older by a second each, so that the order does not rest on the clock's resolution.
        var times = [timespec(tv_sec: 1_000_000 + i, tv_nsec: 0), timespec(tv_sec: 1_000_000 + i, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, cache.path("k\(i)"), &times, 0) == 0)
    }
    #expect(cache.store("newest", "new"))
    let kept = Set(try FileManager.default.contentsOfDirectory(atPath: cache.directory))
    #expect(kept.count == KernelCache.capacity)
    #expect(!kept.contains("k0.ptx") && kept.contains("k1.ptx") && kept.contains("new.ptx"), "\(kept.sorted())")
}
