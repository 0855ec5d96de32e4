/// A CUDA library handle's workspaces: up to `slots` device buffers of `bytes` each, the first
/// made with the handle and each other one the first time it is selected, and the one the
/// handle's calls run in now.
///
/// Two library calls that a step's CUDA graph lets run at the same time must not share scratch
/// memory, so ``StepDependencies`` gives each call a slot and the graph's builder selects it
/// before capturing the call. Buffers made beforehand also keep a capture from allocating, which
/// a child graph may not.
public struct DeviceWorkspaces {
    /// Each buffer's size in bytes.
    public let bytes: Int
    /// How many buffers there may be.
    public let slots: Int
    private var buffers: [DeviceBuffer]
    /// The slot the calls run in now.
    public private(set) var current = 0

    /// Makes the first buffer.
    public init(bytes: Int, slots: Int) throws {
        precondition(slots >= 1, "a library needs at least one workspace")
        (self.bytes, self.slots) = (bytes, slots)
        buffers = [try DeviceBuffer(bytes: bytes)]
    }

    /// The buffer of the current slot.
    public var buffer: DeviceBuffer { buffers[current] }

    /// Selects `slot` (0 ..< ``slots``), making its buffer if it is the first time; true when
    /// the slot changed (the handle must then be pointed at the new buffer).
    @discardableResult
    public mutating func select(_ slot: Int) throws -> Bool {
        precondition(slot >= 0 && slot < slots, "no workspace \(slot) of \(slots)")
        guard slot != current else { return false }
        while buffers.count <= slot { buffers.append(try DeviceBuffer(bytes: bytes)) }
        current = slot
        return true
    }
}
