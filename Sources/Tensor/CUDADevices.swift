import CCUDA

/// An NVIDIA GPU as the CUDA driver reports it.
public struct CUDADevice: Equatable, Sendable {
    /// The driver's index (`cuda:N`).
    public let ordinal: Int
    public let name: String
    public let memoryBytes: Int
    /// The compute capability, e.g. (9, 0) for Hopper.
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessors: Int

    public static func == (a: CUDADevice, b: CUDADevice) -> Bool {
        a.ordinal == b.ordinal && a.name == b.name && a.memoryBytes == b.memoryBytes
            && a.computeCapability == b.computeCapability && a.multiprocessors == b.multiprocessors
    }

    /// "NVIDIA H200, 139.8 GiB, compute capability 9.0, 132 multiprocessors".
    public var summary: String {
        let tenths = Int((Double(memoryBytes) / Double(1 << 30) * 10).rounded())
        return "\(name), \(tenths / 10).\(tenths % 10) GiB, compute capability \(computeCapability.major).\(computeCapability.minor), \(multiprocessors) multiprocessors"
    }
}

/// Why no GPU can be used: one line naming what is missing or what failed.
public struct CUDAUnavailable: Error, CustomStringConvertible {
    public let description: String
}

/// The CUDA driver, loaded at run time (`libcuda.so.1` through dlopen): nothing of CUDA is needed
/// to build or to run on the CPU.
public enum CUDA {
    /// The GPUs the driver sees (possibly none), or the reason the driver cannot be used.
    public static func devices() throws -> [CUDADevice] {
        var message = [CChar](repeating: 0, count: 512)
        var count: Int32 = 0
        guard vae_cuda_device_count(&count, &message, message.count) == 0 else { throw CUDAUnavailable(description: text(message)) }
        return try (0..<Int(count)).map { ordinal in
            var device = vae_cuda_device()
            guard vae_cuda_device(Int32(ordinal), &device, &message, message.count) == 0 else { throw CUDAUnavailable(description: text(message)) }
            let name = withUnsafeBytes(of: device.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return CUDADevice(
                ordinal: ordinal, name: name, memoryBytes: Int(device.memory),
                computeCapability: (Int(device.major), Int(device.minor)), multiprocessors: Int(device.multiprocessors))
        }
    }

    /// GPU `ordinal` as the driver sees it, or one line saying why there is none: the driver
    /// cannot be loaded (``CUDAUnavailable``), or no such GPU (naming the ones there are).
    public static func device(_ ordinal: Int) throws -> CUDADevice {
        let devices = try devices()
        guard devices.indices.contains(ordinal) else {
            let names = devices.count == 1 ? " (cuda:0)" : devices.isEmpty ? "" : " (cuda:0 … cuda:\(devices.count - 1))"
            throw CUDAError("cuda:\(ordinal): this machine has \(devices.count) CUDA device\(devices.count == 1 ? "" : "s")\(names)")
        }
        return devices[ordinal]
    }

    /// ``device(_:)`` for what `asker` names (a flag: "--device"), its message prefixed so: the
    /// check every GPU command makes first, so that what is missing is said in order — the
    /// driver, then the GPU — before the libraries are looked for.
    public static func device(_ ordinal: Int, for asker: String) throws -> CUDADevice {
        do {
            return try device(ordinal)
        } catch let error as CUDAUnavailable {
            throw CUDAError("\(asker) cuda:\(ordinal): \(error)")
        } catch {
            throw CUDAError("\(asker) \(error)")  // "cuda:N: this machine has …"
        }
    }

    /// The driver's CUDA version ("13.0") once ``devices()`` has loaded it, else nil.
    public static var driverVersion: String? {
        let v = Int(vae_cuda_driver_version())
        return v == 0 ? nil : "\(v / 1000).\(v % 1000 / 10)"
    }

    private static func text(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
