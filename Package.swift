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
        // Board and configuration files are YAML: Yams keeps each node's line, so an error names it.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C libraries from Debian, each behind a module map and a one-line shim header.
        .systemLibrary(name: "CGPIOD", pkgConfig: "libgpiod", providers: [.apt(["libgpiod-dev"])]),
        .systemLibrary(name: "CI2C", providers: [.apt(["libi2c-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Format 6 deflates each frame's records (raw deflate reads back in any language).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The same raw deflate written several times faster for a burst's large frames (ISA-L's
        // igzip, DESIGN.md 13).
        .systemLibrary(name: "CIsal", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        // Kernel macros Swift cannot import (ioctl request numbers, O_DIRECT).
        .target(name: "CLinuxShims"),

        // CRC-32C by CPU instruction (SSE4.2, ARMv8 CRC), checked at run time.
        .target(name: "CEdgelogCRC"),
        // The CPU's spin-wait hint (PAUSE, YIELD) for the threads that poll for each other.
        .target(name: "CSpinHint"),
        // Record model, codecs, CRC, errors. No Glibc: portable and fuzzable.
        .target(name: "EdgelogCore", dependencies: ["CEdgelogCRC"]),
        // Format, ring, buffers, commit, recovery. Talks to BlockDevice only.
        // The seal's SHA-256 is part of every commit and of recovery's adoption check.
        .target(name: "EdgelogStore", dependencies: ["EdgelogCore", "CZlib", "CIsal", "CSpinHint", .product(name: "Crypto", package: "swift-crypto")]),
        // Time path: capture times with their quality, clock steps, sync state, RTC offset.
        .target(name: "EdgelogTimebase", dependencies: ["EdgelogCore", "EdgelogStore"]),
        // Trust path: keys and signers, the verifier, signed heads and the anchor file.
        .target(name: "EdgelogSeal", dependencies: ["EdgelogCore", "EdgelogStore", .product(name: "Crypto", package: "swift-crypto")]),
        // Hardware access layer: one protocol per bus, HardwareError, the reading model, and
        // simulated buses (register images, scripted SPI, simulated serial peers). No Glibc.
        .target(name: "EdgelogHAL"),
        // Sensor drivers, each one file over the bus protocols (docs/SENSORS.md).
        .target(name: "EdgelogSensors", dependencies: ["EdgelogHAL"]),
        // Linux I/O: every syscall of the project goes through Syscalls.swift here, the kernel's
        // I2C, SPI, serial, GPIO and LED devices included.
        .target(name: "EdgelogLinux", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "EdgelogHAL", "CLinuxShims", "CI2C", "CGPIOD"]),
        // Ingress engine: sources, the stamping queue with its overload policies, the scheduler.
        .target(name: "EdgelogIngress", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "EdgelogHAL"]),
        // The main job: board files, the writer session, the services that run until stopped.
        .target(name: "EdgelogRuntime", dependencies: [
            "EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTimebase", "EdgelogHAL", "EdgelogSensors",
            "EdgelogLinux", "EdgelogIngress", "Yams",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Test doubles: memory and fault-injecting block devices, crash-image builder, hardware fakes.
        .target(name: "EdgelogTestKit", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogHAL", "CLinuxShims"]),

        .executableTarget(
            name: "edgelog",
            dependencies: [
                "EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTimebase", "EdgelogLinux", "EdgelogRuntime", "EdgelogIngress",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "edgelog-bench",
            dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTimebase", "EdgelogLinux", "EdgelogTestKit", "CSQLite", "CLinuxShims"]
        ),

        // Fuzz targets for every decoder of untrusted bytes (make fuzz). Built normally it replays
        // inputs (the seed corpus, fuzz/regressions) so that they run with the ordinary tests.
        .executableTarget(
            name: "edgelog-fuzz",
            dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit", "EdgelogHAL", "EdgelogSensors", "EdgelogRuntime"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),

        .testTarget(name: "CLibrariesTests", dependencies: ["CGPIOD", "CI2C", "CMosquitto", "CLinuxShims"]),
        .testTarget(name: "EdgelogCoreTests", dependencies: ["EdgelogCore"]),
        .testTarget(name: "EdgelogStoreTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit", "EdgelogLinux"]),
        .testTarget(name: "EdgelogTimebaseTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "EdgelogTestKit"]),
        .testTarget(name: "EdgelogSealTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogSeal", "EdgelogTestKit"]),
        .testTarget(name: "EdgelogCLITests", dependencies: ["EdgelogCore"]),
        .testTarget(name: "EdgelogSensorsTests", dependencies: ["EdgelogHAL", "EdgelogSensors", "EdgelogTestKit"]),
        .testTarget(name: "EdgelogRuntimeTests", dependencies: ["EdgelogRuntime", "EdgelogHAL", "EdgelogIngress", "EdgelogSensors", "EdgelogLinux",
                                                               "EdgelogCore", "EdgelogStore", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EdgelogIngressTests", dependencies: ["EdgelogCore", "EdgelogStore", "EdgelogTimebase", "EdgelogHAL", "EdgelogIngress", "EdgelogRuntime", "EdgelogSensors", "EdgelogLinux", "EdgelogTestKit"]),
    ],
    swiftLanguageModes: [.v6]
)
