import Foundation
import Tensor
import Testing

@Test(arguments: [1, 2, 3])
func everyPartRunsOncePerRunAndItsWritesAreVisible(count: Int) {
    let pool = WorkerPool(count: count)
    let slots = UnsafeMutableBufferPointer<Int>.allocate(capacity: count * 16)
    defer { slots.deallocate() }
    slots.initialize(repeating: 0)
    for round in 1...2000 {
        pool.run { part in slots[part * 16] += round }
        for part in 0..<count { #expect(slots[part * 16] == round * (round + 1) / 2) }
        if slots[0] != round * (round + 1) / 2 { break }
    }
}

@Test func parkedThreadsWakeForTheNextTask() {
    // A spin time of zero makes helpers park at once; sleeping between runs parks them for sure.
    let pool = WorkerPool(count: 3, spinSeconds: 0)
    var results = [Int](repeating: 0, count: 3)
    results.withUnsafeMutableBufferPointer { out in
        for round in 1...20 {
            if round % 4 == 0 { usleep(2000) }
            pool.run { part in out[part] = round * 10 + part }
            #expect(Array(out) == [round * 10, round * 10 + 1, round * 10 + 2])
        }
    }
}

@Test func poolsShutDownWhenReleased() {
    // Creating and dropping many pools must neither hang nor leave threads running tasks.
    for _ in 0..<50 {
        let pool = WorkerPool(count: 2)
        let box = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        box.initialize(repeating: 0, count: 2)
        pool.run { box[$0] = 1 }
        #expect(box[0] == 1 && box[1] == 1)
        box.deallocate()
    }
}

/// Each rank's (or worker's) rows of a batch, `Parallel.slice`: disjoint, in order, covering
/// every row once, for any number of parts (including more parts than rows).
@Test func slicesCoverEveryRowOnce() {
    for rows in [0, 1, 2, 7, 16, 128, 129] {
        for parts in 1...9 {
            let slices = (0..<parts).map { Parallel.slice($0, of: parts, count: rows) }
            #expect(slices.flatMap { Array($0) } == Array(0..<rows), "\(rows) rows in \(parts) parts")
        }
    }
}
