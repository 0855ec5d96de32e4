import Files
import Foundation
import Testing
import TestSupport
import Training
@testable import Reports

/// The picked indices: all of them up to the maximum; beyond it at most that many, strictly
/// increasing, the first and last included, and spaced evenly (each gap within one of
/// (count − 1)/(maximum − 1)).
@Test func thinningPicksEvenlySpacedIndices() {
    #expect(Thinning.indices(count: 0, maximum: 10) == [])
    #expect(Thinning.indices(count: 7, maximum: 10) == Array(0..<7))
    #expect(Thinning.indices(count: 5, maximum: 3) == [0, 2, 4])
    for (count, maximum) in [(11, 10), (401, 400), (3_280, 400), (3_280, 100), (100_000, 24)] {
        let picked = Thinning.indices(count: count, maximum: maximum)
        #expect(picked.count <= maximum && picked.count >= maximum - 1, "\(count), \(maximum): \(picked.count)")
        #expect(picked.first == 0 && picked.last == count - 1)
        let ideal = Double(count - 1) / Double(maximum - 1)
        for (a, b) in zip(picked, picked.dropFirst()) {
            #expect(b > a && Double(b - a) <= ideal + 1 && Double(b - a) >= ideal - 1, "\(count), \(maximum): gap \(b - a) against \(ideal)")
        }
    }
}

/// Pictures every epoch up to 100 epochs; over the IWAE protocol's 3,280 epochs about 100
/// epochs, the first and the last among them.
@Test func picturesAtSpacedEpochsInLongRuns() {
    #expect((1...100).allSatisfy { Thinning.hasPictures(epoch: $0, of: 100) })
    let long = (1...3_280).filter { Thinning.hasPictures(epoch: $0, of: 3_280) }
    #expect(long.first == 1 && long.last == 3_280)
    #expect(long.count >= 90 && long.count <= 102, "\(long.count) epochs with pictures")
}

/// metrics.csv as the report reads it, against a plain split-and-`Double` reading: empty cells
/// left out, rows without an epoch dropped, exponents, signs and NaN kept.
@Test func metricsParseLikeAPlainReader() {
    var lines = ["epoch,train_neg_elbo,validation_neg_elbo,learning_rate,kl_dim_1"]
    var rng = SystemRandomNumberGenerator()
    for e in 1...200 {
        let cells = [String(e), String(Double.random(in: -300...300, using: &rng)), e % 3 == 0 ? "" : String(format: "%.4f", Double(e) * 0.5),
                     String(format: "%.3e", Double.random(in: 1e-7...1e-2, using: &rng)), e % 50 == 0 ? "nan" : "0.0100"]
        lines.append(cells.joined(separator: ","))
    }
    lines.append(",1,2,3,4")  // no epoch
    let text = lines.joined(separator: "\n") + "\n"
    let parsed = RunData.parseMetrics(text)
    let header = lines[0].split(separator: ",").map(String.init)
    let plain: [[String: Double]] = lines.dropFirst().compactMap { line in
        var row: [String: Double] = [:]
        for (name, field) in zip(header, line.split(separator: ",", omittingEmptySubsequences: false)) { if let v = Double(field) { row[name] = v } }
        return row["epoch"] == nil ? nil : row
    }
    #expect(parsed.count == 200 && plain.count == 200)
    for (a, b) in zip(parsed, plain) {
        #expect(a.keys.sorted() == b.keys.sorted())
        for (key, value) in b { #expect(a[key] == value || (a[key]!.isNaN && value.isNaN), "\(key): \(a[key]!) against \(value)") }
    }
}

/// A run folder with the IWAE protocol's 3,280 epochs of metrics and 50 latent dimensions: its
/// report stays under 5 MB, draws no curve with more than 400 points and no more heat-map cells
/// than 50 × 100; and it is hardly larger than the report of the same run at 400 epochs, apart
/// from the metrics it carries verbatim.
@Test func aLongRunsReportStaysSmall() throws {
    func report(epochs: Int) throws -> (html: String, csv: Int) {
        let dir = temporaryDirectory()
        let dims = 50
        var lines = ["epoch,train_neg_elbo,train_reconstruction,train_kl,train_objective,test_neg_elbo,test_reconstruction,test_kl,learning_rate,seconds,images_per_second,kl_weight,active_units," + (1...dims).map { "kl_dim_\($0)" }.joined(separator: ",")]
        for e in 1...epochs {
            let loss = 90 + 20 / Double(e)
            var cells = [String(e)] + [loss, loss - 25, 25, loss, loss + 1, loss - 24, 25, 1e-3, 1.7, 35_000, 1, 20].map { String(format: "%.4f", $0) }
            cells += (1...dims).map { String(format: "%.4f", Double($0 % 7) * 0.3 + 1 / Double(e)) }
            lines.append(cells.joined(separator: ","))
        }
        let csv = lines.joined(separator: "\n") + "\n"
        try csv.write(toFile: dir + "/metrics.csv", atomically: true, encoding: .utf8)
        let html = HTMLReport.run(try RunData(RunFolder(path: dir)))
        return (html, csv.utf8.count)
    }
    let long = try report(epochs: 3_280), medium = try report(epochs: 400)
    #expect(long.html.utf8.count < 5_000_000, "\(long.html.utf8.count) bytes")
    #expect(long.html.utf8.count - long.csv <= medium.html.utf8.count - medium.csv + 20_000,
            "without the metrics: \(long.html.utf8.count - long.csv) against \(medium.html.utf8.count - medium.csv) bytes")
    #expect(long.html.components(separatedBy: "<rect").count - 1 <= 50 * 100 + 64)
    let curves = long.html.components(separatedBy: "<path d=\"").dropFirst().map { $0.prefix { $0 != "\"" } }
    #expect(curves.count >= 8, "\(curves.count) curves")
    for curve in curves {
        let points = curve.filter { $0 == "M" || $0 == "L" }.count
        #expect(points <= Thinning.maximumPoints && points >= Thinning.maximumPoints - 1, "a curve of \(points) points")
    }
}
