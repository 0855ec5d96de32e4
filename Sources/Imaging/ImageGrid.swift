/// Arranges images in a grid separated by a thin border.
public enum ImageGrid {
    /// Tiles `count` images stored as Float32 CHW (values clamped to [0, 1]) into one image,
    /// `columns` per row, with `border` pixels of `borderValue` around and between tiles.
    public static func make(
        _ values: UnsafeBufferPointer<Float>, count: Int, channels: Int, height: Int, width: Int,
        columns: Int, border: Int = 1, borderValue: UInt8 = 128
    ) -> Image {
        precondition(values.count >= count * channels * height * width, "not enough values for \(count) images")
        precondition(columns > 0 && (channels == 1 || channels == 3))
        let rows = max(1, (count + columns - 1) / columns)
        let gridWidth = columns * width + (columns + 1) * border
        let gridHeight = rows * height + (rows + 1) * border
        var image = Image(width: gridWidth, height: gridHeight, channels: channels, filledWith: borderValue)
        let plane = height * width
        for k in 0..<count {
            let top = border + (k / columns) * (height + border)
            let left = border + (k % columns) * (width + border)
            let src = k * channels * plane
            for y in 0..<height {
                for x in 0..<width {
                    for c in 0..<channels {
                        let v = values[src + c * plane + y * width + x]
                        let clamped = v.isNaN ? 0 : min(max(v, 0), 1)
                        image.pixels[((top + y) * gridWidth + left + x) * channels + c] = UInt8((clamped * 255).rounded())
                    }
                }
            }
        }
        return image
    }
}
