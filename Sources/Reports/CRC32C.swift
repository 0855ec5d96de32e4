/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TensorBoard's (and
/// TFRecord's) record framing, and its "masked" form.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` (initial value and final xor 0xFFFFFFFF).
    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TensorFlow's masked CRC, stored in record files so that a CRC of data that itself holds
    /// CRCs stays well distributed: rotate right by 15 bits, add 0xA282EAD8.
    public static func masked<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
