// swift-tools-version:6.0
import PackageDescription

// Data flows one way: Datasets → Tensor → NN → VAE → the `vae` CLI.
// Imaging and SafeTensors are leaf utilities for pictures and checkpoint files.
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "swift-vae",
    products: [
        .library(name: "SwiftVAE", targets: ["Tensor", "NN", "VAE", "Datasets", "Imaging", "SafeTensors", "Files"]),
        .executable(name: "vae", targets: ["vae"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries from Debian: OpenBLAS (GEMM), zlib (gzip), libpng (PNG files).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),

        .target(name: "Tensor", dependencies: ["CBLAS"], swiftSettings: optimize),
        .target(name: "NN", dependencies: ["Tensor"], swiftSettings: optimize),
        .target(name: "Files"),
        .target(name: "SafeTensors", dependencies: ["Files"]),
        .target(name: "VAE", dependencies: ["Tensor", "NN", "SafeTensors", "Files"], swiftSettings: optimize),
        .target(name: "Datasets", dependencies: ["Tensor", "CZlib", "Files"], swiftSettings: optimize),
        .target(name: "Imaging", dependencies: ["CPNG", "Files"]),
        .executableTarget(
            name: "vae",
            dependencies: [
                "Tensor", "NN", "VAE", "Datasets", "Imaging", "Files",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: optimize),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Tensor"]),
        .testTarget(name: "VAETests", dependencies: ["VAE", "NN", "Tensor", "SafeTensors"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tensor", "CZlib"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "FilesTests", dependencies: ["Files"]),
        .testTarget(name: "CLITests", dependencies: []),
    ],
    swiftLanguageModes: [.v5]
)
