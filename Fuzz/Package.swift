// swift-tools-version:6.1
// libFuzzer targets for the parsers that read untrusted bytes (docs/security.md, "Fuzzing"). Not part of the
// main package: they only link with the coverage and sanitizer flags scripts/fuzz.sh passes.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzDriver"] + products.map { .product(name: $0, package: "multiplexer") },
        swiftSettings: swiftSettings
    )
}

let package = Package(
    name: "multiplexer-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "multiplexer", path: "..")],
    targets: [
        .target(name: "CLibFuzzer"),
        .target(name: "FuzzDriver", dependencies: ["CLibFuzzer"], swiftSettings: swiftSettings),
        fuzzTarget("FuzzRequest", ["MultiplexerCore", "MultiplexerGateway"]),
        fuzzTarget("FuzzSSE", ["MultiplexerUpstream"]),
        fuzzTarget("FuzzConfig", ["MultiplexerCore", "MultiplexerGateway"]),
        fuzzTarget("FuzzRedisReply", ["MultiplexerCore", "MultiplexerRedis"]),
    ]
)
