import CZlib

/// gzip (or zlib) decompression through zlib, with a bound on the output size.
public enum Gzip {
    /// True when `bytes` start with the gzip magic number 1f 8b.
    public static func isCompressed(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// Inflates a gzip stream (concatenated members included). Throws on corrupt or truncated
    /// data, or when the output would exceed `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 30) throws -> [UInt8] {
        var stream = z_stream()
        // 15 + 32: accept gzip or zlib headers, with the largest window.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Error(description: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        // The gzip trailer's last four bytes hold the uncompressed size mod 2³² (a hint only).
        if input.count >= 18 {
            let n = input.suffix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
            output.reserveCapacity(min(limit, max(n, 1 << 16)))
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 18)
        try input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            while true {
                let status: Int32 = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                guard output.count + produced <= limit else {
                    throw Error(description: "decompressed data exceeds \(limit) bytes")
                }
                output.append(contentsOf: chunk[0..<produced])
                switch status {
                case Z_STREAM_END:
                    // Another gzip member may follow.
                    if stream.avail_in == 0 { return }
                    guard inflateReset(&stream) == Z_OK else { throw Error(description: "zlib could not restart") }
                case Z_OK:
                    if stream.avail_in == 0 && produced == 0 {
                        throw Error(description: "gzip data is truncated")
                    }
                case Z_BUF_ERROR:
                    throw Error(description: "gzip data is truncated")
                default:
                    let message = stream.msg.map { String(cString: $0) } ?? "code \(status)"
                    throw Error(description: "corrupt gzip data (\(message))")
                }
            }
        }
        return output
    }
}
