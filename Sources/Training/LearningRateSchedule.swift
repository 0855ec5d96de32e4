import Foundation

/// How the learning rate moves during a run. η is the configured base rate, e the epoch in
/// progress (from 0), s the optimiser step about to be taken (from 0), T the run's total steps:
///
/// - `constant`: η.
/// - `step`: η · γ^(number of milestones m ≤ e) — the rate drops by γ once epoch m is done
///   (PyTorch's `MultiStepLR`, milestones counted in finished epochs).
/// - `cosine`: η_min + (η − η_min) · ½ (1 + cos(π s / T)), per step (`CosineAnnealingLR` over the run).
/// - `plateau`: η · f^r, where r counts the reductions so far: one reduction whenever more than
///   `patience` epochs in a row fail to beat the best validation −ELBO; the count restarts after
///   a reduction or an improvement (`ReduceLROnPlateau`, mode min, threshold 0, no cooldown);
///   never below η_min.
/// - `iwae`: Burda et al. (2015): stage i = 1 … 8 lasts 3^(i−1) epochs at
///   10⁻⁴ · round(10^(1 − (i−1)/7), 1) · (η / 10⁻³), i.e. 1e-3, 7.2e-4, …, 1e-4 over 3,280 epochs
///   at the default η = 1e-3; after the last stage the rate stays at the last stage's.
///
/// `warmupSteps` W > 0 multiplies any of these by (s + 1) / W for s < W (linear warm-up).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case constant, step, cosine, plateau, iwae
    }

    public var kind: Kind
    /// `step`: epochs after which the rate is multiplied by `gamma`.
    public var milestones: [Int]
    /// `step`: the factor at each milestone.
    public var gamma: Double
    /// Linear warm-up over this many steps (0: none).
    public var warmupSteps: Int
    /// `cosine`, `plateau`: the lowest rate.
    public var minimum: Double
    /// `plateau`: a reduction comes when more than this many epochs in a row do not improve.
    public var patience: Int
    /// `plateau`: the factor of each reduction.
    public var factor: Double

    public init(
        _ kind: Kind = .constant, milestones: [Int] = [], gamma: Double = 0.1, warmupSteps: Int = 0, minimum: Double = 0,
        patience: Int = 2, factor: Double = 0.5
    ) {
        self.kind = kind
        self.milestones = milestones
        self.gamma = gamma
        self.warmupSteps = warmupSteps
        self.minimum = minimum
        self.patience = patience
        self.factor = factor
    }

    public func validate(hasValidation: Bool) throws {
        func fail(_ m: String) -> ConfigurationError { ConfigurationError(m) }
        guard warmupSteps >= 0 else { throw fail("--lr-warmup must be 0 or more steps") }
        guard minimum.isFinite && minimum >= 0 else { throw fail("--lr-min must be 0 or a positive number") }
        switch kind {
        case .step:
            guard !milestones.isEmpty, milestones.allSatisfy({ $0 >= 1 }), milestones == milestones.sorted() else {
                throw fail("--lr-schedule step needs --lr-milestones: increasing epoch numbers, e.g. 30,60")
            }
            guard gamma.isFinite && gamma > 0 && gamma <= 1 else { throw fail("--lr-gamma must be in (0, 1]") }
        case .plateau:
            guard hasValidation else { throw fail("--lr-schedule plateau watches the validation −ELBO: it needs --validation-split") }
            guard patience >= 1 else { throw fail("--plateau-patience must be at least 1 epoch") }
            guard factor.isFinite && factor > 0 && factor < 1 else { throw fail("--plateau-factor must be in (0, 1)") }
        case .constant, .cosine, .iwae:
            break
        }
        if kind != .step && !milestones.isEmpty { throw fail("--lr-milestones go with --lr-schedule step") }
    }

    /// The rate of step `step` (from 0) in epoch `epoch` (from 0), for base rate `base`, a run of
    /// `totalSteps` steps, after `reductions` plateau reductions.
    public func rate(base: Double, epoch: Int, step: Int, totalSteps: Int, reductions: Int = 0) -> Double {
        var rate: Double
        switch kind {
        case .constant:
            rate = base
        case .step:
            rate = base * pow(gamma, Double(milestones.reduce(0) { $1 <= epoch ? $0 + 1 : $0 }))
        case .cosine:
            let t = min(1, Double(step) / Double(max(totalSteps, 1)))
            rate = minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * t))
        case .plateau:
            rate = max(minimum, base * pow(factor, Double(reductions)))
        case .iwae:
            rate = Self.iwaeRate(epoch: epoch) * base / 1e-3
        }
        if warmupSteps > 0 && step < warmupSteps { rate *= Double(step + 1) / Double(warmupSteps) }
        return rate
    }

    /// The stage (1 … 8) of Burda et al.'s schedule that epoch `epoch` (from 0) is in: stage i
    /// covers epochs Σ_{j<i} 3^(j−1) ..< Σ_{j≤i} 3^(j−1); past the 3,280 epochs, stage 8.
    public static func iwaeStage(epoch: Int) -> Int {
        var end = 0
        for i in 1...8 {
            end += Int(pow(3.0, Double(i - 1)))
            if epoch < end { return i }
        }
        return 8
    }

    /// The rate of the stage epoch `epoch` is in: 10⁻⁴ · round(10^(1 − (i−1)/7), 1).
    public static func iwaeRate(epoch: Int) -> Double {
        let i = Double(iwaeStage(epoch: epoch))
        return 1e-4 * (pow(10, 1 - (i - 1) / 7) * 10).rounded() / 10
    }

    /// One line naming the schedule.
    public var summary: String {
        var text: String
        switch kind {
        case .constant: text = "constant"
        case .step: text = "×\(gamma) after epochs \(milestones.map(String.init).joined(separator: ","))"
        case .cosine: text = "cosine to \(minimum)"
        case .plateau: text = "×\(factor) after \(patience) epochs without a better validation −ELBO"
        case .iwae: text = "Burda et al.'s 8 stages of 3^(i−1) epochs"
        }
        if warmupSteps > 0 { text += ", warm-up over \(warmupSteps) steps" }
        return text
    }
}
