#if canImport(Glibc)
import Glibc
#endif
import CFiles

/// A file could not be read or written; the message names the path and the reason.
public struct FileError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// Reading whole files and writing them atomically.
public enum Files {
    /// The whole file's bytes. Refuses folders, FIFOs, sockets and devices (before anything can
    /// block on them: the file is opened non-blocking and checked first) and files larger than
    /// `limit` bytes.
    public static func read(_ path: String, limit: Int = 1 << 34) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw FileError(path: path, reason: lastErrorMessage()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(path: path, reason: lastErrorMessage()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError(path: path, reason: "not a regular file (\(kind(info.st_mode)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let size = Int(info.st_size)
        guard size <= limit else { throw FileError(path: path, reason: "file is \(size) bytes, more than the \(limit) allowed") }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buf in
            while done < size {
                let n = Glibc.read(fd, buf.baseAddress! + done, size - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileError(path: path, reason: lastErrorMessage())
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < size { bytes.removeLast(size - done) }
        return bytes
    }

    /// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
    /// Either the old file or the complete new one is there afterwards, never a partial one.
    /// When `path` is a symbolic link, the link's target is written (atomically, in the
    /// target's folder) and the link stays a link. With `durable` false the data are not forced
    /// to the disk first (no fsync): still never a partial file for a reader or after the
    /// process dies, but a power cut may lose the write — for files that can be made again.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, durable: Bool = true) throws {
        let path = try resolvingLinks(path)
        // Unique per call: two threads of one process may write the same file.
        let temporary = "\(path).tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError(path: path, reason: "cannot write: \(lastErrorMessage())") }
        var failure = writeAll(fd, bytes)
        if failure == nil, durable, fsync(fd) != 0 { failure = lastErrorMessage() }
        if close(fd) != 0, failure == nil { failure = lastErrorMessage() }
        if failure == nil, rename(temporary, path) != 0 { failure = lastErrorMessage() }
        if let failure {
            unlink(temporary)
            throw FileError(path: path, reason: "cannot write: \(failure)")
        }
        // Make the rename itself durable: sync the folder's entry.
        guard durable else { return }
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dirFD = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    /// Appends `text` to the end of the existing file `path` in one `write` (O_APPEND), then, if
    /// `durable`, forces it to the disk (fdatasync). For a file that only grows by whole lines
    /// (a log, `metrics.csv`): the cost does not depend on the file's length, unlike a rewrite.
    public static func append(_ text: String, to path: String, durable: Bool = true) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, reason: "cannot append: \(lastErrorMessage())") }
        var failure = writeAll(fd, Array(text.utf8))
        if failure == nil, durable, fdatasync(fd) != 0 { failure = lastErrorMessage() }
        if close(fd) != 0, failure == nil { failure = lastErrorMessage() }
        if let failure { throw FileError(path: path, reason: "cannot append: \(failure)") }
    }

    /// Writes all of `bytes` to `fd` (again after EINTR and short writes); the error, or nil.
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return lastErrorMessage()
                }
                done += n
            }
            return nil
        }
    }

    /// `path` with every symbolic link in its last component followed (at most 32 of them), so
    /// that a write replaces the file a link points to instead of the link.
    public static func resolvingLinks(_ path: String) throws -> String {
        var current = path
        for _ in 0..<32 {
            var info = stat()
            guard lstat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: 4097)
            let n = readlink(current, &buffer, 4096)
            guard n > 0 else { throw FileError(path: path, reason: "cannot read the symbolic link: \(lastErrorMessage())") }
            let target = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("/") {
                current = target
            } else if let slash = current.lastIndex(of: "/") {
                current = String(current[...slash]) + target
            } else {
                current = target
            }
        }
        throw FileError(path: path, reason: "too many levels of symbolic links")
    }

    /// Exchanges two entries of one file system atomically (renameat2 RENAME_EXCHANGE): each
    /// name then holds what the other held, and no moment exists where either is missing.
    public static func exchange(_ a: String, _ b: String) throws {
        guard vae_exchange_paths(a, b) == 0 else { throw FileError(path: b, reason: "cannot exchange with \(a): \(lastErrorMessage())") }
    }

    /// Removes a file, or a folder and everything in it (symbolic links are removed, not followed).
    public static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in contents(ofDirectory: path) ?? [] { removeTree("\(path)/\(name)") }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Bytes available to this user on the file system holding `path` (nil if unknown).
    public static func freeSpace(_ path: String) -> Int? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int(info.f_bavail) * Int(info.f_frsize)
    }

    /// Whether `path` is a symbolic link.
    public static func isSymbolicLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// Writes UTF-8 text atomically.
    public static func writeAtomically(_ text: String, to path: String, durable: Bool = true) throws {
        try writeAtomically(Array(text.utf8), to: path, durable: durable)
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a folder and its parents (like `mkdir -p`).
    public static func createDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part + "/"
            if isDirectory(prefix) { continue }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw FileError(path: path, reason: "cannot create folder: \(lastErrorMessage())")
            }
        }
        guard isDirectory(path) else { throw FileError(path: path, reason: "exists and is not a folder") }
    }

    /// Entries of a folder (no `.` or `..`), or nil if it cannot be listed.
    public static func contents(ofDirectory path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// What a non-regular file is, for messages.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a folder"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR, S_IFBLK: "a device"
        default: "not a plain file"
        }
    }

    static func lastErrorMessage() -> String { String(cString: strerror(errno)) }
}

/// An exclusive lock on a file, held until released or until the process ends (the kernel
/// drops a `flock` when its holder dies, so a killed process never leaves a stale lock). The
/// file records who holds it, for the message a second writer gets.
public final class FileLock {
    public let path: String
    private var fd: Int32

    /// Takes the lock, writing `holder` into the file; throws, naming the current holder, if
    /// another process has it.
    public init(_ path: String, holder: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw FileError(path: path, reason: "cannot create the lock file: \(Files.lastErrorMessage())") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let holder = busy ? Self.readHolder(fd) ?? "another process" : nil
            let reason = holder.map { "held by \($0)" } ?? Files.lastErrorMessage()
            close(fd)
            fd = -1  // deinit runs after a throw from here: it must not close this number again
            throw FileLockError(path: path, holder: holder, reason: reason)
        }
        ftruncate(fd, 0)
        let bytes = Array(holder.utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { release() }

    /// Gives the lock up (also done when the object goes away).
    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    /// Who holds the lock on `path` now, or nil if nobody does (readers call this; it takes nothing).
    public static func holder(of path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd) ?? "another process"
    }

    static func readHolder(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, 0) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }
}

/// The lock is held by someone else (`holder` says who), or could not be taken.
public struct FileLockError: Error, CustomStringConvertible {
    public let path: String
    public let holder: String?
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}
