import CCUDA

/// A failed CUDA call, in one line (the call and the driver's words).
public struct CUDAError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a CCUDA call that reports failure as -1 with a message.
func cudaCall(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    // The message buffer on the stack: a launch makes this call, and it should not allocate.
    try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 512) { message in
        message[0] = 0
        guard body(message.baseAddress!, message.count) == 0 else {
            message[message.count - 1] = 0
            throw CUDAError(String(cString: message.baseAddress!))
        }
    }
}

/// Device memory, freed with the object: FP32 values by default, or any elements by bytes
/// (the data set's pixels, an epoch's order, per-step loss sums in double).
public final class DeviceBuffer {
    /// The device address (CUdeviceptr).
    public let address: UInt64
    public let byteCount: Int
    /// Floats it holds (its bytes / 4).
    public var count: Int { byteCount / 4 }
    /// For a view, the buffer whose memory it is (kept alive by the view; nil: this one owns its
    /// memory and frees it).
    private let owner: DeviceBuffer?

    /// `count` floats of uninitialised device memory.
    public convenience init(count: Int) throws {
        try self.init(bytes: count * 4)
    }

    /// `bytes` bytes of uninitialised device memory (a failure names the size: the usual one is
    /// a batch or data set that does not fit).
    public init(bytes: Int) throws {
        var address: UInt64 = 0
        do {
            try cudaCall { vae_cuda_alloc(max(bytes, 1), &address, $0, $1) }
        } catch let error as CUDAError {
            throw CUDAError("\(error.description) while allocating \(Self.size(bytes)) on the GPU")
        }
        self.address = address
        self.byteCount = bytes
        owner = nil
    }

    /// Floats `offset ..< offset + count` of `buffer`, as a buffer of their own (no copy).
    public init(viewOf buffer: DeviceBuffer, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && 4 * (offset + count) <= buffer.byteCount, "a view outside its buffer")
        address = buffer.address + UInt64(4 * offset)
        byteCount = 4 * count
        owner = buffer.owner ?? buffer
    }

    /// Device memory holding `values`.
    public convenience init(_ values: [Float]) throws {
        try self.init(count: values.count)
        try upload(values)
    }

    deinit { if owner == nil { vae_cuda_free(address) } }

    /// A size in words: "3.1 MB".
    static func size(_ bytes: Int) -> String {
        bytes < 1 << 20 ? "\(bytes) bytes" : "\(bytes / 1_000_000).\(bytes / 100_000 % 10) MB"
    }

    public func upload(_ values: [Float]) throws {
        precondition(values.count == count, "\(values.count) values for a buffer of \(count)")
        try values.withUnsafeBytes { try upload(raw: $0) }
    }

    /// Copies `bytes` to the start of the buffer (at most its size).
    public func upload(raw bytes: UnsafeRawBufferPointer) throws {
        precondition(bytes.count <= byteCount, "\(bytes.count) bytes for a buffer of \(byteCount)")
        guard bytes.count > 0 else { return }
        try cudaCall { vae_cuda_upload(address, bytes.baseAddress, bytes.count, $0, $1) }
    }

    /// Copies `tensor`'s elements to the start of the buffer, straight from its storage.
    public func upload(_ tensor: Tensor) throws {
        precondition(tensor.count <= count, "\(tensor.count) values for a buffer of \(count)")
        try upload(raw: UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * 4))
    }

    /// The first `count` floats (all by default), after the work queued before has finished (the
    /// copy waits for it).
    public func download(count: Int? = nil) throws -> [Float] {
        var values = [Float](repeating: 0, count: count ?? self.count)
        try values.withUnsafeMutableBytes { try download(raw: $0) }
        return values
    }

    /// Copies the buffer's first `bytes.count` bytes into `bytes`, after the queued work.
    public func download(raw bytes: UnsafeMutableRawBufferPointer) throws {
        precondition(bytes.count <= byteCount, "\(bytes.count) bytes from a buffer of \(byteCount)")
        guard bytes.count > 0 else { return }
        try cudaCall { vae_cuda_download(bytes.baseAddress, address, bytes.count, $0, $1) }
    }
}

/// One argument of a kernel launch, as the kernel's C signature declares it.
public enum KernelArgument {
    /// A `float *` (nil: a null pointer).
    case buffer(DeviceBuffer?)
    /// A pointer to `bytes` bytes of device memory that is not a buffer of its own (a product's
    /// output inside a larger buffer): the bytes the kernel may reach from it.
    case address(UInt64, bytes: Int)
    case int32(Int32)
    /// A `long`.
    case int64(Int)
    case uint64(UInt64)
    case float(Float)

    /// What it is, for messages: "pointer", "int32", "int64", "uint64", "float".
    public var kind: String {
        switch self {
        case .buffer, .address: "pointer"
        case .int32: "int32"
        case .int64: "int64"
        case .uint64: "uint64"
        case .float: "float"
        }
    }

    /// Whether it can be passed as a PTX parameter of type `ptxType` (u64, u32, f32, …).
    public func fits(_ ptxType: String) -> Bool { slot == ParameterSlot(ptxType) }

    /// Its value as the 8 bytes of a launch's argument slot (a 32-bit value in the low half).
    var slotValue: UInt64 {
        switch self {
        case .buffer(let b): b?.address ?? 0
        case .address(let address, _): address
        case .int32(let v): UInt64(UInt32(bitPattern: v))
        case .int64(let v): UInt64(bitPattern: Int64(v))
        case .uint64(let v): v
        case .float(let v): UInt64(v.bitPattern)
        }
    }

    /// The bytes of device memory it points to (0: not a pointer, or a null one).
    var reach: Int {
        switch self {
        case .buffer(let b): b?.byteCount ?? 0
        case .address(_, let bytes): bytes
        default: 0
        }
    }

    /// The kind of parameter slot it fills.
    var slot: ParameterSlot {
        switch self {
        case .buffer, .address, .int64, .uint64: .wide
        case .int32: .narrow
        case .float: .float
        }
    }
}

/// A PTX parameter's kind as a launch must fill it: 64-bit (pointers, long), 32-bit integer, FP32.
enum ParameterSlot: Equatable {
    case wide, narrow, float, other

    init(_ ptxType: String) {
        switch ptxType {
        case "u64", "s64", "b64": self = .wide
        case "u32", "s32", "b32": self = .narrow
        case "f32": self = .float
        default: self = .other
        }
    }
}

/// One GPU ready to run the project's kernels: its primary context made current, the kernels
/// compiled by NVRTC for its architecture and loaded, each looked up by name.
public final class CUDAContext {
    public let device: CUDADevice
    /// The PTX the kernels compiled to.
    public let ptx: String
    /// Each kernel's function and its parameters' slots (checked against each launch cheaply).
    private var kernels: [String: (function: UnsafeMutableRawPointer, slots: [ParameterSlot])] = [:]
    /// One launch's argument values (8 bytes each) and the pointers to them, reused by every
    /// launch (a context is used from one thread).
    private let argumentSlots = UnsafeMutableRawPointer.allocate(byteCount: 8 * 32, alignment: 8)
    private let argumentPointers = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
    /// Each kernel's parameter types, from the PTX (every launch is checked against them).
    public let signatures: [String: [String]]

    /// Where the PTX came from: the cache entry it was read from, or nil when NVRTC compiled it
    /// in this process.
    public let cachedPTX: String?
    /// Whether the kernels run from their machine code (a CUBIN NVRTC compiled for this GPU)
    /// rather than from the PTX: a driver older than NVRTC refuses its PTX.
    public let machineCode: Bool
    /// Seconds NVRTC took to compile the kernels in this process (0 when they all came from the
    /// cache).
    public let compileSeconds: Double

    /// Device `ordinal` (from ``CUDA/devices()``) with the kernels compiled by `nvrtc`, or their
    /// PTX from `cache` when an earlier run compiled the same source with the same NVRTC for
    /// the same architecture (see `KernelModule`: a driver older than NVRTC gets machine code).
    public init(ordinal: Int, nvrtc: NVRTC, cache: KernelCache? = .processDefault) throws {
        device = try CUDA.device(ordinal)
        try cudaCall { vae_cuda_use_device(Int32(ordinal), $0, $1) }
        let loaded = try KernelModule(computeCapability: device.computeCapability.major, device.computeCapability.minor, nvrtc: nvrtc, cache: cache)
        (ptx, cachedPTX, machineCode, compileSeconds) = (loaded.ptx, loaded.cachedPTX, loaded.machineCode, loaded.compileSeconds)
        signatures = CUDAKernels.parameters(inPTX: ptx)
        for name in CUDAKernels.names {
            var function: UnsafeMutableRawPointer?
            try cudaCall { vae_cuda_function(loaded.module, name, &function, $0, $1) }
            if let function { kernels[name] = (function, (signatures[name] ?? []).map(ParameterSlot.init)) }
        }
        for i in 0..<32 { argumentPointers[i] = argumentSlots + 8 * i }
    }

    deinit {
        argumentSlots.deallocate()
        argumentPointers.deallocate()
    }

    /// While set, ``launch(_:grid:block:shared:_:reaching:)`` appends each launch here instead of
    /// launching it (and `CUDAStep` its products): a step recorded for ``CUDAGraphs``.
    public var recording: [RecordedWork]?

    /// Launches kernel `name` on `grid` blocks of `block` threads with `shared` bytes of shared
    /// memory per block (queued; ``synchronize()`` or a download waits for it), or records it
    /// while ``recording`` is set.
    /// `reaching` says what a kernel that follows a table of addresses reads and writes through it
    /// (a recorded step's graph orders it by that instead of before and after everything).
    public func launch(_ name: String, grid: Int, block: Int = 256, shared: Int = 0, _ arguments: [KernelArgument], reaching: MemoryAccess? = nil) throws {
        guard let kernel = kernels[name] else { throw CUDAError("no kernel named \(name)") }
        // The argument list against the PTX's parameters (the full message only when they differ).
        if arguments.count != kernel.slots.count || arguments.count > 32 || !zip(arguments, kernel.slots).allSatisfy({ $0.slot == $1 }) {
            guard let parameters = signatures[name] else { throw CUDAError("no kernel named \(name)") }
            try CUDAKernels.check(arguments, against: parameters, kernel: name)
        }
        if recording != nil {
            recording!.append(.kernel(RecordedKernel(
                name: name, grid: max(grid, 1), block: block, shared: shared, values: arguments.map(\.slotValue),
                bytes: arguments.map(\.reach), declared: reaching)))
            return
        }
        // Each argument's value in its own 8-byte slot; cuLaunchKernel takes a pointer to each.
        for (i, argument) in arguments.enumerated() {
            let slot = argumentSlots + 8 * i
            switch argument {
            case .buffer(let b): slot.storeBytes(of: b?.address ?? 0, as: UInt64.self)
            case .address(let address, _): slot.storeBytes(of: address, as: UInt64.self)
            case .int32(let v): slot.storeBytes(of: v, as: Int32.self)
            case .int64(let v): slot.storeBytes(of: Int64(v), as: Int64.self)
            case .uint64(let v): slot.storeBytes(of: v, as: UInt64.self)
            case .float(let v): slot.storeBytes(of: v, as: Float.self)
            }
        }
        try cudaCall { vae_cuda_launch(kernel.function, UInt32(max(grid, 1)), UInt32(block), UInt32(shared), argumentPointers, $0, $1) }
    }

    /// The function of kernel `name` and its arguments' values in the launch slots' form, for a
    /// graph node.
    func node(_ kernel: RecordedKernel) throws -> (function: UnsafeMutableRawPointer, arguments: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        guard let function = kernels[kernel.name]?.function else { throw CUDAError("no kernel named \(kernel.name)") }
        for (i, value) in kernel.values.enumerated() { (argumentSlots + 8 * i).storeBytes(of: value, as: UInt64.self) }
        return (function, argumentPointers)
    }

    /// Launches a recorded kernel now.
    public func launch(_ kernel: RecordedKernel) throws {
        let (function, arguments) = try node(kernel)
        try cudaCall { vae_cuda_launch(function, UInt32(kernel.grid), UInt32(kernel.block), UInt32(kernel.shared), arguments, $0, $1) }
    }

    /// Blocks of `block` threads to cover `elements` with one thread each (at most 2²⁰ blocks:
    /// the kernels' grid-stride loops take the rest).
    public static func grid(for elements: Int, block: Int = 256) -> Int { max(1, min((elements + block - 1) / block, 1 << 20)) }

    /// Waits for every queued kernel; throws the first error one met.
    public func synchronize() throws { try cudaCall { vae_cuda_synchronize($0, $1) } }
}

/// A point in the GPU's queue of work, for timing it (`vae bench --device cuda`): record it
/// after some work, and the time between two recorded events is the device's, not the host's.
public final class CUDAEvent {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        var event: UnsafeMutableRawPointer?
        try cudaCall { vae_cuda_event_create(&event, $0, $1) }
        guard let event else { throw CUDAError("cuEventCreate gave no event") }
        handle = event
    }

    deinit { vae_cuda_event_destroy(handle) }

    /// Marks the point after the work queued so far.
    public func record() throws { try cudaCall { vae_cuda_event_record(handle, $0, $1) } }

    /// Milliseconds of device time from `start` to this event (waits until this one is reached).
    public func milliseconds(since start: CUDAEvent) throws -> Double {
        var milliseconds: Float = 0
        try cudaCall { vae_cuda_event_elapsed(&milliseconds, start.handle, handle, $0, $1) }
        return Double(milliseconds)
    }
}

extension CUDAContext {
    /// Free and total bytes of this GPU's memory.
    public func memory() throws -> (free: Int, total: Int) {
        var free = 0, total = 0
        try cudaCall { vae_cuda_memory(&free, &total, $0, $1) }
        return (free, total)
    }

    /// The GPU's FP32 peak in GFLOP/s — multiprocessors × FP32 lanes per multiprocessor (by
    /// compute capability: 64 on 7.x and 8.0, 128 on 8.6 and later) × 2 (an FMA) × the clock
    /// the driver reports — or nil when the driver does not say its clock.
    public var fp32PeakGFLOPS: Double? {
        var kilohertz: Int32 = 0
        guard (try? cudaCall({ vae_cuda_attribute(Int32(device.ordinal), 13, &kilohertz, $0, $1) })) != nil, kilohertz > 0 else { return nil }
        let (major, minor) = (device.computeCapability.major, device.computeCapability.minor)
        let lanes = major > 8 || (major == 8 && minor >= 6) ? 128.0 : 64.0
        return Double(device.multiprocessors) * lanes * 2 * Double(kilohertz) / 1e6
    }
}
