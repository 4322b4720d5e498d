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
        .library(name: "MultiplexerUpstream", targets: ["MultiplexerUpstream"]),
        .executable(name: "UpstreamBench", targets: ["UpstreamBench"]),
    ],
    targets: [
        .target(
            name: "MultiplexerCore",
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CCurl",
            path: "Sources/CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(
            name: "MultiplexerUpstream",
            dependencies: ["MultiplexerCore", "CCurl"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UpstreamBench",
            dependencies: ["MultiplexerUpstream", "MultiplexerCore"],
            path: "bench/upstream/Sources/UpstreamBench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerUpstreamTests",
            dependencies: ["MultiplexerUpstream", "MultiplexerCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerCoreTests",
            dependencies: ["MultiplexerCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "QuotaStoreTests",
            dependencies: ["MultiplexerCore"],
            swiftSettings: swiftSettings
        ),
    ]
)
