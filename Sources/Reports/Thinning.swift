/// What keeps a long run's reports as cheap at epoch 3,000 as at epoch 10: curves drawn from a
/// bounded number of points, and pictures kept at spaced epochs.
public enum Thinning {
    /// Points per curve, at most.
    public static let maximumPoints = 400
    /// Epochs (columns) of a heat map, at most: a cell per latent dimension and column.
    public static let maximumHeatMapColumns = 100
    /// Epochs with pictures (TensorBoard's and the report's timelapse) over a whole run, about.
    public static let maximumPictureEpochs = 100

    /// At most `maximum` of the indices 0..<count, evenly spaced, the first and the last
    /// included: index ⌊i·(count − 1)/(maximum − 1)⌉ for i = 0 … maximum − 1, without repeats.
    public static func indices(count: Int, maximum: Int) -> [Int] {
        guard count > maximum else { return Array(0..<count) }
        guard maximum > 1 else { return count > 0 ? [count - 1] : [] }
        var picked: [Int] = []
        picked.reserveCapacity(maximum)
        for i in 0..<maximum {
            let index = Int((Double(i) * Double(count - 1) / Double(maximum - 1)).rounded())
            if picked.last != index { picked.append(index) }
        }
        return picked
    }

    /// Whether epoch `epoch` (from 1) of a run of `epochs` gets pictures: every epoch of a run of
    /// up to ``maximumPictureEpochs`` epochs; in a longer one the first, the last and every
    /// ⌈epochs / maximumPictureEpochs⌉-th.
    public static func hasPictures(epoch: Int, of epochs: Int) -> Bool {
        let stride = max(1, (epochs + maximumPictureEpochs - 1) / maximumPictureEpochs)
        return epoch == 1 || epoch >= epochs || epoch % stride == 0
    }
}
