import Foundation
import TestSupport
import Testing

/// The source tree's root (scripts/ is there).
private let sourceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
private let hasPython3 = (try? run("/usr/bin/env", ["python3", "-c", "pass"]))?.status == 0

/// `scripts/scaling_model.py` on `vae bench` rows made from a known step time, t_c(b, N) = 0.35 ms
/// + 0.031 ms × b + 1.2 ms / N_s (the update sharded from 4 ranks, as `--sharded-update auto`),
/// and rows the fit must leave out: it recovers the three constants, and its tables hold the
/// closed forms — on 10 Gb/s, 2 machines, t_x = 2·½·2.61 MB / 1.25 GB/s + 2·20 µs = 2.128 ms; on
/// 100 Gb/s, 8 machines, b = 128: t_c = 4.468 ms, t_x = 2·⅞·2.61 MB / 12.5 GB/s + 14·5 µs =
/// 0.4354 ms, so 91%. Too few rows: one line and a non-zero exit.
@Test(.enabled(if: hasPython3, "needs python3"))
func scalingModelRecoversAKnownStepTime() throws {
    let dir = temporaryDirectory()
    func row(_ tag: String, ranks: Int, rows b: Double, compute: Double? = nil) -> String {
        let sharded = ranks >= 4
        let update = 1.2 / (sharded ? Double(ranks) : 1)
        let exchange = sharded ? "gradients reduce-scattered, the update sharded, the weights all-gathered (ZeRO stage 1)" : "gradients summed by one all-reduce"
        let total = compute ?? 0.35 + 0.031 * b + update
        return #"{"tag": "\#(tag)", "result": {"ranks": \#(ranks), "compute_ms_per_step": \#(total), "update_ms_per_step": \#(update), "allreduce_bytes_per_step": 2610000, "gradient_exchange": "\#(exchange)"}}"#
    }
    var lines = [row("threads 1", ranks: 1, rows: 128)]
    for n in [2, 4, 8, 16] {
        lines.append(row("ranks \(n), global batch 128", ranks: n, rows: 128 / Double(n)))
        lines.append(row("ranks \(n), batch 128 per rank", ranks: n, rows: 128))
    }
    // Rows of other kinds, with times far off the line: the fit must not use them.
    lines.append(row("threads 16", ranks: 1, rows: 128, compute: 40))
    lines.append(row("ranks 4, global batch 128, --sharded-update never", ranks: 4, rows: 32, compute: 40))
    lines.append(#"{"tag": "ranks 8, global batch 128", "error": "no result (see scaling.log)"}"#)
    try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/scaling.jsonl", atomically: true, encoding: .utf8)
    let result = try run("/usr/bin/env", ["python3", sourceRoot + "/scripts/scaling_model.py", dir + "/scaling.jsonl", "--markdown", dir + "/model.md"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("t_c(b, N) = 0.350 ms + 0.0310 ms × b + 1.200 ms / N"), "\(result.stdout)")
    #expect(result.stdout.contains("| 10 Gb/s | 2 | 2.13 ms |"), "\(result.stdout)")
    let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("| 100 Gb/s | 8 | 0.44 ms |") }
    #expect(line?.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.dropFirst(4).first == "91%", "\(result.stdout)")
    #expect(try String(contentsOfFile: dir + "/model.md", encoding: .utf8) == result.stdout)

    try (lines[0] + "\n").write(toFile: dir + "/one.jsonl", atomically: true, encoding: .utf8)
    let tooFew = try run("/usr/bin/env", ["python3", sourceRoot + "/scripts/scaling_model.py", dir + "/one.jsonl"])
    #expect(tooFew.status != 0 && tooFew.stderr.contains("too few bench rows"), "\(tooFew.stderr)")
}

/// `scripts/cuda_abi_check.py --list` names every CUDA function the sources load, however they
/// load it: each string literal in Sources/ that is a CUDA function's name (cu…, nvrtc…,
/// cublas…, cudnn… followed by a capital) is on its list, except those that only name a failed
/// call in CCUDA's messages (`CALL(…, "cuMemAlloc")`, `describe(status, "cuDeviceTotalMem", …)`) or a library (`find("cublasLt", …)`) — so a
/// function loaded some new way cannot slip past the check against the headers (as five loaded
/// with `optionalFunction` once did).
@Test(.enabled(if: hasPython3, "needs python3"))
func theABICheckSeesEveryCUDAFunctionTheSourcesLoad() throws {
    let listed = try run("/usr/bin/env", ["python3", sourceRoot + "/scripts/cuda_abi_check.py", "--list"])
    #expect(listed.status == 0, "\(listed.stderr)")
    let checked = Set(listed.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    let literal = try Regex(#""((?:cu|nvrtc|cublas|cudnn)[A-Z][A-Za-z0-9_]*)""#)
    let onlyNamed = try Regex(#"(?:CALL\(.*, |describe\(\w+, |find\()"(\w+)""#)
    var named = Set<String>(), excluded = Set<String>()
    let sources = sourceRoot + "/Sources"
    for path in FileManager.default.enumerator(atPath: sources)!.compactMap({ $0 as? String }) where path.hasSuffix(".swift") || path.hasSuffix(".c") {
        let text = try String(contentsOfFile: sources + "/" + path, encoding: .utf8)
        for match in text.matches(of: literal) { named.insert(String(match.output[1].substring!)) }
        for match in text.matches(of: onlyNamed) { excluded.insert(String(match.output[1].substring!)) }
    }
    #expect(named.count > 80, "\(named.count) names found: the pattern no longer matches the sources")
    let unchecked = named.subtracting(excluded).subtracting(checked).sorted()
    #expect(unchecked.isEmpty, "loaded but not checked against the headers: \(unchecked)")
}
