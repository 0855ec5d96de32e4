// swift-tools-version:6.0
// libFuzzer drivers for swift-vae's parsers. Build and run with scripts/fuzz.sh (it passes
// -sanitize=fuzzer,address to every target so that the parsers are instrumented).
import PackageDescription

let package = Package(
    name: "swift-vae-fuzz",
    dependencies: [.package(name: "swift-vae", path: "..")],
    targets: [
        .executableTarget(
            name: "vae-fuzz",
            dependencies: [.product(name: "FuzzTargets", package: "swift-vae")]),
    ],
    swiftLanguageModes: [.v5]
)
