// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "multiplexer",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MultiplexerCore", targets: ["MultiplexerCore"]),
        .library(name: "MultiplexerRedis", targets: ["MultiplexerRedis"]),
        .library(name: "MultiplexerGateway", targets: ["MultiplexerGateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .target(
            name: "MultiplexerCore",
            swiftSettings: swiftSettings
        ),
        // Debian's libhiredis-dev 0.14.1. No pkgConfig: its hiredis.pc adds -D_FILE_OFFSET_BITS=64,
        // which SwiftPM rejects with a warning on every build; the headers and library are on the
        // default paths (scripts/install-deps.sh installs the package).
        .systemLibrary(
            name: "CHiredis",
            path: "Sources/CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "MultiplexerRedis",
            dependencies: ["MultiplexerCore", "CHiredis"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MultiplexerGateway",
            dependencies: [
                "MultiplexerCore", "MultiplexerRedis",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerGatewayTests",
            dependencies: ["MultiplexerGateway", "MultiplexerCore", "MultiplexerRedis", "MultiplexerTestSupport"],
            swiftSettings: swiftSettings
        ),
        // Real processes (redis-server, nginx, gateways) for tests, benchmarks and the local fleet.
        .target(
            name: "MultiplexerTestSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "RedisBench",
            dependencies: ["MultiplexerCore", "MultiplexerRedis", "MultiplexerTestSupport"],
            path: "bench/RedisBench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerRedisTests",
            dependencies: ["MultiplexerRedis", "MultiplexerCore", "MultiplexerTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerCoreTests",
            dependencies: ["MultiplexerCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "QuotaStoreTests",
            dependencies: ["MultiplexerCore", "MultiplexerRedis", "MultiplexerTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
