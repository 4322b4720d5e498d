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
        .library(name: "MultiplexerCore", targets: ["MultiplexerCore"])
    ],
    targets: [
        .target(
            name: "MultiplexerCore",
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
