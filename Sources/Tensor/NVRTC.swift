#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A compiler error from NVRTC, with its log.
public struct NVRTCError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// NVIDIA's run-time compiler (`libnvrtc.so`), loaded with `dlopen`: CUDA C source in, PTX out
/// (the driver turns PTX into the GPU's code when it loads a module). NVRTC needs no GPU, so the
/// project's kernels are compile-checked on any machine that has it.
public final class NVRTC {
    public let path: String
    private let handle: UnsafeMutableRawPointer

    private typealias Create = @convention(c) (
        UnsafeMutablePointer<OpaquePointer?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32, UnsafePointer<UnsafePointer<CChar>?>?,
        UnsafePointer<UnsafePointer<CChar>?>?
    ) -> Int32
    private typealias Compile = @convention(c) (OpaquePointer?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private typealias GetSize = @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>) -> Int32
    private typealias GetBytes = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>) -> Int32
    private typealias Destroy = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias ErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?

    private let create: Create, compileProgram: Compile, destroy: Destroy
    private let logSize: GetSize, log: GetBytes, ptxSize: GetSize, ptx: GetBytes
    /// The machine code of a program compiled for a real architecture (NVRTC 11.1 and later).
    private let cubinSize: GetSize?, cubin: GetBytes?
    private let errorString: ErrorString

    /// Loads NVRTC from `path` (as `CUDA.libraries(environment:)` found it).
    public init(path: String) throws {
        let library: DynamicLibrary
        do { library = try DynamicLibrary(path, expected: "NVRTC 12 or 13") } catch { throw NVRTCError(message: error.description) }
        func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
            do { return try library.function(name, type) } catch { throw NVRTCError(message: error.description) }
        }
        self.path = path
        self.handle = library.handle
        create = try symbol("nvrtcCreateProgram", Create.self)
        compileProgram = try symbol("nvrtcCompileProgram", Compile.self)
        destroy = try symbol("nvrtcDestroyProgram", Destroy.self)
        logSize = try symbol("nvrtcGetProgramLogSize", GetSize.self)
        log = try symbol("nvrtcGetProgramLog", GetBytes.self)
        ptxSize = try symbol("nvrtcGetPTXSize", GetSize.self)
        ptx = try symbol("nvrtcGetPTX", GetBytes.self)
        cubinSize = library.optionalFunction("nvrtcGetCUBINSize", GetSize.self)
        cubin = library.optionalFunction("nvrtcGetCUBIN", GetBytes.self)
        errorString = try symbol("nvrtcGetErrorString", ErrorString.self)
    }

    /// PTX for `source` (named `name` in messages) compiled with `options`, e.g.
    /// `["--gpu-architecture=compute_90"]`; throws with NVRTC's log when it does not compile.
    public func compile(_ source: String, name: String, options: [String]) throws -> String {
        try compiled(source, name: name, options: options) { program in
            let text = output(program, size: ptxSize, bytes: ptx)
            return String(decoding: text.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Whether this NVRTC can give a GPU's machine code (``compileMachineCode(_:name:options:)``).
    public var makesMachineCode: Bool { cubinSize != nil && cubin != nil }

    /// The machine code (a CUBIN) for `source` compiled with `options` that name a real
    /// architecture (`--gpu-architecture=sm_90`): what a driver older than this NVRTC, which
    /// refuses its PTX, still loads.
    public func compileMachineCode(_ source: String, name: String, options: [String]) throws -> [UInt8] {
        guard let cubinSize, let cubin else { throw NVRTCError(message: "\(path) cannot give machine code (it lacks nvrtcGetCUBIN)") }
        return try compiled(source, name: name, options: options) { output($0, size: cubinSize, bytes: cubin) }
    }

    /// Compiles `source` and hands the program to `result`.
    private func compiled<T>(_ source: String, name: String, options: [String], _ result: (OpaquePointer?) -> T) throws -> T {
        var program: OpaquePointer?
        try check(create(&program, source, name, 0, nil, nil), "creating the program")
        defer { _ = destroy(&program) }
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let status = cOptions.map { UnsafePointer($0) }.withUnsafeBufferPointer { compileProgram(program, Int32(options.count), $0.baseAddress) }
        guard status == 0 else {
            let log = output(program, size: logSize, bytes: self.log)
            throw NVRTCError(message: "\(name) does not compile (\(describe(status))):\n\(String(decoding: log.prefix { $0 != 0 }, as: UTF8.self))")
        }
        return result(program)
    }

    /// One of the program's outputs, as NVRTC sizes it (a text's size counts its NUL).
    private func output(_ program: OpaquePointer?, size: GetSize, bytes: GetBytes) -> [UInt8] {
        var n = 0
        guard size(program, &n) == 0, n > 0 else { return [] }
        var buffer = [CChar](repeating: 0, count: n)
        guard bytes(program, &buffer) == 0 else { return [] }
        return buffer.map { UInt8(bitPattern: $0) }
    }

    private func describe(_ status: Int32) -> String { errorString(status).map { String(cString: $0) } ?? "NVRTC error \(status)" }

    private func check(_ status: Int32, _ what: String) throws {
        guard status == 0 else { throw NVRTCError(message: "NVRTC failed \(what): \(describe(status))") }
    }
}

/// The project's CUDA kernels (`Sources/Tensor/CUDA/Kernels.cu`), embedded in the library.
public enum CUDAKernels {
    /// The CUDA C source, as NVRTC compiles it.
    public static var source: String { String(decoding: PackageResources.Kernels_cu, as: UTF8.self) }

    /// Every kernel the source defines (each `extern "C" __global__ void name(`), in its order;
    /// each a GPU twin of a CPU function.
    public static let names: [String] = definitions.map(\.name)

    /// Each kernel definition of the source, in its order: its name and its parameter list.
    private static let definitions: [(name: String, parameters: Substring)] = {
        let marker = "extern \"C\" __global__ void "
        return source.components(separatedBy: marker).dropFirst().map { definition in
            (String(definition.prefix { $0 != "(" }), definition.drop { $0 != "(" }.dropFirst().prefix { $0 != ")" })
        }
    }()

    /// How a kernel's parameter reaches memory, from its declaration in the source.
    public enum ParameterUse: Equatable, Sendable {
        /// `const T *`: only read.
        case reads
        /// `T *`: read and written.
        case writes
        /// `long long *`: a table of addresses, followed to memory the launch does not name.
        case anything
    }

    /// Each kernel's parameters as the source declares them, by kernel name: how each pointer
    /// is used (nil for a value). A recorded step's graph takes each kernel's ``MemoryAccess``
    /// from it.
    public static let parameterUses: [String: [ParameterUse?]] = {
        var uses: [String: [ParameterUse?]] = [:]
        for (name, list) in definitions {
            uses[name] = list.split(separator: ",").map { parameter in
                let text = parameter.split(whereSeparator: \.isWhitespace).joined(separator: " ")
                guard let star = text.firstIndex(of: "*") else { return nil }
                let type = text[..<star]
                if type.contains("long long") { return .anything }
                return type.hasPrefix("const ") ? .reads : .writes
            }
        }
        return uses
    }()

    /// Each kernel's parameter types as the PTX declares them (`.param .u64 name_param_0` →
    /// "u64"), by kernel name: what a launch's arguments must match.
    public static func parameters(inPTX ptx: String) -> [String: [String]] {
        var result: [String: [String]] = [:]
        var current: String?
        for line in ptx.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if let range = text.range(of: ".entry ") {
                let name = text[range.upperBound...].prefix { $0 != "(" && $0 != " " }
                current = String(name)
                result[current!] = []
            } else if let kernel = current {
                if text.hasPrefix(".param ") {
                    let parts = text.split(separator: " ")
                    if parts.count >= 2 { result[kernel]!.append(String(parts[1].dropFirst())) }
                } else if text.hasPrefix(")") || text.hasPrefix("{") {
                    current = nil
                }
            }
        }
        return result
    }

    /// Throws unless `arguments` fit `kernel`'s parameters (`parameters`, from the PTX): the
    /// same number, each of a matching width and kind — a launch with a wrong list would
    /// otherwise read garbage on the GPU.
    public static func check(_ arguments: [KernelArgument], against parameters: [String], kernel: String) throws {
        let fits = arguments.count == parameters.count && zip(arguments, parameters).allSatisfy { $0.fits($1) }
        guard fits else {
            throw CUDAError("\(kernel) takes (\(parameters.joined(separator: ", "))); the launch gave (\(arguments.map(\.kind).joined(separator: ", ")))")
        }
    }

    /// NVRTC's options for a GPU of compute capability `major`.`minor`: PTX for that
    /// architecture (with `machineCode`, its machine code), C++17, IEEE division and square root
    /// (the CPU's rounding).
    public static func options(computeCapability major: Int, _ minor: Int, machineCode: Bool = false) -> [String] {
        ["--gpu-architecture=\(machineCode ? "sm" : "compute")_\(major)\(minor)", "--std=c++17", "--prec-div=true", "--prec-sqrt=true"]
    }
}
