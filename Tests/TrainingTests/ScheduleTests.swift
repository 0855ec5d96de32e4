import Foundation
import Testing
import Training

// Each schedule against its formula, written out here independently of the implementation.

@Test func constantAndStepSchedules() {
    let constant = LearningRateSchedule(.constant)
    for (epoch, step) in [(0, 0), (3, 40), (99, 12345)] {
        #expect(constant.rate(base: 2e-3, epoch: epoch, step: step, totalSteps: 100) == 2e-3)
    }
    // Milestones 2 and 5, γ = 0.5: epochs 0–1 at η, 2–4 at η/2, 5 on at η/4.
    let step = LearningRateSchedule(.step, milestones: [2, 5], gamma: 0.5)
    let expected: [Double] = [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    for (epoch, factor) in expected.enumerated() {
        #expect(abs(step.rate(base: 1e-3, epoch: epoch, step: epoch * 10, totalSteps: 80) - 1e-3 * factor) < 1e-15, "epoch \(epoch)")
    }
}

@Test func cosineScheduleFollowsTheHalfCosinePerStep() {
    let schedule = LearningRateSchedule(.cosine, minimum: 1e-5)
    let total = 200
    #expect(schedule.rate(base: 1e-3, epoch: 0, step: 0, totalSteps: total) == 1e-3)
    #expect(abs(schedule.rate(base: 1e-3, epoch: 5, step: 100, totalSteps: total) - (1e-5 + (1e-3 - 1e-5) / 2)) < 1e-15)
    #expect(abs(schedule.rate(base: 1e-3, epoch: 9, step: 200, totalSteps: total) - 1e-5) < 1e-15)
    for s in [17, 63, 151] {
        let formula = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + cos(Double.pi * Double(s) / Double(total)))
        #expect(abs(schedule.rate(base: 1e-3, epoch: s / 20, step: s, totalSteps: total) - formula) < 1e-15)
    }
}

@Test func warmupScalesTheFirstSteps() {
    let schedule = LearningRateSchedule(.step, milestones: [1], gamma: 0.1, warmupSteps: 4)
    let rates = (0..<6).map { schedule.rate(base: 1e-3, epoch: 0, step: $0, totalSteps: 100) }
    #expect(zip(rates, [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3]).allSatisfy { abs($0 - $1) < 1e-15 }, "\(rates)")
}

/// Burda et al. (2015): stage i = 1…8 lasts 3^(i−1) epochs at 1e-4 · round(10^(1 − (i−1)/7), 1).
@Test func iwaeScheduleStagesAndRates() {
    let rates = [1e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1e-4]
    let firstEpochs = [0, 1, 4, 13, 40, 121, 364, 1093]  // stage i starts after 1 + 3 + … + 3^(i−2) epochs
    let schedule = LearningRateSchedule(.iwae)
    for (i, start) in firstEpochs.enumerated() {
        let end = i + 1 < firstEpochs.count ? firstEpochs[i + 1] : 3280
        #expect(end - start == Int(pow(3.0, Double(i))))
        for epoch in [start, (start + end - 1) / 2, end - 1] {
            #expect(LearningRateSchedule.iwaeStage(epoch: epoch) == i + 1, "epoch \(epoch)")
            #expect(abs(schedule.rate(base: 1e-3, epoch: epoch, step: epoch * 3000, totalSteps: 1) - rates[i]) < 1e-12, "epoch \(epoch)")
        }
    }
    #expect(LearningRateSchedule.iwaeStage(epoch: 5000) == 8)
    // Another base rate scales every stage.
    #expect(abs(schedule.rate(base: 2e-3, epoch: 5, step: 0, totalSteps: 1) - 2 * 5.2e-4) < 1e-12)
}

/// ReduceLROnPlateau (mode min, threshold 0): a reduction once more than `patience` epochs in a
/// row fail to beat the best; the counter restarts after a reduction and after an improvement.
@Test func plateauReducesAfterPatienceEpochsWithoutImprovement() {
    var selection = SelectionState()
    let validation: [Double] = [10, 9, 9.5, 9.2, 9.1, 8, 8.5, 8.5, 8.5, 8.5, 8.5, 8.5, 8.5]
    // patience 2: bad epochs 3, 4, 5 (9.5, 9.2, 9.1) → one reduction at epoch 5; epoch 6 improves;
    // epochs 7–13 are bad: reductions at epochs 9 and 12.
    let expectedReductions = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3]
    let expectedBest = [true, true, false, false, false, true, false, false, false, false, false, false, false]
    for (k, value) in validation.enumerated() {
        let best = selection.record(validation: value, epoch: k + 1, plateauPatience: 2)
        #expect(best == expectedBest[k], "epoch \(k + 1)")
        #expect(selection.plateauReductions == expectedReductions[k], "epoch \(k + 1)")
    }
    #expect(selection.bestEpoch == 6 && selection.bestValidation == 8 && selection.epochsWithoutImprovement == 7)
    let schedule = LearningRateSchedule(.plateau, minimum: 2e-5, patience: 2, factor: 0.1)
    #expect(abs(schedule.rate(base: 1e-3, epoch: 0, step: 0, totalSteps: 1, reductions: 1) - 1e-4) < 1e-15)
    #expect(schedule.rate(base: 1e-3, epoch: 0, step: 0, totalSteps: 1, reductions: 3) == 2e-5)  // floored at the minimum
}

@Test func schedulesThatWatchValidationNeedIt() throws {
    var training = TrainingConfig(schedule: LearningRateSchedule(.plateau))
    #expect(throws: ConfigurationError("--lr-schedule plateau watches the validation −ELBO: it needs --validation-split")) { try training.validate() }
    training.validationSplit = 0.1
    try training.validate()
    training.earlyStopping = 3
    try training.validate()
    training.validationSplit = 0
    #expect(throws: ConfigurationError.self) { try training.validate() }
    let step = TrainingConfig(schedule: LearningRateSchedule(.step))
    #expect(throws: ConfigurationError("--lr-schedule step needs --lr-milestones: increasing epoch numbers, e.g. 30,60")) { try step.validate() }
}
