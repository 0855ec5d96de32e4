// swift-tools-version:6.0
import PackageDescription

// Data flows one way: Datasets → Tensor → NN → VAE → Training (the run) → Reports → the `vae` CLI.
// Imaging and SafeTensors are leaf utilities for pictures and checkpoint files; SwiftVAE is the
// one module a library user imports (it re-exports the others).
let package = Package(
    name: "swift-vae",
    products: [
        // `import SwiftVAE` re-exports the rest; they are listed so that DocC documents each.
        .library(name: "SwiftVAE", targets: ["SwiftVAE", "Training", "Reports", "VAE", "NN", "Tensor", "Datasets", "Imaging", "SafeTensors", "Files"]),
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
        .executable(name: "vae", targets: ["vae"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `swift package generate-documentation` (the DocC catalog in Sources/SwiftVAE); nothing is built from it otherwise.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // C libraries from Debian: oneDNN and OpenBLAS (GEMM), zlib (gzip), libpng (PNG files).
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CFreeType", pkgConfig: "freetype2", providers: [.apt(["libfreetype-dev"])]),

        // Elementwise hot loops in C, compiled per instruction set and dispatched at load time.
        .target(name: "CKernels"),
        // oneDNN's matmul primitive in its bf16 math mode (the AMX path of --precision bf16).
        .target(name: "CMatmul", linkerSettings: [.linkedLibrary("dnnl")]),
        // The CUDA driver API, loaded at run time with dlopen (no CUDA at build time).
        .target(name: "CCUDA", linkerSettings: [.linkedLibrary("dl")]),
        // The CUDA kernels' source is embedded in the library and compiled by NVRTC at run time.
        .target(name: "Tensor", dependencies: ["CBLAS", "CDNNL", "CKernels", "CCUDA", "CMatmul"], resources: [.embedInCode("CUDA/Kernels.cu")]),
        .target(name: "NN", dependencies: ["Tensor", "CKernels"]),
        // System calls Swift's Glibc module does not declare (renameat2), and the SIGINT/SIGTERM watcher thread.
        .target(name: "CFiles"),
        .target(name: "Files", dependencies: ["CFiles"]),
        .target(name: "SafeTensors", dependencies: ["Files"]),
        .target(name: "VAE", dependencies: ["Tensor", "NN", "Datasets", "SafeTensors", "Files", "CKernels"]),
        // The training run: run folders, configuration, data splits, the epoch loop, schedules, metrics.
        .target(name: "Training", dependencies: ["Tensor", "NN", "VAE", "Datasets", "Imaging", "SafeTensors", "Files", "CFiles", "CKernels"]),
        // What a run shows people: TensorBoard event files and the self-contained HTML report.
        .target(name: "Reports", dependencies: ["Training", "VAE", "Imaging", "Files", "Tensor"]),
        .target(name: "SwiftVAE", dependencies: ["Tensor", "NN", "VAE", "Datasets", "Imaging", "SafeTensors", "Files", "Training", "Reports"]),
        .target(name: "Datasets", dependencies: ["Tensor", "CZlib", "Files", "CKernels", "Imaging"]),
        .target(name: "Imaging", dependencies: ["CPNG", "CFreeType", "Files"]),
        // Every parser of untrusted input by name: replayed by the tests, driven by Fuzz/ (libFuzzer).
        .target(name: "FuzzTargets", dependencies: ["Datasets", "Imaging", "SafeTensors", "VAE", "Training", "Reports", "Files"]),
        .executableTarget(
            name: "vae",
            dependencies: [
                "Tensor", "NN", "VAE", "Datasets", "Imaging", "Files", "Training", "Reports", "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            plugins: ["BuildInfo"]),
        // Records the commit `vae` is built from (`vae --version`).
        .plugin(name: "BuildInfo", capability: .buildTool()),

        // The README's library program, built and run by the tests (ExampleTests).
        .executableTarget(name: "library-tour", dependencies: ["SwiftVAE"], path: "Examples/LibraryTour"),

        // Finite differences, tolerances and temporary folders shared by the tests.
        .target(name: "TestSupport", dependencies: ["Tensor"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Tensor", "CKernels", "TestSupport"]),
        .testTarget(name: "VAETests", dependencies: ["VAE", "NN", "Tensor", "Datasets", "SafeTensors", "Files", "TestSupport"]),
        .testTarget(name: "ReportsTests", dependencies: ["Reports", "Training", "VAE", "Imaging", "Files", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "VAE", "NN", "Tensor", "Datasets", "Files", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tensor", "CZlib", "Files", "Imaging", "TestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "TestSupport"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"]),
        .testTarget(name: "FilesTests", dependencies: ["Files", "TestSupport"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets"]),
        // Runs the built `vae` binary as a user would.
        .testTarget(name: "CLITests", dependencies: ["vae", "Imaging", "Tensor", "Training", "TestSupport", "CZlib"]),
        // Runs the README's library program and checks that the README shows it verbatim.
        .testTarget(name: "ExampleTests", dependencies: ["library-tour", "Imaging", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
