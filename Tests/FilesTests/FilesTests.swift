import Files
import Testing
import TestSupport

@Test func atomicWriteReplacesAndLeavesNoTemporaryFile() throws {
    let dir = temporaryDirectory()
    let path = dir + "/a.bin"
    try Files.writeAtomically([1, 2, 3], to: path)
    try Files.writeAtomically("hello", to: path)
    #expect(try Files.read(path) == Array("hello".utf8))
    #expect(Files.contents(ofDirectory: dir) == ["a.bin"])
}

@Test func failuresNameThePathAndKeepTheOldFile() throws {
    let dir = temporaryDirectory()
    #expect(throws: FileError.self) { try Files.read(dir + "/missing") }
    do { _ = try Files.read(dir + "/missing") } catch let e as FileError { #expect(e.description == "\(dir)/missing: No such file or directory") }
    #expect(throws: FileError(path: dir, reason: "not a regular file (a folder)")) { try Files.read(dir) }
    #expect(throws: FileError.self) { try Files.writeAtomically([1], to: dir + "/no/such/folder/f") }
    let path = dir + "/keep"
    try Files.writeAtomically([9], to: path)
    #expect(throws: FileError.self) { try Files.read(path, limit: 0) }
    #expect(try Files.read(path) == [9])
}

@Test func createDirectoryMakesParentsAndRefusesFiles() throws {
    let dir = temporaryDirectory()
    try Files.createDirectory(dir + "/x/y/z")
    #expect(Files.isDirectory(dir + "/x/y/z"))
    try Files.createDirectory(dir + "/x/y/z")  // again: fine
    try Files.writeAtomically([0], to: dir + "/file")
    #expect(throws: FileError.self) { try Files.createDirectory(dir + "/file") }
}
