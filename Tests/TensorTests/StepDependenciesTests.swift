import Testing
@testable import Tensor

/// Byte ranges of a made-up address space, 256 bytes per named buffer.
private func buffer(_ index: Int) -> Range<UInt64> { UInt64(4096 + 256 * index)..<UInt64(4096 + 256 * index + 256) }

@Test func accessesConflictOnlyWhereOneWritesWhatTheOtherTouches() {
    let a = buffer(0), b = buffer(1)
    let readsA = MemoryAccess(reads: [a]), writesA = MemoryAccess(writes: [a]), writesB = MemoryAccess(writes: [b])
    #expect(writesA.conflicts(with: readsA))  // read after write
    #expect(readsA.conflicts(with: writesA))  // write after read
    #expect(writesA.conflicts(with: writesA))  // write after write
    #expect(!readsA.conflicts(with: readsA))  // two reads
    #expect(!writesA.conflicts(with: writesB))  // touching ranges (a ends where b starts)
    #expect(!writesA.conflicts(with: MemoryAccess(reads: [b])))
    #expect(MemoryAccess(writes: [a.lowerBound + 8..<b.lowerBound + 8]).conflicts(with: MemoryAccess(reads: [b])))  // a partial overlap
    #expect(MemoryAccess(everything: true).conflicts(with: MemoryAccess()))
    #expect(MemoryAccess().conflicts(with: MemoryAccess(everything: true)))
    // The null address and empty ranges touch nothing.
    #expect(MemoryAccess.span(0, bytes: 64).isEmpty && MemoryAccess.span(64, bytes: 0).isEmpty)
    #expect(!MemoryAccess(writes: [MemoryAccess.span(0, bytes: 64)]).conflicts(with: MemoryAccess(reads: [0..<128])))
}

@Test func aMatrixSpansFromItsFirstToPastItsLastFloat() {
    // 3 rows of 2 floats, rows 5 floats apart: floats 0, 1, 5, 6, 10, 11 → 12 floats.
    #expect(MemoryAccess.matrix(1000, rows: 3, columns: 2, ld: 5) == 1000..<1048)
    // Two of them 20 floats apart: up to float 20 + 11.
    #expect(MemoryAccess.matrix(1000, rows: 3, columns: 2, ld: 5, batches: 2, stride: 20) == 1000..<1128)
    #expect(MemoryAccess.matrix(1000, rows: 0, columns: 2, ld: 5).isEmpty)
}

/// A two-layer network's step, as recorded: x → h → y, the loss gradient g, the weight
/// gradients and the input gradient, then the update.
private let step: [MemoryAccess] = {
    let (x, w1, h, w2, y, g, dw2, dh, dw1) = (buffer(0), buffer(1), buffer(2), buffer(3), buffer(4), buffer(5), buffer(6), buffer(7), buffer(8))
    return [
        MemoryAccess(writes: [x]),  // 0 gather
        MemoryAccess(reads: [x, w1], writes: [h]),  // 1 h = x W1
        MemoryAccess(reads: [h, w2], writes: [y]),  // 2 y = h W2
        MemoryAccess(reads: [y, x], writes: [g]),  // 3 loss and its gradient
        MemoryAccess(reads: [g, h], writes: [dw2]),  // 4 ∂W2 = gᵀ h
        MemoryAccess(reads: [g, w2], writes: [dh]),  // 5 ∂h = g W2
        MemoryAccess(reads: [dh, x], writes: [dw1]),  // 6 ∂W1 = ∂hᵀ x
        MemoryAccess(reads: [dw1, dw2], writes: [w1, w2]),  // 7 the update (after 5 read W2)
    ]
}()
private let products: [Int?] = [nil, 0, 0, nil, 0, 0, 0, nil]

@Test func aStepsPiecesWaitOnlyForThoseWhoseMemoryTheyShare() {
    let plan = StepDependencies(step, workspaceUser: products, workspaces: [2])
    // ∂W2 and ∂h both wait for the loss alone: they may run at once; 6 needs 0's x, but through 5
    // already; the update's overwrite of W2 waits for 5's read, implied by 6.
    #expect(plan.dependencies == [[], [0], [1], [2], [3], [3], [5], [4, 6]])
    #expect(plan.longestPath == 7)
    // ∂W2 and ∂h in different workspaces; 6 in ∂h's (it waits for it anyway).
    #expect(plan.workspace == [nil, 0, 0, nil, 0, 1, 1, nil])

    // One workspace: ∂h must wait for ∂W2, whose workspace it takes over.
    let one = StepDependencies(step, workspaceUser: products, workspaces: [1])
    #expect(one.dependencies == [[], [0], [1], [2], [3], [4], [5], [6]])
    #expect(one.longestPath == 8)
    #expect(one.workspace == [nil, 0, 0, nil, 0, 0, 0, nil])

    let chain = StepDependencies.chain(count: 8, workspaceUser: products)
    #expect(chain.dependencies == [[], [0], [1], [2], [3], [4], [5], [6]] && chain.longestPath == 8)
}

@Test func eachPoolHandsOnItsOwnWorkspaces() {
    // ∂W2 a cuBLAS product, ∂h a cuDNN convolution, each pool with one workspace: they need not
    // wait for each other; two cuDNN calls with one workspace must.
    var pools = products
    pools[5] = 1
    let mixed = StepDependencies(step, workspaceUser: pools, workspaces: [1, 1])
    #expect(mixed.dependencies[5] == [3] && mixed.workspace[5] == 0)
    pools[4] = 1
    let both = StepDependencies(step, workspaceUser: pools, workspaces: [1, 1])
    #expect(both.dependencies[5] == [4])
    #expect(StepDependencies(step, workspaceUser: pools, workspaces: [1, 2]).dependencies[5] == [3])
    #expect(StepDependencies.chain(count: 8, workspaceUser: pools).workspace == [nil, 0, 0, nil, 0, 0, 0, nil])
}

@Test func aPieceThatMayTouchAnythingWaitsForAllAndAllWaitForIt() {
    var accesses = step
    accesses.insert(MemoryAccess(everything: true), at: 5)  // before ∂h, after ∂W2
    let plan = StepDependencies(accesses, workspaceUser: accesses.map { _ in nil }, workspaces: [1])
    #expect(plan.dependencies[5] == [4])  // 4 waits for everything before it already
    #expect(plan.dependencies[6] == [5] && plan.dependencies[8] == [7])
}

/// Random steps: every two pieces that conflict, and every two in the same workspace, are
/// ordered (one reaches the other through the dependencies), and no dependency is implied by the
/// others — checked against the transitive closure computed naively.
@Test(arguments: 0..<40)
func randomStepsKeepEveryConflictInOrderWithNoRedundantEdge(seed: Int) {
    var generator = RandomGenerator(seed: UInt64(seed) &+ 99)
    let count = 2 + Int(generator.next() % 40), buffers = 1 + Int(generator.next() % 12)
    func some() -> [Range<UInt64>] { (0..<Int(generator.next() % 3)).map { _ in buffer(Int(generator.next() % UInt64(buffers))) } }
    let accesses = (0..<count).map { _ in MemoryAccess(reads: some(), writes: some(), everything: generator.next() % 23 == 0) }
    // No workspace, or one of two pools (of 1–3 workspaces each).
    let users = (0..<count).map { _ -> Int? in let p = Int(generator.next() % 3); return p == 2 ? nil : p }
    let workspaces = [1 + Int(generator.next() % 3), 1 + Int(generator.next() % 3)]
    let plan = StepDependencies(accesses, workspaceUser: users, workspaces: workspaces)
    // reach[j][i]: j waits for i, directly or not.
    var reach = [[Bool]](repeating: [Bool](repeating: false, count: count), count: count)
    for j in 0..<count {
        for i in plan.dependencies[j] {
            #expect(i < j)
            reach[j][i] = true
            for k in 0..<count where reach[i][k] { reach[j][k] = true }
        }
    }
    var longest = [Int](repeating: 1, count: count)
    for j in 0..<count {
        longest[j] = 1 + (plan.dependencies[j].map { longest[$0] }.max() ?? 0)
        for i in 0..<j {
            if accesses[i].conflicts(with: accesses[j]) { #expect(reach[j][i], "\(j) does not wait for \(i), whose memory it shares") }
            if let a = plan.workspace[i], let b = plan.workspace[j], a == b, users[i] == users[j] {
                #expect(reach[j][i], "\(j) shares workspace \(a) of pool \(users[j]!) with \(i)")
            }
        }
        #expect((plan.workspace[j] != nil) == (users[j] != nil))
        if let pool = users[j] { #expect(plan.workspace[j]! < workspaces[pool]) }
        for i in plan.dependencies[j] {
            let others = plan.dependencies[j].filter { $0 != i }
            #expect(!others.contains { reach[$0][i] }, "\(j) waits for \(i) through another dependency already")
            // Each edge has a reason: shared memory, or a workspace handed on.
            #expect(accesses[i].conflicts(with: accesses[j]) || (users[i] != nil && users[i] == users[j] && plan.workspace[i] == plan.workspace[j]))
        }
    }
    #expect(plan.longestPath == longest.max())
}

@Test func eachKernelsPointersAreReadOrWrittenAsItsSourceDeclaresThem() {
    let uses = CUDAKernels.parameterUses
    #expect(Set(uses.keys) == Set(CUDAKernels.names))
    #expect(uses["vae_add_bias"] == [.writes, .reads, nil, nil, nil, nil])
    #expect(uses["vae_sum_slices"] == [.reads, nil, nil, .writes])
    #expect(uses["vae_transpose_filters"] == [.anything, nil, nil, nil])
    #expect(uses["vae_gather"] == [.reads, .reads, .reads, nil, nil, nil, nil, nil, nil, .writes])
}

@Test func aRecordedKernelTouchesTheBuffersItIsPassed() {
    // vae_add_bias(y, bias, rows, cols, activation, slope): y written, bias read.
    let kernel = RecordedKernel(name: "vae_add_bias", grid: 1, block: 32, shared: 0, values: [4096, 8192, 2, 3, 0, 0], bytes: [24, 12, 0, 0, 0, 0])
    #expect(kernel.access == MemoryAccess(reads: [8192..<8204], writes: [4096..<4120]))
    // A null pointer touches nothing; a pointer passed as a bare address (no size) anything.
    let null = RecordedKernel(name: "vae_add_bias", grid: 1, block: 32, shared: 0, values: [4096, 0, 2, 3, 0, 0], bytes: [24, 0, 0, 0, 0, 0])
    #expect(null.access == MemoryAccess(writes: [4096..<4120]))
    let bare = RecordedKernel(name: "vae_add_bias", grid: 1, block: 32, shared: 0, values: [4096, 8192, 2, 3, 0, 0], bytes: [24, 0, 0, 0, 0, 0])
    #expect(bare.access.everything)
    // The same kernel on other buffers is another graph node's shape; other values are not.
    #expect(!kernel.hasShape(of: null) && !kernel.hasShape(of: bare))
    let otherRows = RecordedKernel(name: "vae_add_bias", grid: 1, block: 32, shared: 0, values: [4096, 8192, 1, 3, 0, 0], bytes: [24, 12, 0, 0, 0, 0])
    #expect(kernel.hasShape(of: otherRows))
    let moved = RecordedKernel(name: "vae_add_bias", grid: 1, block: 32, shared: 0, values: [4096, 9000, 2, 3, 0, 0], bytes: [24, 12, 0, 0, 0, 0])
    #expect(!kernel.hasShape(of: moved))
    // A kernel that follows a table of addresses reaches anything, unless its launch declared what.
    let table = RecordedKernel(name: "vae_transpose_filters", grid: 1, block: 32, shared: 0, values: [4096, 2, 8, 0], bytes: [64, 0, 0, 0])
    #expect(table.access.everything)
    let declared = MemoryAccess(reads: [100..<200], writes: [300..<400])
    let told = RecordedKernel(name: "vae_transpose_filters", grid: 1, block: 32, shared: 0, values: [4096, 2, 8, 0], bytes: [64, 0, 0, 0], declared: declared)
    #expect(told.access == declared && !told.hasShape(of: table))
}

@Test func aRecordedProductTouchesItsOperandsAndItsEpiloguesVectors() {
    // C[2×3] = A[2×4] · B[4×3], rows of A 6 floats apart, of B 5, of C 7.
    func product(_ epilogue: ProductEpilogue?, transposeA: Bool = false, transposeB: Bool = false) -> RecordedProduct {
        RecordedProduct(
            transposeA: transposeA, transposeB: transposeB, m: 2, n: 3, k: 4, a: 1000, lda: 6, b: 2000, ldb: 5, c: 3000, ldc: 7, precision: .fp32,
            epilogue: epilogue)
    }
    let a = 1000..<UInt64(1000 + 4 * (6 + 4)), b = 2000..<UInt64(2000 + 4 * (3 * 5 + 3)), c = 3000..<UInt64(3000 + 4 * (7 + 3))
    #expect(product(nil).access == MemoryAccess(reads: [a, b], writes: [c]))
    // Aᵀ stored [4×2] (lda 6): 3 rows of 6 and 2; Bᵀ stored [3×4] (ldb 5): 2 rows of 5 and 4.
    #expect(product(nil, transposeA: true, transposeB: true).access
        == MemoryAccess(reads: [1000..<UInt64(1000 + 4 * (3 * 6 + 2)), 2000..<UInt64(2000 + 4 * (2 * 5 + 4))], writes: [c]))
    #expect(product(.bias(address: 5000, relu: true)).access == MemoryAccess(reads: [a, b, 5000..<5012], writes: [c]))  // n biases
    #expect(product(.rowSumsOfA(address: 5000)).access == MemoryAccess(reads: [a, b], writes: [c, 5000..<5008]))  // m sums
    // The bit mask: m rows of 128 bits.
    #expect(product(.biasReLUMask(address: 5000, mask: 6144, maskStride: 128)).access
        == MemoryAccess(reads: [a, b, 5000..<5012], writes: [c, 6144..<6176]))
    #expect(product(.reluGradient(address: 5000, mask: 6144, maskStride: 128)).access
        == MemoryAccess(reads: [a, b, 6144..<6176], writes: [c, 5000..<5012]))
}
