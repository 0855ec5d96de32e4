import CFreeType
import Files
#if canImport(Glibc)
import Glibc
#endif

/// Draws text with FreeType from a TrueType font (DejaVu Sans by default, Debian's
/// `fonts-dejavu-core`).
public final class TextRenderer {
    /// Debian's and Fedora's places for DejaVu Sans, then `share/fonts/` beside the program's
    /// folder (the portable bundle of `scripts/package.sh`).
    public static let defaultFontPaths = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ] + bundledFontPath

    private static var bundledFontPath: [String] {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return [] }
        let executable = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = executable.lastIndex(of: "/") else { return [] }
        return [executable[..<slash] + "/../share/fonts/DejaVuSans.ttf"]
    }

    private var library: FT_Library?
    private var face: FT_Face?
    public let pixelSize: Int

    /// Loads the first readable font of `paths` at `pixelSize`.
    public init(pixelSize: Int = 14, paths: [String] = TextRenderer.defaultFontPaths) throws {
        self.pixelSize = pixelSize
        guard FT_Init_FreeType(&library) == 0 else { throw FileError(path: "freetype", reason: "FreeType could not start") }
        for path in paths where Files.exists(path) {
            if FT_New_Face(library, path, 0, &face) == 0 { break }
        }
        guard face != nil else {
            FT_Done_FreeType(library)
            library = nil  // deinit runs for a class whose init throws: do not free it twice
            throw FileError(path: paths.first ?? "font", reason: "no font to draw text with (install fonts-dejavu-core: scripts/setup.sh)")
        }
        FT_Set_Pixel_Sizes(face, 0, FT_UInt(pixelSize))
    }

    deinit {
        if let face { FT_Done_Face(face) }
        if let library { FT_Done_FreeType(library) }
    }

    /// Width in pixels of `text`.
    public func width(of text: String) -> Int {
        var x = 0
        for scalar in text.unicodeScalars where FT_Load_Char(face, FT_ULong(scalar.value), FT_Int32(FT_LOAD_DEFAULT)) == 0 {
            x += Int(face!.pointee.glyph.pointee.advance.x) >> 6
        }
        return x
    }

    /// Draws `text` with its baseline starting at (x, baseline); `rotated` draws it upwards
    /// (reading bottom to top) with its baseline at column x.
    public func draw(_ text: String, x: Int, baseline: Int, color: RGB = .black, on canvas: inout Canvas, rotated: Bool = false) {
        var pen = 0
        for scalar in text.unicodeScalars {
            guard FT_Load_Char(face, FT_ULong(scalar.value), FT_Int32(FT_LOAD_RENDER)) == 0 else { continue }
            let glyph = face!.pointee.glyph.pointee
            let bitmap = glyph.bitmap
            for row in 0..<Int(bitmap.rows) {
                for column in 0..<Int(bitmap.width) {
                    let coverage = Double(bitmap.buffer[row * Int(bitmap.pitch) + column]) / 255
                    guard coverage > 0 else { continue }
                    let gx = pen + Int(glyph.bitmap_left) + column
                    let gy = row - Int(glyph.bitmap_top)
                    if rotated {
                        canvas.blend(x: x + gy, y: baseline - gx, color: color, alpha: coverage)
                    } else {
                        canvas.blend(x: x + gx, y: baseline + gy, color: color, alpha: coverage)
                    }
                }
            }
            pen += Int(glyph.advance.x) >> 6
        }
    }
}
