/// An RGB drawing surface with the few primitives plots need.
public struct Canvas {
    public private(set) var image: Image

    public init(width: Int, height: Int, background: RGB = .white) {
        image = Image(width: width, height: height, channels: 3, pixels: [UInt8](repeating: 0, count: width * height * 3))
        fill(x: 0, y: 0, width: width, height: height, color: background)
    }

    public var width: Int { image.width }
    public var height: Int { image.height }

    /// Blends `color` over pixel (x, y) with opacity `alpha` in [0, 1]; ignores pixels outside.
    public mutating func blend(x: Int, y: Int, color: RGB, alpha: Double = 1) {
        guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
        let a = min(alpha, 1)
        let i = (y * width + x) * 3
        for (c, v) in [color.r, color.g, color.b].enumerated() {
            let old = Double(image.pixels[i + c])
            image.pixels[i + c] = UInt8((old + (Double(v) - old) * a).rounded())
        }
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: RGB) {
        for yy in max(0, y)..<min(height, y + h) {
            for xx in max(0, x)..<min(width, x + w) { blend(x: xx, y: yy, color: color) }
        }
    }

    /// A rectangle's outline, one pixel wide.
    public mutating func stroke(x: Int, y: Int, width w: Int, height h: Int, color: RGB) {
        fill(x: x, y: y, width: w, height: 1, color: color)
        fill(x: x, y: y + h - 1, width: w, height: 1, color: color)
        fill(x: x, y: y, width: 1, height: h, color: color)
        fill(x: x + w - 1, y: y, width: 1, height: h, color: color)
    }

    /// A filled disc centred at (cx, cy), edges antialiased by pixel coverage.
    public mutating func disc(cx: Double, cy: Double, radius r: Double, color: RGB, alpha: Double = 1) {
        for y in Int((cy - r - 1).rounded(.down))...Int((cy + r + 1).rounded(.up)) {
            for x in Int((cx - r - 1).rounded(.down))...Int((cx + r + 1).rounded(.up)) {
                let distance = ((Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy)).squareRoot()
                let coverage = min(1, max(0, r + 0.5 - distance))
                blend(x: x, y: y, color: color, alpha: alpha * coverage)
            }
        }
    }

    /// Copies a grey or RGB image with its top-left corner at (x, y).
    public mutating func draw(_ picture: Image, x: Int, y: Int) {
        for yy in 0..<picture.height {
            for xx in 0..<picture.width {
                let i = (yy * picture.width + xx) * picture.channels
                let color = picture.channels == 3
                    ? RGB(picture.pixels[i], picture.pixels[i + 1], picture.pixels[i + 2])
                    : RGB(picture.pixels[i], picture.pixels[i], picture.pixels[i])
                blend(x: x + xx, y: y + yy, color: color)
            }
        }
    }
}

/// An 8-bit colour.
public struct RGB: Equatable, Sendable {
    public var r, g, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }
    public static let white = RGB(255, 255, 255)
    public static let black = RGB(0, 0, 0)
    public static let grey = RGB(128, 128, 128)

    /// Ten colours that stay distinguishable from one another (one per class of a 10-class set).
    public static let categorical: [RGB] = [
        RGB(31, 119, 180), RGB(255, 127, 14), RGB(44, 160, 44), RGB(214, 39, 40), RGB(148, 103, 189),
        RGB(140, 86, 75), RGB(227, 119, 194), RGB(127, 127, 127), RGB(188, 189, 34), RGB(23, 190, 207),
    ]
}
