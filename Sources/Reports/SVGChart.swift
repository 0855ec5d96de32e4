import Foundation

/// Text made safe inside HTML and SVG.
func escape(_ text: String) -> String {
    var out = ""
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}

/// A number for an axis label or a table: few digits, no exponent for everyday sizes.
func label(_ v: Double) -> String {
    guard v.isFinite else { return "–" }
    let a = abs(v)
    if a == 0 { return "0" }
    if a >= 1e6 || a < 1e-4 { return String(format: "%.2e", v) }
    if a >= 100 { return String(format: "%.0f", v) }
    if a >= 10 { return String(format: "%.1f", v).replacingOccurrences(of: ".0", with: "") }
    return String(format: "%.4g", v)
}

/// Colours of the series, told apart also in grey print (the Okabe–Ito palette).
let seriesColors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

/// A line chart drawn as inline SVG: labelled axes with round ticks, a legend, optionally a
/// logarithmic y axis.
public struct LineChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var dashed = false
        public init(_ name: String, _ points: [(x: Double, y: Double)], dashed: Bool = false) {
            self.name = name
            self.points = points.filter { $0.x.isFinite && $0.y.isFinite }
            self.dashed = dashed
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// nil: logarithmic if every value is positive and they span more than a factor of 20.
    public var logarithmic: Bool?
    public var width = 560.0, height = 300.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], logarithmic: Bool? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series.filter { !$0.points.isEmpty }
        self.logarithmic = logarithmic
    }

    /// Round tick values covering [low, high]: steps of 1, 2 or 5 × 10ⁿ.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var out: [Double] = []
        var t = ceil(low / step - 1e-9) * step
        while t <= high + step * 1e-9 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    public var svg: String {
        let left = 64.0, right = 16.0, top = 30.0, bottom = 44.0
        let plotW = width - left - right, plotH = height - top - bottom
        var out = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        out += "<text x=\"\(left)\" y=\"18\" class=\"title\">\(escape(title))</text>"
        let all = series.flatMap(\.points)
        guard !all.isEmpty else {
            return out + "<text x=\"\(width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" class=\"note\">no data yet</text></svg>"
        }
        var xMin = all.map(\.x).min()!, xMax = all.map(\.x).max()!
        if xMax == xMin { (xMin, xMax) = (xMin - 1, xMax + 1) }
        var yMin = all.map(\.y).min()!, yMax = all.map(\.y).max()!
        let log = logarithmic ?? (yMin > 0 && yMax / yMin > 20)
        let useLog = log && yMin > 0
        func ty(_ y: Double) -> Double { useLog ? log10(y) : y }
        var lo = ty(yMin), hi = ty(yMax)
        if hi == lo {
            // One value: a band around it (±10%, or ±1 around 0; half a decade on a log axis).
            let half = useLog ? 0.5 : (lo == 0 ? 1 : abs(lo) * 0.1)
            (lo, hi) = (lo - half, hi + half)
        }
        let pad = (hi - lo) * 0.05
        lo -= pad
        hi += pad
        if !useLog && yMin >= 0 && lo < 0 { lo = 0 }
        (yMin, yMax) = (lo, hi)
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (ty(y) - lo) / (hi - lo) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        // Grid and ticks.
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" class=\"frame\"/>"
        let yTicks: [Double] = useLog
            ? Self.ticks(floor(lo), ceil(hi), count: max(1, Int(ceil(hi) - floor(lo)))).filter { $0 >= lo - 1e-9 && $0 <= hi + 1e-9 }.map { pow(10, $0) }
            : Self.ticks(lo, hi)
        for t in yTicks {
            let y = py(t)
            guard y >= top - 0.5 && y <= top + plotH + 0.5 else { continue }
            out += "<line x1=\"\(left)\" x2=\"\(f(left + plotW))\" y1=\"\(f(y))\" y2=\"\(f(y))\" class=\"grid\"/>"
            out += "<text x=\"\(left - 6)\" y=\"\(f(y + 4))\" text-anchor=\"end\" class=\"tick\">\(label(t))</text>"
        }
        // The x axis counts epochs: whole numbers only.
        let xTicks = Self.ticks(xMin, xMax, count: min(6, max(1, Int(xMax - xMin)))).filter { $0 == $0.rounded() }
        for t in xTicks {
            let x = px(t)
            out += "<line x1=\"\(f(x))\" x2=\"\(f(x))\" y1=\"\(f(top + plotH))\" y2=\"\(f(top + plotH + 4))\" class=\"axis\"/>"
            out += "<text x=\"\(f(x))\" y=\"\(f(top + plotH + 17))\" text-anchor=\"middle\" class=\"tick\">\(label(t))</text>"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" class=\"axislabel\">\(escape(xLabel))</text>"
        out += "<text transform=\"translate(14 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"axislabel\">\(escape(yLabel + (useLog ? " (log scale)" : "")))</text>"

        // Lines (and a dot per point when there are few).
        for (k, s) in series.enumerated() {
            let color = seriesColors[k % seriesColors.count]
            let d = s.points.enumerated().map { "\($0.offset == 0 ? "M" : "L")\(f(px($0.element.x))) \(f(py($0.element.y)))" }.joined(separator: " ")
            out += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "") class=\"series\"><title>\(escape(s.name))</title></path>"
            if s.points.count <= 40 {
                for p in s.points { out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.5\" fill=\"\(color)\"><title>\(escape(s.name)): \(label(p.y)) at \(label(p.x))</title></circle>" }
            }
        }
        // Legend, top right inside the plot.
        if series.count > 1 || !series[0].name.isEmpty {
            let rowH = 16.0
            let boxW = 14 + 7 * Double(series.map(\.name.count).max() ?? 0) + 26
            let boxH = rowH * Double(series.count) + 6
            // The corner of the plot where the legend hides the fewest points.
            let corners = [(left + plotW - boxW - 6, top + 6), (left + 6, top + 6), (left + plotW - boxW - 6, top + plotH - boxH - 6), (left + 6, top + plotH - boxH - 6)]
            let points = series.flatMap(\.points).map { (px($0.x), py($0.y)) }
            func hidden(_ c: (Double, Double)) -> Int { points.filter { $0.0 >= c.0 - 4 && $0.0 <= c.0 + boxW + 4 && $0.1 >= c.1 - 4 && $0.1 <= c.1 + boxH + 4 }.count }
            let (x0, y0) = corners.min { hidden($0) < hidden($1) }!
            out += "<rect x=\"\(f(x0))\" y=\"\(f(y0))\" width=\"\(f(boxW))\" height=\"\(f(boxH))\" class=\"legend\"/>"
            for (k, s) in series.enumerated() {
                let y = y0 + 4 + rowH * Double(k) + rowH / 2
                let color = seriesColors[k % seriesColors.count]
                out += "<line x1=\"\(f(x0 + 6))\" x2=\"\(f(x0 + 26))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
                out += "<text x=\"\(f(x0 + 32))\" y=\"\(f(y + 4))\" class=\"tick\">\(escape(s.name))</text>"
            }
        }
        return out + "</svg>"
    }
}

/// A heat map drawn as inline SVG: one row per latent dimension, one column per epoch, the
/// colour the value (a perceptually ordered blue–yellow scale), with a colour bar.
public struct HeatMap {
    public var title: String
    public var rowLabels: [String]
    public var columns: [Double]
    /// values[row][column]
    public var values: [[Double]]
    public var unit: String

    public init(title: String, rowLabels: [String], columns: [Double], values: [[Double]], unit: String) {
        (self.title, self.rowLabels, self.columns, self.values, self.unit) = (title, rowLabels, columns, values, unit)
    }

    /// Blue (low) through teal and green to yellow (high), t in [0, 1].
    static func color(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), u = x - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * u).rounded()) }
        return String(format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    public var svg: String {
        let left = 52.0, top = 30.0, bottom = 40.0, barW = 70.0
        let cellH = max(4, min(16, 320 / Double(max(rowLabels.count, 1))))
        let plotW = 440.0
        let cellW = plotW / Double(max(columns.count, 1))
        let height = top + cellH * Double(rowLabels.count) + bottom
        let width = left + plotW + barW + 20
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        var out = "<svg class=\"chart heatmap\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        out += "<text x=\"\(left)\" y=\"18\" class=\"title\">\(escape(title))</text>"
        let finite = values.flatMap { $0 }.filter(\.isFinite)
        guard let high = finite.max(), !columns.isEmpty else { return out + "<text x=\"\(left)\" y=\"50\" class=\"note\">no data yet</text></svg>" }
        let low = min(0, finite.min() ?? 0)
        for (r, row) in values.enumerated() {
            let y = top + cellH * Double(r)
            for (c, v) in row.enumerated() where c < columns.count {
                out += "<rect x=\"\(f(left + cellW * Double(c)))\" y=\"\(f(y))\" width=\"\(f(cellW + 0.3))\" height=\"\(f(cellH + 0.3))\" fill=\"\(Self.color((v - low) / max(high - low, 1e-12)))\"><title>\(escape(rowLabels[r])), epoch \(label(columns[c])): \(label(v)) \(escape(unit))</title></rect>"
            }
            if cellH >= 9 || r % Int((9 / cellH).rounded(.up)) == 0 {
                out += "<text x=\"\(left - 5)\" y=\"\(f(y + cellH / 2 + 4))\" text-anchor=\"end\" class=\"tick\">\(escape(rowLabels[r]))</text>"
            }
        }
        let bottomY = top + cellH * Double(rowLabels.count)
        for t in LineChart.ticks(columns.first!, columns.last!, count: 6) where t == t.rounded() {
            let x = left + cellW * (Double(columns.firstIndex { $0 >= t } ?? 0) + 0.5)
            out += "<text x=\"\(f(x))\" y=\"\(f(bottomY + 15))\" text-anchor=\"middle\" class=\"tick\">\(label(t))</text>"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" class=\"axislabel\">epoch</text>"
        // Colour bar.
        let bx = left + plotW + 16, bh = bottomY - top
        for k in 0..<32 {
            let t = 1 - Double(k) / 31
            out += "<rect x=\"\(f(bx))\" y=\"\(f(top + bh * Double(k) / 32))\" width=\"12\" height=\"\(f(bh / 32 + 0.3))\" fill=\"\(Self.color(t))\"/>"
        }
        out += "<text x=\"\(f(bx + 16))\" y=\"\(f(top + 8))\" class=\"tick\">\(label(high))</text>"
        out += "<text x=\"\(f(bx + 16))\" y=\"\(f(bottomY))\" class=\"tick\">\(label(low))</text>"
        out += "<text x=\"\(f(bx + 16))\" y=\"\(f(top + bh / 2 + 4))\" class=\"tick\">\(escape(unit))</text>"
        return out + "</svg>"
    }
}

/// Overlaid histograms of one score for two groups (e.g. normal and anomalous examples), as
/// inline SVG: the same bins for both, each group's bars as a fraction of that group.
public struct Histogram {
    public var title: String
    public var xLabel: String
    public var groups: [(name: String, values: [Double])]
    public var bins = 40

    public init(title: String, xLabel: String, groups: [(name: String, values: [Double])]) {
        self.title = title
        self.xLabel = xLabel
        self.groups = groups.map { ($0.name, $0.values.filter(\.isFinite)) }
    }

    public var svg: String {
        let width = 560.0, height = 300.0, left = 64.0, right = 16.0, top = 30.0, bottom = 44.0
        let plotW = width - left - right, plotH = height - top - bottom
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><text x=\"\(left)\" y=\"18\" font-size=\"13\" font-weight=\"600\" font-family=\"sans-serif\">\(escape(title))</text>"
        let all = groups.flatMap(\.values)
        guard var low = all.min(), var high = all.max() else { return out + "</svg>" }
        if high == low { (low, high) = (low - 1, high + 1) }
        let step = (high - low) / Double(bins)
        let fractions = groups.map { g -> [Double] in
            var counts = [Double](repeating: 0, count: bins)
            for v in g.values { counts[min(bins - 1, Int((v - low) / step))] += 1 }
            return counts.map { $0 / Double(max(g.values.count, 1)) }
        }
        let top1 = fractions.flatMap { $0 }.max() ?? 1
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#bbb\"/>"
        for (k, counts) in fractions.enumerated() {
            let color = seriesColors[k % seriesColors.count]
            for (b, c) in counts.enumerated() where c > 0 {
                let h = c / top1 * plotH
                out += "<rect x=\"\(f(left + Double(b) * plotW / Double(bins)))\" y=\"\(f(top + plotH - h))\" width=\"\(f(plotW / Double(bins)))\" height=\"\(f(h))\" fill=\"\(color)\" fill-opacity=\"0.55\"/>"
            }
        }
        for t in LineChart.ticks(low, high, count: 6) {
            let x = left + (t - low) / (high - low) * plotW
            out += "<text x=\"\(f(x))\" y=\"\(f(top + plotH + 17))\" text-anchor=\"middle\" font-size=\"11\" font-family=\"sans-serif\">\(label(t))</text>"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" font-size=\"12\" font-family=\"sans-serif\">\(escape(xLabel))</text>"
        out += "<text transform=\"translate(14 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" font-family=\"sans-serif\">fraction of the group per bin</text>"
        for (k, g) in groups.enumerated() {
            let y = top + 14 + 16 * Double(k)
            out += "<rect x=\"\(f(left + plotW - 190))\" y=\"\(f(y - 9))\" width=\"12\" height=\"10\" fill=\"\(seriesColors[k % seriesColors.count])\" fill-opacity=\"0.55\"/>"
            out += "<text x=\"\(f(left + plotW - 172))\" y=\"\(f(y))\" font-size=\"11\" font-family=\"sans-serif\">\(escape(g.name)) (\(g.values.count))</text>"
        }
        return out + "</svg>"
    }
}

extension Histogram {
    /// One SVG with a histogram per measure, one above the other: each measure's values split
    /// into the examples marked `anomalous` and the others.
    public static func anomalies(_ measures: [(name: String, values: [Double])], anomalous: [Bool], subject: String) -> String {
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"560\" height=\"\(300 * measures.count)\">"
        for (k, (name, values)) in measures.enumerated() {
            let groups = [("others", zip(values, anomalous).filter { !$0.1 }.map(\.0)), ("anomalies", zip(values, anomalous).filter(\.1).map(\.0))]
            svg += "<g transform=\"translate(0 \(300 * k))\">" + Histogram(title: "\(name) of \(subject)", xLabel: "\(name), nats", groups: groups).svg + "</g>"
        }
        return svg + "</svg>\n"
    }
}
