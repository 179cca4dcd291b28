// swift-tools-version:6.0
// edgelog: an integrity-grade data logger runtime for ARM Linux gateway boards.
// The layout follows docs/DESIGN.md: C stays in small separate targets, the storage engine
// sees only the BlockDevice protocol, and Linux I/O lives in one module.
import PackageDescription

let package = Package(
    name: "edgelog",
    products: [
        .executable(name: "edgelog", targets: ["edgelog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // SHA-256, Ed25519, ECDSA P-256 and HMAC (BoringSSL underneath on Linux).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // C libraries from Debian, each behind a module map and a one-line shim header.
        .systemLibrary(name: "CGPIOD", pkgConfig: "libgpiod", providers: [.apt(["libgpiod-dev"])]),
        .systemLibrary(name: "CI2C", providers: [.apt(["libi2c-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Kernel macros Swift cannot import (ioctl request numbers, O_DIRECT).
        .target(name: "CLinuxShims"),

        // CRC-32C by CPU instruction (SSE4.2, ARMv8 CRC), checked at run time.
        .target(name: "CEdgelogCRC"),
        // Record model, codecs, CRC, errors. No Glibc: portable and fuzzable.
        .target(name: "EdgelogCore", dependencies: ["CEdgelogCRC"]),
        // Format, ring, buffers, commit, recovery. Talks to BlockDevice only.
        // The seal's SHA-256 is part of every commit and of recovery's adoption check.
        .target(name: "EdgelogStore", dependencies: ["EdgelogCore", .product(name: "Crypto", package: "swift-crypto")]),
        // Time path: capture times with their quality, clock steps, sync state, RTC offset.
        .target(name: "EdgelogTimebase", dependencies: ["EdgelogCore", "EdgelogStore"]),
        // Trust path: keys and signers, the verifier, signed heads and the anchor file.
        .target(name: "EdgelogSeal", dependencies: ["EdgelogCore", "EdgelogStore", .product(name: "Crypto", package: "swift-crypto")]),
        // Linux I/O: every syscall of the project goes through Syscalls.swift here.
        .target(name: "EdgelogLinux", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "CLinuxShims"]),
        // Test doubles: memory and fault-injecting block devices, crash-image builder.
        .target(name: "EdgelogTestKit", dependencies: ["EdgelogCore", "EdgelogStore"]),

        .executableTarget(
            name: "edgelog",
            dependencies: [
                "EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTimebase", "EdgelogLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "edgelog-bench",
            dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTimebase", "EdgelogLinux", "CSQLite"]
        ),

        // Fuzz targets for every decoder of untrusted bytes (make fuzz). Built normally it replays
        // inputs (the seed corpus, fuzz/regressions) so that they run with the ordinary tests.
        .executableTarget(
            name: "edgelog-fuzz",
            dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),

        .testTarget(name: "CLibrariesTests", dependencies: ["CGPIOD", "CI2C", "CMosquitto", "CLinuxShims"]),
        .testTarget(name: "EdgelogCoreTests", dependencies: ["EdgelogCore"]),
        .testTarget(name: "EdgelogStoreTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit", "EdgelogLinux"]),
        .testTarget(name: "EdgelogTimebaseTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "EdgelogTestKit"]),
        .testTarget(name: "EdgelogSealTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit"]),
        .testTarget(name: "EdgelogCLITests", dependencies: ["EdgelogCore"]),
    ],
    swiftLanguageModes: [.v6]
)
