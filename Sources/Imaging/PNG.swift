import CPNG
import Files

/// An 8-bit image, rows top to bottom, channels interleaved (1 = grey, 3 = RGB).
public struct Image: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "channels must be 1 or 3")
        precondition(pixels.count == width * height * channels, "pixel count does not match \(width)×\(height)×\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    public init(width: Int, height: Int, channels: Int, filledWith value: UInt8) {
        self.init(width: width, height: height, channels: channels, pixels: [UInt8](repeating: value, count: width * height * channels))
    }
}

public struct PNGError: Error, CustomStringConvertible {
    public let description: String
}

/// PNG encoding and decoding through libpng's simplified API.
public enum PNG {
    /// The PNG file bytes of `image`.
    public static func encode(_ image: Image) throws -> [UInt8] {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        png.width = UInt32(image.width)
        png.height = UInt32(image.height)
        png.format = image.channels == 3 ? UInt32(PNG_FORMAT_RGB) : UInt32(PNG_FORMAT_GRAY)
        let stride = Int32(image.width * image.channels)
        // One compression pass into a buffer larger than any PNG of the image can be (the raw
        // rows with their filter bytes, zlib's stored-block overhead, the chunks); libpng says
        // so if it was too small after all, and then the size it needs.
        let raw = image.height * (image.width * image.channels + 1)
        var size = raw + raw / 1000 * 5 + 1024
        var out = [UInt8](repeating: 0, count: size)
        for _ in 0..<2 {
            let capacity = size
            let ok = out.withUnsafeMutableBytes { dst in
                image.pixels.withUnsafeBytes { px in png_image_write_to_memory(&png, dst.baseAddress, &size, 0, px.baseAddress, stride, nil) }
            }
            if ok != 0 && size <= capacity { return Array(out.prefix(size)) }
            guard size > capacity else { break }
            png.warning_or_error = 0
            out = [UInt8](repeating: 0, count: size)
        }
        throw PNGError(description: "libpng could not encode the image: \(message(&png))")
    }

    /// Writes `image` as a PNG file, atomically.
    public static func write(_ image: Image, to path: String, durable: Bool = true) throws {
        try Files.writeAtomically(try encode(image), to: path, durable: durable)
    }

    /// Decodes PNG bytes to 8-bit grey (if the file is grey) or RGB.
    public static func decode(_ bytes: [UInt8]) throws -> Image {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        let began = bytes.withUnsafeBytes { png_image_begin_read_from_memory(&png, $0.baseAddress, $0.count) }
        guard began != 0 else { throw PNGError(description: "not a readable PNG: \(message(&png))") }
        defer { png_image_free(&png) }
        let colour = (png.format & UInt32(PNG_FORMAT_FLAG_COLOR)) != 0
        png.format = colour ? UInt32(PNG_FORMAT_RGB) : UInt32(PNG_FORMAT_GRAY)
        let channels = colour ? 3 : 1
        let (w, h) = (Int(png.width), Int(png.height))
        guard w > 0, h > 0, w <= 1 << 15, h <= 1 << 15, w * h * channels <= 1 << 26 else {
            throw PNGError(description: "image size \(w)×\(h) is out of range (at most 2²⁶ values)")
        }
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        let finished = pixels.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, Int32(w * channels), nil) }
        guard finished != 0 else { throw PNGError(description: "corrupt PNG: \(message(&png))") }
        return Image(width: w, height: h, channels: channels, pixels: pixels)
    }

    private static func message(_ png: inout png_image) -> String {
        withUnsafeBytes(of: &png.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
