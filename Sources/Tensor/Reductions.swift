/// Reductions and simple whole-tensor arithmetic, written as plain loops that vectorise.
extension Tensor {
    /// Σ of all elements, accumulated in Double.
    public func sum() -> Double {
        var s = 0.0
        let p = data
        for i in 0..<count { s += Double(p[i]) }
        return s
    }

    /// Largest |element| (0 for an empty tensor).
    public func maxAbs() -> Float {
        var m: Float = 0
        let p = data
        for i in 0..<count { m = max(m, abs(p[i])) }
        return m
    }

    /// True when every element is finite.
    public func allFinite() -> Bool {
        var bad = 0
        let p = data
        for i in 0..<count where !p[i].isFinite { bad += 1 }
        return bad == 0
    }

    /// `self += α · x`.
    public func add(_ x: Tensor, scaledBy alpha: Float = 1) {
        precondition(x.count == count, "add \(x.shape) to \(shape)")
        let (p, q) = (data, x.data)
        for i in 0..<count { p[i] += alpha * q[i] }
    }

    /// `self *= α`.
    public func scale(by alpha: Float) {
        let p = data
        for i in 0..<count { p[i] *= alpha }
    }

    /// Writes the column sums of `self` viewed as `[rows, rowSize]` into `out` (`rowSize` elements),
    /// adding to what `out` holds when `accumulate` is true.
    public func sumRows(into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let (r, n, p) = (rows, rowSize, data)
        if !accumulate { out.initialize(repeating: 0, count: n) }
        for i in 0..<r {
            let row = p + i * n
            for j in 0..<n { out[j] += row[j] }
        }
    }
}
