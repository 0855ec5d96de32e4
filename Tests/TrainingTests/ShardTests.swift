import Datasets
import Foundation
import NN
import Tensor
import Testing
@testable import Training
@testable import VAE

/// One rank of a job whose sums do nothing: each shard's own figures, to be added up by the test.
final class LoneRank: Communicator {
    let rank: Int, size: Int
    init(_ rank: Int, of size: Int) { (self.rank, self.size) = (rank, size) }
    func sum(_ values: UnsafeMutableBufferPointer<Float>) {}
    func sum(_ values: UnsafeMutableBufferPointer<Double>) {}
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) {}
    func sumShard(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
    func gatherShards(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
}

func randomImages(_ count: Int, seed: UInt64) -> ImageDataset {
    var rng = RandomGenerator(seed: seed)
    return ImageDataset(pixels: (0..<(count * 64)).map { _ in UInt8(rng.nextInt(below: 256)) }, labels: (0..<count).map { $0 % 3 }, shape: [1, 8, 8])
}

/// Image i's ε is keyed to (seed, i): its −ELBO is the same alone, in any batch, on any rank.
@Test func anImagesEvaluationDoesNotDependOnItsBatch() {
    var rng = RandomGenerator(seed: 4)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 3), rng: &rng)
    let data = randomImages(23, seed: 5)
    let whole = model.evaluate(data, seed: 9)
    // Reference: each image evaluated alone, as a batch of one, at its own index.
    var alone = LossBreakdown()
    for i in 0..<data.count {
        alone += model.evaluate(BatchLoader.evaluation(data.subset([i]), for: model).epoch(), seed: 9, firstIndex: i)
    }
    #expect(alone.images == 23 && whole.images == 23)
    #expect(abs(alone.reconstruction - whole.reconstruction) < 1e-6 * abs(whole.reconstruction))
    #expect(abs(alone.kl - whole.kl) < 1e-6 * abs(whole.kl))
    // Another seed draws other ε.
    #expect(model.evaluate(data, seed: 10).reconstruction != whole.reconstruction)
}

/// The ranks' shares are disjoint, cover the set once, and their figures add up to the whole's.
@Test(arguments: [1, 2, 3, 5])
func evaluationSplitAcrossRanksAddsUpToTheWhole(ranks: Int) throws {
    var rng = RandomGenerator(seed: 4)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 3), rng: &rng)
    let data = randomImages(23, seed: 6)
    let whole = model.evaluate(data, seed: RunSeeds.evaluation)
    let wholeLatent = model.latentStatistics(data)
    var total = LossBreakdown()
    var packed = [Double](repeating: 0, count: 3 * 3 + 1)
    var next = 0
    for r in 0..<ranks {
        let shard = DatasetShard(data, communicator: LoneRank(r, of: ranks))
        #expect(shard.firstIndex == next, "rank \(r) of \(ranks) starts at \(shard.firstIndex), not \(next)")
        #expect(shard.images.pixels == Array(data.pixels[(next * 64)..<((next + shard.images.count) * 64)]))
        next += shard.images.count
        total += try shard.evaluate(model)
        let sums = model.latentSums(BatchLoader.evaluation(shard.images, for: model).epoch()).packed
        for i in packed.indices { packed[i] += sums[i] }
    }
    #expect(next == data.count)
    #expect(total.images == whole.images)
    // The shares' products have fewer rows than the whole's, and a matrix product's float32
    // rounding may depend on its row count (OpenBLAS's AVX2 kernels: about 1e-8 relative here;
    // its AVX-512 ones: none); a wrongly keyed ε would move the figures by 1e-2 and more.
    let close = { (a: Double, b: Double) in abs(a - b) <= 1e-6 * max(abs(b), 1) }
    #expect(close(total.meanNegativeELBO, whole.meanNegativeELBO), "\(total.meanNegativeELBO) vs \(whole.meanNegativeELBO)")
    let latent = LatentSums(packed: packed).statistics
    #expect(latent.images == wholeLatent.images)
    for j in 0..<3 {
        #expect(close(latent.klPerDimension[j], wholeLatent.klPerDimension[j]))
        #expect(close(latent.meanVariance[j], wholeLatent.meanVariance[j]))
    }
}

/// Gathering a 64-bit value from every rank through a sum of doubles is exact.
@Test func gatherSendsEveryBitOfEachRanksValue() {
    let values: [UInt64] = [0, .max, 0x8000_0000_0000_0001, 0x1234_5678_9ABC_DEF0]
    // A job of one returns its value; the pieces' arithmetic is checked through a fake sum that
    // adds the other ranks' places as a real sum across ranks would.
    #expect(SingleProcess().gather(values[3]) == [values[3]])
    final class FourRanks: Communicator {
        let rank = 2, size = 4
        let others: [UInt64]
        init(_ others: [UInt64]) { self.others = others }
        func sum(_ v: UnsafeMutableBufferPointer<Float>) {}
        func sum(_ v: UnsafeMutableBufferPointer<Double>) {
            for r in 0..<4 where r != rank { for k in 0..<4 { v[4 * r + k] += Double((others[r] >> (16 * UInt64(k))) & 0xFFFF) } }
        }
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) {}
        func sumShard(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
        func gatherShards(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
    }
    #expect(FourRanks(values).gather(values[2]) == values)
}

/// When a job shards its update: auto from 4 ranks, always from 2, never; a process alone never.
@Test func theShardingPolicyDependsOnTheRanks() {
    #expect((1...8).map { ShardedUpdate.Policy.auto.shards(ranks: $0) } == [false, false, false, true, true, true, true, true])
    #expect((1...3).map { ShardedUpdate.Policy.always.shards(ranks: $0) } == [false, true, true])
    #expect((1...8).allSatisfy { !ShardedUpdate.Policy.never.shards(ranks: $0) })
}

/// Buckets cover the flat gradient once, the last parameters' first, each from a parameter's
/// start and at least the minimum (but the first parameter's); auto overlaps only across hosts.
@Test func gradientBucketsCoverTheGradientLastParametersFirst() {
    let sizes = [300, 3, 50, 2, 20, 1, 400, 4]
    let buckets = GradientBuckets(parameterSizes: sizes, minimum: 100).buckets
    // From the end: 4 + 400 = 404 (params 6–7), then 1 + 20 + 2 + 50 = 73 < 100, + 3 = 76, + 300 → params 0–5.
    #expect(buckets.map(\.firstParameter) == [6, 0])
    #expect(buckets.map(\.range) == [376..<780, 0..<376])
    let many = GradientBuckets(parameterSizes: sizes, minimum: 1).buckets
    #expect(many.map(\.firstParameter) == Array((0..<8).reversed()))
    #expect(many.reduce(0) { $0 + $1.range.count } == sizes.reduce(0, +))
    #expect(GradientBuckets.Policy.auto.overlaps(ranks: 4, ranksOnThisHost: 4) == false)
    #expect(GradientBuckets.Policy.auto.overlaps(ranks: 4, ranksOnThisHost: 2) == true)
    #expect(GradientBuckets.Policy.always.overlaps(ranks: 2, ranksOnThisHost: 2) == true)
    #expect(GradientBuckets.Policy.always.overlaps(ranks: 1, ranksOnThisHost: 1) == false)
    #expect(GradientBuckets.Policy.never.overlaps(ranks: 8, ranksOnThisHost: 1) == false)
}
