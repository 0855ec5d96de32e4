import Foundation

/// Geometry of the latent space: paths between codes, grids over the prior, projections.
public enum LatentSpace {
    /// (1 − t) a + t b.
    public static func lerp(_ a: [Float], _ b: [Float], _ t: Float) -> [Float] {
        zip(a, b).map { (1 - t) * $0 + t * $1 }
    }

    /// Spherical interpolation: along the great circle between a and b (with their lengths
    /// interpolated linearly), which keeps points at the typical radius of a Gaussian prior.
    /// Falls back to `lerp` when a and b are (anti)parallel or zero.
    public static func slerp(_ a: [Float], _ b: [Float], _ t: Float) -> [Float] {
        let na = Double(a.reduce(0) { $0 + $1 * $1 }).squareRoot(), nb = Double(b.reduce(0) { $0 + $1 * $1 }).squareRoot()
        guard na > 0, nb > 0 else { return lerp(a, b, t) }
        let cosine = max(-1, min(1, zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } / (na * nb)))
        let omega = acos(cosine)
        guard sin(omega) > 1e-6 else { return lerp(a, b, t) }
        let wa = sin((1 - Double(t)) * omega) / sin(omega), wb = sin(Double(t) * omega) / sin(omega)
        return zip(a, b).map { Float(wa * Double($0) + wb * Double($1)) }
    }

    /// Φ⁻¹(p), the standard normal quantile, for p in (0, 1): Newton's method on
    /// Φ(x) = ½ erfc(−x/√2), to double precision.
    public static func inverseNormalCDF(_ p: Double) -> Double {
        precondition(p > 0 && p < 1, "p must be in (0, 1)")
        // Start from a logistic approximation, then Newton steps x ← x − (Φ(x) − p)/φ(x).
        var x = log(p / (1 - p)) * 0.6266570686577501
        for _ in 0..<60 {
            let cdf = 0.5 * erfc(-x / 2.0.squareRoot())
            let density = exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
            guard density > 0 else { break }
            let step = (cdf - p) / density
            x -= max(-2, min(2, step))
            if abs(step) < 1e-14 * max(1, abs(x)) { break }
        }
        return x
    }

    /// The first `count` principal components of the rows of `points` (n × d): the mean, the
    /// unit directions by decreasing variance, and each direction's share of the total variance.
    /// Power iteration with deflation on the d × d covariance.
    public static func principalComponents(_ points: [[Double]], count: Int) -> (mean: [Double], directions: [[Double]], explained: [Double]) {
        let n = points.count, d = points.first?.count ?? 0
        precondition(n > 1 && d >= count, "need more points than one and at least \(count) dimensions")
        var mean = [Double](repeating: 0, count: d)
        for p in points { for j in 0..<d { mean[j] += p[j] / Double(n) } }
        var cov = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
        for p in points {
            for i in 0..<d { for j in 0..<d { cov[i][j] += (p[i] - mean[i]) * (p[j] - mean[j]) / Double(n - 1) } }
        }
        let total = (0..<d).reduce(0) { $0 + cov[$1][$1] }
        var directions: [[Double]] = [], explained: [Double] = []
        for c in 0..<count {
            var v = (0..<d).map { 1 + Double(($0 + c) % 3) * 0.1 }  // generic start
            var eigenvalue = 0.0
            for _ in 0..<1000 {
                var w = (0..<d).map { i in (0..<d).reduce(0) { $0 + cov[i][$1] * v[$1] } }
                let norm = w.reduce(0) { $0 + $1 * $1 }.squareRoot()
                guard norm > 0 else { break }
                w = w.map { $0 / norm }
                let change = zip(w, v).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                v = w
                eigenvalue = norm
                if change < 1e-20 { break }
            }
            // A fixed sign: the largest entry positive.
            if let big = v.indices.max(by: { abs(v[$0]) < abs(v[$1]) }), v[big] < 0 { v = v.map { -$0 } }
            directions.append(v)
            explained.append(total > 0 ? eigenvalue / total : 0)
            for i in 0..<d { for j in 0..<d { cov[i][j] -= eigenvalue * v[i] * v[j] } }
        }
        return (mean, directions, explained)
    }

    /// Points `points` (n × d) placed in a plane for a plot: as they are for d ≤ 2 (y = 0 when
    /// d = 1), otherwise projected on their first two principal components; with the axes' names.
    public static func plane(_ points: [[Double]]) -> (xy: [(x: Double, y: Double)], axes: (x: String, y: String)) {
        let d = points.first?.count ?? 0
        if d <= 2 { return (points.map { ($0[0], d == 2 ? $0[1] : 0) }, ("z₁", d == 2 ? "z₂" : "")) }
        let pca = principalComponents(points, count: 2)
        let xy = points.map { p -> (x: Double, y: Double) in
            let centred = zip(p, pca.mean).map { $0 - $1 }
            func along(_ v: [Double]) -> Double { zip(centred, v).reduce(0) { $0 + $1.0 * $1.1 } }
            return (along(pca.directions[0]), along(pca.directions[1]))
        }
        func axis(_ k: Int) -> String { "principal component \(k + 1) (\(Int((100 * pca.explained[k]).rounded()))% of variance)" }
        return (xy, (axis(0), axis(1)))
    }
}
