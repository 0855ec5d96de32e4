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
