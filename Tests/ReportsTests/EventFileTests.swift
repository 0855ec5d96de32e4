import Files
import Foundation
import Testing
import TestSupport
@testable import Reports

/// The check value of the CRC-32C catalogue (RFC 3720, B.4; "123456789" → 0xE3069283), and
/// iSCSI's 32 zero bytes → 0x8A9136AA.
@Test func crc32cMatchesPublishedCheckValues() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    // The mask: rotate right 15, add 0xA282EAD8 (TensorFlow's crc32c.h).
    let crc: UInt32 = 0xE306_9283
    #expect(CRC32C.masked(Array("123456789".utf8)) == ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
}

/// Hand-encoded protobuf bytes (the wire format's documented examples: 150 → 08 96 01).
@Test func protobufFieldsEncodeAsTheWireFormatSays() {
    var w = ProtobufWriter()
    w.int(1, 150)
    #expect(w.bytes == [0x08, 0x96, 0x01])
    w = ProtobufWriter()
    w.string(2, "testing")
    #expect(w.bytes == [0x12, 0x07] + Array("testing".utf8))
    w = ProtobufWriter()
    w.float(2, 1.5)  // key 0x15, then 1.5f little-endian (0x3FC00000)
    #expect(w.bytes == [0x15, 0x00, 0x00, 0xC0, 0x3F])
    w = ProtobufWriter()
    w.int(2, -1)  // a negative int64 takes ten bytes
    #expect(w.bytes == [0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
    let fields = protobufVarintFields(ArraySlice([0x08, 0x96, 0x01, 0x12, 0x01, 0x41, 0x10, 0x07]))
    #expect(fields?.map(\.field) == [1, 2] && fields?.map(\.value) == [150, 7])
    #expect(protobufVarintFields(ArraySlice([0x12, 0x05, 0x41])) == nil)  // length past the end
}

/// Records are found back with their steps; truncation keeps the steps up to the given one and
/// drops a record cut short.
@Test func eventFileRecordsTruncateAtAStep() throws {
    let dir = temporaryDirectory()
    let path = dir + "/events.out.tfevents.1.test"
    do {
        let file = try EventFile(path: path)
        for step in [10, 20, 30, 40] { try file.scalars([("a", Double(step))], step: step) }
    }
    var bytes = try Files.read(path)
    #expect(EventFile.records(bytes).map(\.step) == [0, 10, 20, 30, 40])
    // A record cut short at the end (a kill in the middle of a write) is not a record.
    try Files.writeAtomically(bytes + EventFile.record([0x10, 0x32]).dropLast(3), to: path)
    #expect(EventFile.records(try Files.read(path)).map(\.step) == [0, 10, 20, 30, 40])
    try EventFile.truncate(path, keepingStepsUpTo: 25)
    bytes = try Files.read(path)
    #expect(EventFile.records(bytes).map(\.step) == [0, 10, 20])
    #expect(EventFile.records(bytes).last?.range.upperBound == bytes.count)
    // A flipped bit fails the data checksum: reading stops there.
    var damaged = bytes
    damaged[damaged.count - 6] ^= 1
    #expect(EventFile.records(damaged).map(\.step) == [0, 10])
    // Appending continues the file (no second file_version event).
    do { try EventFile(path: path).scalars([("a", 1)], step: 21) }
    #expect(EventFile.records(try Files.read(path)).map(\.step) == [0, 10, 20, 21])
    // A file with no intact record is cut to nothing and starts again with its file_version event.
    try Files.writeAtomically(Array("not an event file".utf8), to: path)
    try EventFile.truncate(path, keepingStepsUpTo: 100)
    #expect(try Files.read(path).isEmpty)
    do { try EventFile(path: path).scalars([("a", 1)], step: 101) }
    #expect(EventFile.records(try Files.read(path)).map(\.step) == [0, 101])
}

/// A file written by TensorBoard's own writer (Fuzz/seeds/tfevents, made with
/// `tensorboard.summary.writer.event_file_writer`): its records and steps are found, and every
/// prefix of it yields exactly the records that end within the prefix.
@Test func tensorBoardsOwnFileReadsBackAndEveryCutKeepsWholeRecords() throws {
    let seed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/seeds/tfevents/tensorboard-written.tfevents")
    let bytes = Array(try Data(contentsOf: seed))
    let whole = EventFile.records(bytes)
    #expect(whole.map(\.step) == [0, 10, 20, 30, 30], "\(whole.map(\.step))")
    #expect(whole.last?.range.upperBound == bytes.count)
    for cut in 0...bytes.count {
        let prefix = EventFile.records(Array(bytes.prefix(cut)))
        #expect(prefix.map(\.range) == whole.filter { $0.range.upperBound <= cut }.map(\.range), "cut at \(cut)")
    }
    // Our writer frames an event the same way TensorBoard's did: the bytes of its first record.
    let first = whole[0].range
    let data = Array(bytes[(first.lowerBound + 12)..<(first.upperBound - 4)])
    #expect(EventFile.record(data) == Array(bytes[first]))
}
