import Foundation
import FuzzTargets

// libFuzzer driver: `main` hands control to libFuzzer (LLVMFuzzerRunDriver), which calls
// `fuzzOneInput` with each input. VAE_FUZZ_TARGET picks the parser (one of FuzzTargets.names).

let target = ProcessInfo.processInfo.environment["VAE_FUZZ_TARGET"] ?? "idx"
guard FuzzTargets.names.contains(target) else {
    FileHandle.standardError.write(Data("VAE_FUZZ_TARGET must be one of \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
    exit(2)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

let fuzzOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { data, size in
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    FuzzTargets.run(ProcessInfo.processInfo.environment["VAE_FUZZ_TARGET"] ?? "idx", bytes)
    return 0
}

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
