import Foundation

/// A scatter plot of labelled 2-D points with axes, ticks, a title and a legend.
public enum ScatterPlot {
    public struct Point: Sendable {
        public var x, y: Double
        public var label: Int
        public init(x: Double, y: Double, label: Int) {
            self.x = x
            self.y = y
            self.label = label
        }
    }

    public static func render(
        _ points: [Point], labelNames: [String], title: String, xLabel: String, yLabel: String,
        width: Int = 900, height: Int = 700
    ) throws -> Image {
        let text = try TextRenderer(pixelSize: 14)
        let titleText = try TextRenderer(pixelSize: 17)
        var canvas = Canvas(width: width, height: height)
        let legendWidth = 40 + (labelNames.map { text.width(of: $0) }.max() ?? 0)
        let plot = (left: 70, top: 40, right: width - legendWidth - 30, bottom: height - 60)
        let xs = points.map(\.x), ys = points.map(\.y)
        let (xMin, xMax) = paddedRange(xs), (yMin, yMax) = paddedRange(ys)
        func px(_ x: Double) -> Double { Double(plot.left) + (x - xMin) / (xMax - xMin) * Double(plot.right - plot.left) }
        func py(_ y: Double) -> Double { Double(plot.bottom) - (y - yMin) / (yMax - yMin) * Double(plot.bottom - plot.top) }

        // Ticks and grid lines.
        for tick in ticks(xMin, xMax) {
            let x = Int(px(tick).rounded())
            canvas.fill(x: x, y: plot.top, width: 1, height: plot.bottom - plot.top, color: RGB(235, 235, 235))
            canvas.fill(x: x, y: plot.bottom, width: 1, height: 5, color: .black)
            let label = tickLabel(tick)
            text.draw(label, x: x - text.width(of: label) / 2, baseline: plot.bottom + 20, on: &canvas)
        }
        for tick in ticks(yMin, yMax) {
            let y = Int(py(tick).rounded())
            canvas.fill(x: plot.left, y: y, width: plot.right - plot.left, height: 1, color: RGB(235, 235, 235))
            canvas.fill(x: plot.left - 5, y: y, width: 5, height: 1, color: .black)
            let label = tickLabel(tick)
            text.draw(label, x: plot.left - 8 - text.width(of: label), baseline: y + 5, on: &canvas)
        }
        // Points: small translucent discs, colour by label.
        for p in points {
            let color = RGB.categorical[((p.label % 10) + 10) % 10]
            canvas.disc(cx: px(p.x), cy: py(p.y), radius: 1.6, color: color, alpha: 0.6)
        }
        canvas.stroke(x: plot.left, y: plot.top, width: plot.right - plot.left + 1, height: plot.bottom - plot.top + 1, color: .black)
        titleText.draw(title, x: (plot.left + plot.right - titleText.width(of: title)) / 2, baseline: 26, on: &canvas)
        text.draw(xLabel, x: (plot.left + plot.right - text.width(of: xLabel)) / 2, baseline: height - 18, on: &canvas)
        text.draw(yLabel, x: 20, baseline: (plot.top + plot.bottom + text.width(of: yLabel)) / 2, on: &canvas, rotated: true)
        // Legend.
        let legendX = plot.right + 20
        for (i, name) in labelNames.enumerated() {
            let y = plot.top + 10 + i * 24
            canvas.disc(cx: Double(legendX + 8), cy: Double(y), radius: 6, color: RGB.categorical[i % 10])
            text.draw(name, x: legendX + 22, baseline: y + 5, on: &canvas)
        }
        return canvas.image
    }

    /// The data range with 5% margins (a unit range around a single value).
    static func paddedRange(_ values: [Double]) -> (Double, Double) {
        guard let lo = values.min(), let hi = values.max(), hi > lo else {
            let v = values.first ?? 0
            return (v - 1, v + 1)
        }
        let pad = 0.05 * (hi - lo)
        return (lo - pad, hi + pad)
    }

    /// About six round tick values (1, 2 or 5 × 10ᵏ apart) inside [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let raw = (hi - lo) / 6
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var t = (lo / step).rounded(.up) * step
        var out: [Double] = []
        while t <= hi + 1e-9 * step {
            out.append(abs(t) < 1e-9 * step ? 0 : t)
            t += step
        }
        return out
    }

    static func tickLabel(_ v: Double) -> String {
        if v == v.rounded() { return String(Int(v)) }
        return String(format: "%.1f", v)
    }
}
