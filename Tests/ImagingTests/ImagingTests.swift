import Imaging
import Testing

@Test func pngRoundTripGreyAndRGB() throws {
    let grey = Image(width: 5, height: 3, channels: 1, pixels: (0..<15).map { UInt8($0 * 17) })
    let bytes = try PNG.encode(grey)
    // The PNG signature, then IHDR with width 5 and height 3 (big-endian), bit depth 8, colour type 0.
    #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    #expect(Array(bytes[12..<16]) == Array("IHDR".utf8))
    #expect(Array(bytes[16..<26]) == [0, 0, 0, 5, 0, 0, 0, 3, 8, 0])
    #expect(try PNG.decode(bytes) == grey)
    let rgb = Image(width: 2, height: 2, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    let rgbBytes = try PNG.encode(rgb)
    #expect(rgbBytes[25] == 2)  // colour type 2: RGB
    #expect(try PNG.decode(rgbBytes) == rgb)
}

@Test func decodingGarbageFailsCleanly() {
    #expect(throws: PNGError.self) { try PNG.decode([1, 2, 3, 4]) }
    #expect(throws: PNGError.self) { try PNG.decode([]) }
}

@Test func gridPlacesTilesInsideABorder() {
    // Two 2×2 grey tiles, 2 columns, border 1: a 7×4 image.
    let values: [Float] = [0, 1, 0.5, 2, /* tile 2 */ -1, 0.2, 0.4, 1]
    let image = values.withUnsafeBufferPointer {
        ImageGrid.make($0, count: 2, channels: 1, height: 2, width: 2, columns: 2, border: 1, borderValue: 7)
    }
    #expect(image.width == 7 && image.height == 4)
    let b: UInt8 = 7
    #expect(image.pixels == [
        b, b, b, b, b, b, b,
        b, 0, 255, b, 0, 51, b,
        b, 128, 255, b, 102, 255, b,
        b, b, b, b, b, b, b,
    ])
}

@Test func gridLeavesMissingTilesAsBorderAndHandlesRGB() {
    let values: [Float] = [1, 0, 0.5]  // one 1×1 RGB tile, CHW
    let image = values.withUnsafeBufferPointer {
        ImageGrid.make($0, count: 1, channels: 3, height: 1, width: 1, columns: 2, border: 0)
    }
    #expect(image.width == 2 && image.height == 1 && image.channels == 3)
    #expect(image.pixels == [255, 0, 128, 128, 128, 128])
}

@Test func scatterPlotDrawsPointsLegendAndText() throws {
    let points = (0..<200).map { ScatterPlot.Point(x: Double($0 % 20), y: Double($0 / 20), label: $0 % 3) }
    let image = try ScatterPlot.render(points, labelNames: ["a", "b", "c"], title: "T", xLabel: "x", yLabel: "y", width: 400, height: 300)
    #expect(image.width == 400 && image.height == 300 && image.channels == 3)
    func count(_ color: RGB) -> Int {
        stride(from: 0, to: image.pixels.count, by: 3).filter {
            abs(Int(image.pixels[$0]) - Int(color.r)) < 40 && abs(Int(image.pixels[$0 + 1]) - Int(color.g)) < 40 && abs(Int(image.pixels[$0 + 2]) - Int(color.b)) < 40
        }.count
    }
    for c in RGB.categorical.prefix(3) { #expect(count(c) > 20) }  // points and legend swatches
    #expect(count(RGB.categorical[5]) < count(RGB.categorical[0]))
    #expect(count(.black) > 500)  // frame, ticks and text
}

@Test func tickValuesAreRound() {
    let (low, high) = (-2.3, 7.9)
    let rendered = try? ScatterPlot.render([ScatterPlot.Point(x: low, y: 0, label: 0), ScatterPlot.Point(x: high, y: 1, label: 1)], labelNames: ["a", "b"], title: "", xLabel: "", yLabel: "")
    #expect(rendered != nil)
}

@Test func canvasDiscCoversItsArea() {
    var canvas = Canvas(width: 21, height: 21)
    canvas.disc(cx: 10.5, cy: 10.5, radius: 5, color: .black)
    // Total coverage (darkness summed over pixels) is the disc's area, π r² ≈ 78.5.
    let coverage = stride(from: 0, to: canvas.image.pixels.count, by: 3).reduce(0.0) { $0 + Double(255 - Int(canvas.image.pixels[$1])) / 255 }
    #expect(abs(coverage - Double.pi * 25) < 1.5, "coverage \(coverage)")
}

/// No readable font among the paths: one error naming the missing font package, not a crash
/// (the failed initialiser once freed FreeType twice).
@Test func noFontIsAnErrorNotACrash() {
    do {
        _ = try TextRenderer(paths: ["/nonexistent/DejaVuSans.ttf"])
        Issue.record("a renderer without a font")
    } catch {
        #expect("\(error)".contains("fonts-dejavu-core"), "\(error)")
    }
}
