/// The device memory one piece of a recorded step reads and writes: byte ranges of device
/// addresses, or everything (a piece whose reach cannot be told from its arguments, such as a
/// kernel that follows a table of pointers).
public struct MemoryAccess: Equatable, Sendable {
    public var reads: [Range<UInt64>]
    public var writes: [Range<UInt64>]
    /// Whether it may touch any memory: it waits for every earlier piece, and every later one
    /// waits for it.
    public var everything: Bool

    public init(reads: [Range<UInt64>] = [], writes: [Range<UInt64>] = [], everything: Bool = false) {
        self.reads = reads.filter { !$0.isEmpty }
        self.writes = writes.filter { !$0.isEmpty }
        self.everything = everything
    }

    /// `bytes` bytes from `address` (empty at the null address).
    public static func span(_ address: UInt64, bytes: Int) -> Range<UInt64> {
        address == 0 || bytes <= 0 ? 0..<0 : address..<(address + UInt64(bytes))
    }

    /// The bytes of a row-major matrix of `rows` × `columns` floats with leading dimension
    /// `ld`, and `batches` of them `stride` floats apart: from its first float to one past its
    /// last, the gaps between rows included.
    public static func matrix(_ address: UInt64, rows: Int, columns: Int, ld: Int, batches: Int = 1, stride: Int = 0) -> Range<UInt64> {
        guard rows > 0, columns > 0, batches > 0 else { return 0..<0 }
        return span(address, bytes: 4 * ((batches - 1) * stride + (rows - 1) * ld + columns))
    }

    /// Whether the two must run in their recorded order: one writes what the other reads or
    /// writes (read after write, write after read, write after write), or either may touch
    /// everything. Two reads of the same memory do not order them.
    public func conflicts(with other: MemoryAccess) -> Bool {
        if everything || other.everything { return true }
        func overlap(_ a: [Range<UInt64>], _ b: [Range<UInt64>]) -> Bool { a.contains { x in b.contains { x.overlaps($0) } } }
        return overlap(writes, other.writes) || overlap(writes, other.reads) || overlap(reads, other.writes)
    }
}

/// A recorded step as a graph of dependencies instead of a chain: each piece waits only for the
/// earlier pieces whose memory it reads or overwrites (``MemoryAccess/conflicts(with:)``), so
/// independent work — a layer's weight-gradient product beside the chain of input gradients, the
/// batch's gather beside the draw of ε — may run side by side on the GPU. Every pair of pieces
/// that touch the same memory keeps its recorded order, so each piece reads exactly what it read
/// in the chain: the same numbers, whatever the GPU overlaps.
///
/// A library call runs in a scratch workspace: two that run at once need two. Each piece that
/// uses one names its pool (`workspaceUser`: cuBLAS's, cuDNN's) and is given one of that pool's
/// `workspaces[pool]` buffers: one whose last user the piece already waits for when there is one
/// (no new edge), else the one whose last user came first, which the piece then waits for.
public struct StepDependencies: Equatable, Sendable {
    /// For each piece, the earlier pieces it waits for (none implied by the others: the
    /// transitive reduction), in increasing order.
    public let dependencies: [[Int]]
    /// For each piece, the workspace of its pool it runs in (nil: it uses none).
    public let workspace: [Int?]
    /// The pieces on the longest chain of dependencies: the step's length if every piece took
    /// the same time and the GPU ran every ready piece at once (the count, for a chain).
    public let longestPath: Int

    public init(_ accesses: [MemoryAccess], workspaceUser: [Int?], workspaces: [Int]) {
        precondition(accesses.count == workspaceUser.count && workspaces.allSatisfy { $0 >= 1 })
        precondition(workspaceUser.allSatisfy { $0.map { $0 >= 0 && $0 < workspaces.count } ?? true }, "a workspace pool that is not there")
        let n = accesses.count
        let words = (n + 63) / 64
        // ancestors[i]: every piece i waits for, directly or not (a bit set).
        var ancestors = [[UInt64]](repeating: [UInt64](repeating: 0, count: words), count: n)
        var dependencies = [[Int]](repeating: [], count: n)
        var workspace = [Int?](repeating: nil, count: n)
        var lastUser = workspaces.map { [Int?](repeating: nil, count: $0) }
        var depth = [Int](repeating: 1, count: n)
        func isAncestor(_ j: Int, of set: [UInt64]) -> Bool { set[j / 64] & (1 << UInt64(j % 64)) != 0 }
        for i in 0..<n {
            var candidates = (0..<i).filter { accesses[i].conflicts(with: accesses[$0]) }
            if let pool = workspaceUser[i] {
                var reached = [UInt64](repeating: 0, count: words)
                for j in candidates {
                    for w in 0..<words { reached[w] |= ancestors[j][w] }
                    reached[j / 64] |= 1 << UInt64(j % 64)
                }
                let users = lastUser[pool]
                let free = users.indices.first { s in users[s].map { isAncestor($0, of: reached) } ?? true }
                let chosen = free ?? users.indices.min { users[$0]! < users[$1]! }!
                if free == nil { candidates.append(users[chosen]!) }
                workspace[i] = chosen
                lastUser[pool][chosen] = i
            }
            // Keep a candidate unless a later kept one already waits for it.
            var covered = [UInt64](repeating: 0, count: words)
            var kept: [Int] = []
            for j in Set(candidates).sorted(by: >) where !isAncestor(j, of: covered) {
                kept.append(j)
                for w in 0..<words { covered[w] |= ancestors[j][w] }
                covered[j / 64] |= 1 << UInt64(j % 64)
            }
            ancestors[i] = covered
            dependencies[i] = kept.sorted()
            depth[i] = 1 + (kept.map { depth[$0] }.max() ?? 0)
        }
        self.dependencies = dependencies
        self.workspace = workspace
        longestPath = depth.max() ?? 0
    }

    /// A chain: each piece after the one before it, every library call in its pool's workspace 0.
    public static func chain(count: Int, workspaceUser: [Int?]) -> StepDependencies {
        StepDependencies(dependencies: (0..<count).map { $0 == 0 ? [] : [$0 - 1] }, workspace: workspaceUser.map { $0.map { _ in 0 } }, longestPath: count)
    }

    private init(dependencies: [[Int]], workspace: [Int?], longestPath: Int) {
        (self.dependencies, self.workspace, self.longestPath) = (dependencies, workspace, longestPath)
    }
}
