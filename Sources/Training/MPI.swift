#if canImport(Glibc)
import Glibc
#endif
import Tensor

/// Open MPI, loaded when the process was started by `mpirun` (so that a plain `vae` needs no MPI
/// library): the ranks of the job, one in-place `MPI_Allreduce` for sums (or `MPI_Iallreduce`s
/// started during the backward pass, then `MPI_Waitall`), `MPI_Bcast` from a
/// root, and for the sharded update `MPI_Reduce_scatter` and an in-place `MPI_Allgatherv`. Open MPI's handles (`MPI_COMM_WORLD`, `MPI_FLOAT`, `MPI_SUM`) are the addresses of its
/// predefined objects (`ompi_mpi_comm_world`, …), found with `dlsym`; `MPI_IN_PLACE` is 1.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    private typealias InitFunction = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32
    private typealias CommQuery = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Int32
    private typealias AllreduceFunction = @convention(c) (
        UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32
    private typealias BcastFunction = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias ReduceScatterFunction = @convention(c) (
        UnsafeRawPointer?, UnsafeMutableRawPointer?, UnsafePointer<Int32>?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32
    private typealias AllgathervFunction = @convention(c) (
        UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafePointer<Int32>?, UnsafePointer<Int32>?,
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32
    private typealias IallreduceFunction = @convention(c) (
        UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> Int32
    private typealias TestallFunction = @convention(c) (Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32
    private typealias WaitallFunction = @convention(c) (Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?) -> Int32
    private typealias FinalizeFunction = @convention(c) () -> Int32
    private typealias AbortFunction = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32

    private let allreduce: AllreduceFunction
    private let bcast: BcastFunction
    private let reduceScatter: ReduceScatterFunction
    private let allgatherv: AllgathervFunction
    private let iallreduce: IallreduceFunction
    private let testall: TestallFunction
    private let waitall: WaitallFunction
    /// The requests of the sums started and not yet waited for (an `MPI_Request` is a pointer in
    /// Open MPI).
    private var requests: [UnsafeMutableRawPointer?] = []
    /// Where `MPI_Reduce_scatter` writes this rank's shard (MPI forbids it to overlap the input).
    private var shardScratch = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private let finalizeFunction: FinalizeFunction
    private let abortFunction: AbortFunction
    private let world, float, double, byte, sumOp: UnsafeMutableRawPointer
    private var finalized = false

    /// Whether this process was started by Open MPI's `mpirun` (it sets `OMPI_COMM_WORLD_SIZE`).
    public static var launchedByMPI: Bool { getenv("OMPI_COMM_WORLD_SIZE") != nil }

    /// Loads `libmpi.so.40` (Open MPI 4), initialises MPI and reads this rank and the job's size.
    public init() throws {
        guard let library = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL) ?? dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL) else {
            throw TrainingRunError("started by mpirun, but Open MPI's library (libmpi.so.40) cannot be loaded: \(String(cString: dlerror())); install openmpi-bin (scripts/setup.sh does)")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(library, name) else { throw TrainingRunError("Open MPI's library lacks \(name): is it Open MPI 4?") }
            return p
        }
        let initialize = unsafeBitCast(try symbol("MPI_Init"), to: InitFunction.self)
        let commRank = unsafeBitCast(try symbol("MPI_Comm_rank"), to: CommQuery.self)
        let commSize = unsafeBitCast(try symbol("MPI_Comm_size"), to: CommQuery.self)
        allreduce = unsafeBitCast(try symbol("MPI_Allreduce"), to: AllreduceFunction.self)
        bcast = unsafeBitCast(try symbol("MPI_Bcast"), to: BcastFunction.self)
        reduceScatter = unsafeBitCast(try symbol("MPI_Reduce_scatter"), to: ReduceScatterFunction.self)
        allgatherv = unsafeBitCast(try symbol("MPI_Allgatherv"), to: AllgathervFunction.self)
        iallreduce = unsafeBitCast(try symbol("MPI_Iallreduce"), to: IallreduceFunction.self)
        testall = unsafeBitCast(try symbol("MPI_Testall"), to: TestallFunction.self)
        waitall = unsafeBitCast(try symbol("MPI_Waitall"), to: WaitallFunction.self)
        finalizeFunction = unsafeBitCast(try symbol("MPI_Finalize"), to: FinalizeFunction.self)
        abortFunction = unsafeBitCast(try symbol("MPI_Abort"), to: AbortFunction.self)
        world = try symbol("ompi_mpi_comm_world")
        float = try symbol("ompi_mpi_float")
        double = try symbol("ompi_mpi_double")
        byte = try symbol("ompi_mpi_byte")
        sumOp = try symbol("ompi_mpi_op_sum")
        guard initialize(nil, nil) == 0 else { throw TrainingRunError("MPI_Init failed") }
        var r: Int32 = 0, n: Int32 = 0
        _ = commRank(world, &r)
        _ = commSize(world, &n)
        rank = Int(r)
        size = Int(n)
    }

    deinit {
        finalize()
        shardScratch.deallocate()
    }

    /// `MPI_IN_PLACE`.
    private static let inPlace = UnsafeRawPointer(bitPattern: 1)

    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        forEachChunk(values.count) { offset, count in
            _ = allreduce(Self.inPlace, values.baseAddress! + offset, Int32(count), float, sumOp, world)
        }
    }

    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {
        forEachChunk(values.count) { offset, count in
            _ = allreduce(Self.inPlace, values.baseAddress! + offset, Int32(count), double, sumOp, world)
        }
    }

    /// From `OMPI_COMM_WORLD_LOCAL_SIZE`, which `mpirun` sets.
    public var ranksOnThisHost: Int { getenv("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap { Int(String(cString: $0)) } ?? size }

    /// `MPI_Iallreduce` in place; the request is kept for ``waitForSums()``.
    public func startSum(_ values: UnsafeMutableBufferPointer<Float>) {
        forEachChunk(values.count) { offset, count in
            var request: UnsafeMutableRawPointer?
            _ = iallreduce(Self.inPlace, values.baseAddress! + offset, Int32(count), float, sumOp, world, &request)
            requests.append(request)
        }
    }

    /// `MPI_Testall` over the started sums (which is where Open MPI advances them).
    public func progressSums() {
        guard !requests.isEmpty else { return }
        var done: Int32 = 0
        requests.withUnsafeMutableBufferPointer { _ = testall(Int32($0.count), $0.baseAddress, &done, nil) }
    }

    /// `MPI_Waitall` over the started sums.
    public func waitForSums() {
        guard !requests.isEmpty else { return }
        requests.withUnsafeMutableBufferPointer { _ = waitall(Int32($0.count), $0.baseAddress, nil) }
        requests.removeAll(keepingCapacity: true)
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) {
        forEachChunk(bytes.count) { offset, count in
            _ = bcast(bytes.baseAddress! + offset, Int32(count), byte, Int32(root), world)
        }
    }

    /// `MPI_Reduce_scatter` into a scratch buffer, then this rank's shard copied into place.
    public func sumShard(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {
        precondition(shards.count == values.count && shards.counts.count == size, "shards of \(shards.count) for \(size) ranks, buffer of \(values.count)")
        let mine = shards.range(rank)
        if shardScratch.count < mine.count {
            shardScratch.deallocate()
            shardScratch = .allocate(capacity: mine.count)
        }
        let (counts, _) = int32(shards)
        _ = reduceScatter(values.baseAddress, shardScratch.baseAddress, counts, float, sumOp, world)
        (values.baseAddress! + mine.lowerBound).update(from: shardScratch.baseAddress!, count: mine.count)
    }

    /// `MPI_Allgatherv` in place: each rank's contribution already sits at its displacement.
    public func gatherShards(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {
        precondition(shards.count == values.count && shards.counts.count == size, "shards of \(shards.count) for \(size) ranks, buffer of \(values.count)")
        let (counts, offsets) = int32(shards)
        _ = allgatherv(Self.inPlace, 0, float, values.baseAddress, counts, offsets, float, world)
    }

    /// The last shards' counts and displacements as MPI's Int32s (kept: the training step's
    /// shards are the same every step, so converting them allocates nothing after the first).
    private var converted: (shards: Shards, counts: [Int32], offsets: [Int32])?

    private func int32(_ shards: Shards) -> (counts: [Int32], offsets: [Int32]) {
        if let converted, converted.shards == shards { return (converted.counts, converted.offsets) }
        precondition(shards.count <= Int(Int32.max), "\(shards.count) elements exceed MPI's 32-bit counts")
        let result = (shards.counts.map { Int32($0) }, shards.offsets.map { Int32($0) })
        converted = (shards, result.0, result.1)
        return result
    }

    /// MPI counts are Int32: buffers larger than that go in pieces (one call for any real model).
    private func forEachChunk(_ count: Int, _ body: (Int, Int) -> Void) {
        var offset = 0
        repeat {
            let n = min(count - offset, Int(Int32.max))
            body(offset, n)
            offset += n
        } while offset < count
    }

    /// Ends MPI for this process (after every rank's last collective call).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = finalizeFunction()
    }

    /// Ends the whole job at once (every rank), with exit code `code`.
    public func abort(_ code: Int32) -> Never {
        _ = abortFunction(world, code)
        exit(code)
    }
}
