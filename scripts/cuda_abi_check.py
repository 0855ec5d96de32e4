#!/usr/bin/env python3
"""vae loads the CUDA driver, NVRTC, cuBLAS, cuBLASLt and cuDNN with dlopen and calls them through
function types and constants written in the project itself (no CUDA header at build time). This
checks them against the real headers, where a machine has them (a CUDA toolkit, or PyPI's
nvidia-* wheels unpacked):

  python3 scripts/cuda_abi_check.py INCLUDE_DIR...    (e.g. $CUDA_HOME/include)
  python3 scripts/cuda_abi_check.py --list            (the functions it would check, and where)

- every function the Swift sources load (`library.function("name", Type.self)`, or
  `optionalFunction` for the ones a library may lack, or `cFunction("name", Type.self, in:)` for
  the version queries) and every one the C driver loads (`LOAD(table, field, "name")`, or
  `(type_t)dlsym(library, "name")`) has, argument by argument, the calling convention's
  class of the header's prototype (a pointer or 8-byte integer, a 4-byte integer or enum, a float);
- each constant and struct layout the sources hard-code has the header's value, and the source
  still holds the literal this table was checked against (so a changed source shows here).

Prints one line per item and exits 1 on any mismatch (2 when the headers cannot be compiled)."""
import os
import re
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sources = os.path.join(here, "..", "Sources")


def swift_class(t):
    t = t.strip().rstrip("?")
    if t in ("Int32", "UInt32"):
        return "i"
    if t == "Float":
        return "f"
    if t == "Double":
        return "d"
    if t in ("Int", "UInt", "Int64", "UInt64", "OpaquePointer") or t.startswith("Unsafe"):
        return "p"
    if t in ("()", "Void"):
        return "v"
    raise SystemExit(f"cuda_abi_check: no class for the Swift type {t}")


def c_class(t):
    t = t.strip()
    if "*" in t:
        return "p"
    if t in ("int", "unsigned int", "unsigned"):
        return "i"
    if t in ("size_t", "unsigned long long", "long", "long long"):
        return "p"
    if t == "float":
        return "f"
    if t == "void":
        return "v"
    raise SystemExit(f"cuda_abi_check: no class for the C type {t}")


def parameters(text):
    out, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "<(" and 1 or 0
        depth -= ch in ">)" and 1 or 0
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return out + ([current] if current.strip() else [])


def loaded_functions():
    """(symbol, argument classes, return class, file) for every function loaded by name."""
    found = []
    folder = os.path.join(sources, "Tensor")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".swift"):
            continue
        text = open(os.path.join(folder, name)).read()
        aliases = {}
        for m in re.finditer(r"typealias (\w+) = @convention\(c\) \((.*?)\) -> (\w+)", text, re.S):
            aliases[m.group(1)] = ([swift_class(p) for p in parameters(" ".join(m.group(2).split()))], swift_class(m.group(3)))
        for m in re.finditer(r'(?:function|Function|symbol)\("(\w+)", (\w+)\.self\b', text):
            arguments, result = aliases[m.group(2)]
            found.append((m.group(1), arguments, result, name))
    driver = open(os.path.join(sources, "CCUDA", "CUDADriver.c")).read()
    types = {}
    for m in re.finditer(r"typedef (\w+) \(\*(\w+)\)\((.*?)\);", driver):
        arguments = [] if m.group(3).strip() == "void" else [c_class(p) for p in m.group(3).split(",")]
        types[m.group(2)] = (arguments, "i" if m.group(1) == "int" else c_class(m.group(1)))
    fields = {}
    for m in re.finditer(r"\n    (\w+_t) (\w+(?:, \w+)*);", driver):
        for field in m.group(2).split(", "):
            fields[field] = m.group(1)
    for m in re.finditer(r'LOAD\(\w+, (\w+), "(\w+)"\)', driver):
        arguments, result = types[fields[m.group(1)]]
        found.append((m.group(2), arguments, result, "CUDADriver.c"))
    for m in re.finditer(r'\((\w+_t)\)dlsym\([\w.]+, "(\w+)"\)', driver):  # an optional one, looked up directly
        arguments, result = types[m.group(1)]
        found.append((m.group(2), arguments, result, "CUDADriver.c"))
    return found


# (header expression, the value the sources use, the source file, a literal it must still hold)
CONSTANTS = [
    ("CUBLASLT_MATMUL_DESC_TRANSA", 3, "Tensor/CUBLASLt.swift", "= (3, 4, 7, 8)"),
    ("CUBLASLT_MATMUL_DESC_TRANSB", 4, "Tensor/CUBLASLt.swift", "= (3, 4, 7, 8)"),
    ("CUBLASLT_MATMUL_DESC_EPILOGUE", 7, "Tensor/CUBLASLt.swift", "= (3, 4, 7, 8)"),
    ("CUBLASLT_MATMUL_DESC_BIAS_POINTER", 8, "Tensor/CUBLASLt.swift", "= (3, 4, 7, 8)"),
    ("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER", 11, "Tensor/CUBLASLt.swift", "= (11, 12)"),
    ("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD", 12, "Tensor/CUBLASLt.swift", "= (11, 12)"),
    ("CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", 1, "Tensor/CUBLASLt.swift", "preferenceMaxWorkspace: Int32 = 1"),
    ("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", 5, "Tensor/CUBLASLt.swift", "[5, 6, 7, 8]"),
    ("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES", 6, "Tensor/CUBLASLt.swift", "[5, 6, 7, 8]"),
    ("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", 7, "Tensor/CUBLASLt.swift", "[5, 6, 7, 8]"),
    ("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES", 8, "Tensor/CUBLASLt.swift", "[5, 6, 7, 8]"),
    ("CUBLASLT_EPILOGUE_BIAS", 4, "Tensor/CUBLASLt.swift", "relu ? 6 : 4"),
    ("CUBLASLT_EPILOGUE_RELU_BIAS", 6, "Tensor/CUBLASLt.swift", "relu ? 6 : 4"),
    ("CUBLASLT_EPILOGUE_RELU_AUX_BIAS", 134, "Tensor/CUBLASLt.swift", "case .biasReLUMask: 134"),
    ("CUBLASLT_EPILOGUE_DRELU_BGRAD", 152, "Tensor/CUBLASLt.swift", "case .reluGradient: 152"),
    ("CUBLASLT_EPILOGUE_BGRADB", 512, "Tensor/CUBLASLt.swift", "case .rowSumsOfA: 512"),
    ("CUBLAS_COMPUTE_32F", 68, "Tensor/CUBLASLt.swift", "key.bf16 ? 75 : 68"),
    ("CUBLAS_COMPUTE_32F_FAST_16BF", 75, "Tensor/CUBLAS.swift", "75, -1)"),
    ("CUBLAS_GEMM_DEFAULT", -1, "Tensor/CUBLAS.swift", "75, -1)"),
    ("CUDA_R_32F", 0, "Tensor/CUBLAS.swift", "CUDA_R_32F = 0"),
    ("CUBLAS_DEFAULT_MATH", 0, "Tensor/CUBLAS.swift", "setMathMode(handle, 0)"),
    ("CUBLAS_OP_T", 1, "Tensor/CUBLAS.swift", "transposeB ? 1 : 0"),
    ("sizeof(cublasLtMatmulAlgo_t)", 64, "Tensor/CUBLASLt.swift", "fromByteOffset: 64"),
    ("offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize)", 64, "Tensor/CUBLASLt.swift", "fromByteOffset: 64"),
    ("sizeof(cublasLtMatmulHeuristicResult_t) <= 1024", 1, "Tensor/CUBLASLt.swift", "resultBytes = 1024"),
    ("CUDNN_DATA_FLOAT", 0, "Tensor/CUDNN.swift", "= (0, 1, 1, 3, 1)"),
    ("CUDNN_TENSOR_NHWC", 1, "Tensor/CUDNN.swift", "= (0, 1, 1, 3, 1)"),
    ("CUDNN_CROSS_CORRELATION", 1, "Tensor/CUDNN.swift", "= (0, 1, 1, 3, 1)"),
    ("CUDNN_FMA_MATH", 3, "Tensor/CUDNN.swift", "= (0, 1, 1, 3, 1)"),
    ("CUDNN_DETERMINISTIC", 1, "Tensor/CUDNN.swift", "= (0, 1, 1, 3, 1)"),
] + [
    (f"sizeof({t})", 48, "Tensor/CUDNN.swift", "resultBytes = 48")
    for t in ("cudnnConvolutionFwdAlgoPerf_t", "cudnnConvolutionBwdDataAlgoPerf_t", "cudnnConvolutionBwdFilterAlgoPerf_t")
] + [
    (f"offsetof({t}, {field})", offset, "Tensor/CUDNN.swift", literal)
    for t in ("cudnnConvolutionFwdAlgoPerf_t", "cudnnConvolutionBwdDataAlgoPerf_t", "cudnnConvolutionBwdFilterAlgoPerf_t")
    for field, offset, literal in (("status", 4, "fromByteOffset: 4"), ("memory", 16, "memory at 16"), ("determinism", 24, "determinism at 24"),
                                   ("mathType", 28, "mathType at 28"))
] + [
    ("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT", 16, "CCUDA/CUDADriver.c", "MULTIPROCESSOR_COUNT = 16"),
    ("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR", 75, "CCUDA/CUDADriver.c", "COMPUTE_CAPABILITY_MAJOR = 75"),
    ("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR", 76, "CCUDA/CUDADriver.c", "COMPUTE_CAPABILITY_MINOR = 76"),
    ("CU_DEVICE_ATTRIBUTE_CLOCK_RATE", 13, "Tensor/CUDAContext.swift", "Int32(device.ordinal), 13,"),
    ("CU_STREAM_NON_BLOCKING", 1, "CCUDA/CUDADriver.c", "stream_create(stream, 1)"),
    ("CUDA_ERROR_UNSUPPORTED_PTX_VERSION", 222, "Tensor/KernelModule.swift", "unsupportedPTXVersion: Int32 = 222"),
    ("CU_STREAM_CAPTURE_MODE_RELAXED", 2, "CCUDA/CUDADriver.c", "2 /* CU_STREAM_CAPTURE_MODE_RELAXED */"),
    ("sizeof(CUDA_KERNEL_NODE_PARAMS_v2)", "sizeof(struct kernel_node_params)", "CCUDA/CUDADriver.c", "struct kernel_node_params {"),
] + [
    (f"offsetof(CUDA_KERNEL_NODE_PARAMS_v2, {ours})", f"offsetof(struct kernel_node_params, {theirs})", "CCUDA/CUDADriver.c", "struct kernel_node_params {")
    for ours, theirs in (("gridDimX", "grid_x"), ("blockDimX", "block_x"), ("sharedMemBytes", "shared_bytes"), ("kernelParams", "kernel_params"),
                         ("extra", "extra"), ("kern", "kern"), ("ctx", "ctx"))
]


def c_declaration(name, folders):
    """The function pointer type of `name`'s C declaration where cuBLAS's headers also overload it
    for C++ (wrappers that take the old cudaDataType compute type), so that `&name` alone is
    ambiguous; None for every other function."""
    for folder in folders:
        for root, _, files in os.walk(folder):
            for file in files:
                if not (file.startswith("cublas") and file.endswith(".h")):
                    continue
                text = open(os.path.join(root, file), errors="replace").read()
                if f"static inline cublasStatus_t {name}(" not in text:
                    continue
                m = re.search(rf"(\w+)\s+CUBLASWINAPI\s+{name}\s*\((.*?)\);", text, re.S)
                if m:
                    return f"{m.group(1)} (*)({' '.join(m.group(2).split())})"
    return None


def main():
    folders = sys.argv[1:]
    if folders == ["--list"]:
        # What would be checked: each function with the file that loads it, no header needed.
        for name, arguments, result, file in loaded_functions():
            print(f"{name} {file}")
        return 0
    if not folders:
        print("usage: python3 scripts/cuda_abi_check.py INCLUDE_DIR...  (the folders holding cuda.h, nvrtc.h, cublasLt.h and cudnn.h)", file=sys.stderr)
        return 2
    driver = open(os.path.join(sources, "CCUDA", "CUDADriver.c")).read()
    layout = re.search(r"struct kernel_node_params \{.*?\};", driver, re.S).group(0)
    lines = [
        "#include <cuda.h>", "#include <nvrtc.h>", "#include <cublas_v2.h>", "#include <cublasLt.h>",
        "#if __has_include(<cudnn.h>)", "#include <cudnn.h>", "#define HAVE_CUDNN 1", "#else", "#define HAVE_CUDNN 0", "#endif",
        "#include <cstddef>", "#include <cstdio>",
        "#include <string>", "#include <type_traits>", layout,
        "template <class T> char kind() {",
        "  if (std::is_pointer<T>::value) return 'p';",
        "  if (std::is_floating_point<T>::value) return sizeof(T) == 4 ? 'f' : 'd';",
        "  if (std::is_void<T>::value) return 'v';",
        "  if (std::is_enum<T>::value || std::is_integral<T>::value) return sizeof(T) == 8 ? 'p' : sizeof(T) == 4 ? 'i' : '?';",
        "  return '?';", "}",
        "template <class R, class... A> std::string classes(R (*)(A...)) { std::string s; (s.push_back(kind<A>()), ...); return s + ':' + kind<R>(); }",
        "int bad = 0;",
        "void function(const char *name, std::string header, const char *ours, const char *file) {",
        "  bool same = header == ours; bad += !same;",
        "  printf(\"%s %s (%s): header %s, vae %s\\n\", same ? \"ok\" : \"MISMATCH\", name, file, header.c_str(), ours); }",
        "void constant(const char *name, long long header, long long ours, const char *file, int literal) {",
        "  bool same = header == ours && literal; bad += !same;",
        "  printf(\"%s %s (%s): header %lld, vae %lld%s\\n\", same ? \"ok\" : \"MISMATCH\", name, file, header, ours, literal ? \"\" : \", but the source no longer holds the literal this check knows\"); }",
        "int main() {",
    ]
    # cuDNN's items only where its headers are (a CUDA toolkit need not have them).
    cudnn = []
    for name, arguments, result, file in loaded_functions():
        declared = c_declaration(name, folders)
        pointer = f"(decltype(static_cast<{declared}>(&{name})))nullptr" if declared else f"(decltype(&{name}))nullptr"
        line = f'  function("{name}", classes({pointer}), "{"".join(arguments)}:{result}", "{file}");'
        (cudnn if name.startswith("cudnn") else lines).append(line)
    for expression, value, file, literal in CONSTANTS:
        holds = literal in open(os.path.join(sources, file)).read()
        line = f'  constant("{expression}", (long long)({expression}), (long long)({value}), "{file}", {int(holds)});'
        (cudnn if "cudnn" in expression.lower() else lines).append(line)
    lines += ["#if HAVE_CUDNN", *cudnn, "#else", f'  printf("not checked: cuDNN\'s {len(cudnn)} items (no cudnn.h in the folders given)\\n");', "#endif"]
    lines += ['  printf("%d mismatches\\n", bad);', "  return bad ? 1 : 0;", "}"]
    with tempfile.TemporaryDirectory() as work:
        source, program = os.path.join(work, "abi.cpp"), os.path.join(work, "abi")
        open(source, "w").write("\n".join(lines) + "\n")
        compiler = os.environ.get("CXX", "g++")
        built = subprocess.run([compiler, "-std=c++17", "-w", *[f"-I{f}" for f in folders], source, "-o", program], capture_output=True, text=True)
        if built.returncode != 0:
            print(f"cuda_abi_check: the headers in {' '.join(folders)} do not compile with {compiler}:\n{built.stderr[-2000:]}")
            return 2
        return subprocess.run([program]).returncode


if __name__ == "__main__":
    sys.exit(main())
