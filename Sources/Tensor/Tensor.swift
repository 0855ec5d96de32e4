/// A dense, row-major Float32 array. The leading dimension is the batch.
///
/// `Tensor` has reference semantics on purpose: layers own their output and gradient buffers
/// and overwrite them on every call, so a training step allocates nothing once warmed up.
/// Storage is allocated once with a fixed `capacity`; ``setBatch(_:)`` changes the leading
/// dimension in place (for a short last batch) as long as it fits.
public final class Tensor {
    /// The dimensions, batch first (e.g. `[B, F]` for dense data, `[B, C, H, W]` for images).
    public private(set) var shape: [Int]
    /// Number of elements in the current shape.
    public private(set) var count: Int
    /// Number of elements the storage can hold.
    public let capacity: Int
    /// The elements, 64-byte aligned when the tensor owns them.
    public private(set) var data: UnsafeMutablePointer<Float>
    /// For a view: the tensor whose storage it points into (kept alive by this reference).
    public private(set) var base: Tensor?

    /// A zero-filled tensor.
    public init(shape: [Int], capacity: Int? = nil) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        let n = shape.reduce(1, *)
        let cap = max(capacity ?? n, n, 1)
        self.shape = shape
        self.count = n
        self.capacity = cap
        let raw = UnsafeMutableRawPointer.allocate(byteCount: cap * MemoryLayout<Float>.stride, alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: cap)
        data.initialize(repeating: 0, count: cap)
    }

    /// A tensor holding `values` (row-major) with the given shape.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A tensor with every element equal to `value`.
    public convenience init(shape: [Int], repeating value: Float) {
        self.init(shape: shape)
        fill(value)
    }

    /// A view of rows `rows` of `base` (no copy). Writes through a view change `base`.
    public init(viewing base: Tensor, rows: Range<Int>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= base.rows, "rows \(rows) outside \(base.shape)")
        self.base = base
        self.shape = [rows.count] + base.shape.dropFirst()
        self.count = rows.count * base.rowSize
        self.capacity = count
        self.data = base.data + rows.lowerBound * base.rowSize
    }

    /// A view of all of `base`'s elements with another shape (no copy).
    public init(viewing base: Tensor, shape: [Int]) {
        precondition(shape.reduce(1, *) == base.count, "cannot view \(base.shape) as \(shape)")
        self.base = base
        self.shape = shape
        self.count = base.count
        self.capacity = base.count
        self.data = base.data
    }

    /// A view of `shape.product` consecutive elements of `base` starting at element `offset`
    /// (no copy): how a flat buffer is shared out among several tensors.
    public init(viewing base: Tensor, offset: Int, shape: [Int]) {
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= base.count, "elements \(offset)..<\(offset + n) outside \(base.shape)")
        self.base = base
        self.shape = shape
        self.count = n
        self.capacity = n
        self.data = base.data + offset
    }

    /// Points this view at all of `base` with `shape` (views only; no allocation when unchanged).
    public func view(_ base: Tensor, shape newShape: [Int]) {
        precondition(self.base != nil, "only a view can be re-pointed")
        precondition(newShape.reduce(1, *) == base.count, "cannot view \(base.shape) as \(newShape)")
        self.base = base
        if shape != newShape { shape = newShape }
        count = base.count
        data = base.data
    }

    /// Points this view at rows `rows` of `base` (views only; no allocation when the row shape
    /// is unchanged).
    public func view(_ base: Tensor, rows: Range<Int>) {
        precondition(self.base != nil, "only a view can be re-pointed")
        precondition(rows.upperBound <= base.rows, "rows \(rows) outside \(base.shape)")
        self.base = base
        if shape.count == base.shape.count && shape.dropFirst().elementsEqual(base.shape.dropFirst()) {
            if shape[0] != rows.count { shape[0] = rows.count }
        } else {
            shape = [rows.count] + base.shape.dropFirst()
        }
        count = rows.count * base.rowSize
        data = base.data + rows.lowerBound * base.rowSize
    }

    deinit {
        if base == nil { data.deallocate() }
    }

    /// A view of rows `rows` of `base`, re-pointing the view held in `slot` (or making one).
    public static func view(_ base: Tensor, rows: Range<Int>, reusing slot: inout Tensor?) -> Tensor {
        if let v = slot {
            v.view(base, rows: rows)
            return v
        }
        let v = Tensor(viewing: base, rows: rows)
        slot = v
        return v
    }

    /// A view of all of `base` with `shape`, re-pointing the view held in `slot` (or making one).
    public static func view(_ base: Tensor, shape: [Int], reusing slot: inout Tensor?) -> Tensor {
        if let v = slot {
            v.view(base, shape: shape)
            return v
        }
        let v = Tensor(viewing: base, shape: shape)
        slot = v
        return v
    }

    /// Size of the leading (batch) dimension.
    @inlinable public var rows: Int { shape[0] }
    /// Elements per batch row (`count / rows`).
    @inlinable public var rowSize: Int { shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1 }

    /// The elements in the current shape, as a mutable buffer.
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: data, count: count)
    }

    @inlinable public subscript(index: Int) -> Float {
        get { data[index] }
        set { data[index] = newValue }
    }

    /// Changes the leading dimension in place; the storage must be large enough.
    public func setBatch(_ batch: Int) {
        let newCount = batch * rowSize
        precondition(batch >= 0 && newCount <= capacity, "batch \(batch) exceeds capacity of \(shape)")
        shape[0] = batch
        count = newCount
    }

    /// Reinterprets the elements with a new shape of the same element count.
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    /// The elements as an array (for tests, checkpoints and reporting).
    public func toArray() -> [Float] { Array(buffer) }

    public func fill(_ value: Float) {
        let p = data
        for i in 0..<count { p[i] = value }
    }

    /// Copies `other`'s elements; the shapes' element counts must match.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy from \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// A new tensor with the same shape and elements.
    public func clone() -> Tensor {
        let t = Tensor(shape: shape)
        t.copy(from: self)
        return t
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = buffer.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", …" : "")])"
    }
}

extension Tensor {
    /// Returns `existing` reshaped to `shape` when its storage is large enough, otherwise a new
    /// tensor. Layers use it to keep one output buffer across steps (and across a short last batch).
    public static func reusing(_ existing: Tensor?, shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        if let t = existing, t.base == nil, t.capacity >= n {
            if t.shape != shape {
                t.shape = shape
                t.count = n
            }
            return t
        }
        return Tensor(shape: shape)
    }

    /// `reusing(existing, shape: [rows, columns])` without building a shape array on the hot
    /// path: a 2-D buffer with the same column count is resized in place.
    public static func reusing(_ existing: Tensor?, rows: Int, columns: Int) -> Tensor {
        if let t = existing, t.base == nil, t.shape.count == 2, t.shape[1] == columns, t.capacity >= rows * columns {
            if t.shape[0] != rows {
                t.shape[0] = rows
                t.count = rows * columns
            }
            return t
        }
        return Tensor(shape: [rows, columns])
    }
}
