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
        .library(name: "MultiplexerUpstream", targets: ["MultiplexerUpstream"]),
        .library(name: "MultiplexerGateway", targets: ["MultiplexerGateway"]),
        .library(name: "MultiplexerMockProvider", targets: ["MultiplexerMockProvider"]),
        .library(name: "Multiplexer", targets: ["Multiplexer"]),
        .executable(name: "multiplexer", targets: ["MultiplexerCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // SHA-1 (Redis script names) and SHA-256 (key digests); already in the graph through swift-nio-extras.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // OTLP/HTTP only: the gRPC exporter's packages are never built.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // MARK: Routing domain (no I/O)
        .target(
            name: "MultiplexerCore",
            dependencies: [.product(name: "Tracing", package: "swift-distributed-tracing")],
            swiftSettings: swiftSettings
        ),

        // MARK: Redis over hiredis
        // Debian's libhiredis-dev 0.14.1. No pkgConfig: its hiredis.pc adds -D_FILE_OFFSET_BITS=64,
        // which SwiftPM rejects with a warning on every build; the headers and library are on the
        // default paths (scripts/install-deps.sh installs the package).
        .systemLibrary(
            name: "CHiredis",
            path: "Sources/CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // The reply reader's limit (C with state of its own, so not in the header-only CHiredis).
        .target(
            name: "CHiredisReader",
            dependencies: ["CHiredis"],
            linkerSettings: [.linkedLibrary("hiredis")]
        ),
        .target(
            name: "MultiplexerRedis",
            dependencies: ["MultiplexerCore", "CHiredis", "CHiredisReader", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),

        // MARK: Upstream HTTP over libcurl
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

        // MARK: The embeddable library (the reference design's API; no server dependencies)
        .target(
            name: "Multiplexer",
            dependencies: [
                "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream", .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "EmbeddedService",
            dependencies: ["Multiplexer"],
            path: "Examples/EmbeddedService",
            swiftSettings: swiftSettings
        ),

        // MARK: The gateway and its executable
        .target(
            name: "MultiplexerGateway",
            dependencies: [
                "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        // MARK: Traces exported over OTLP/HTTP (swift-otel): only the `multiplexer` command links it; the
        // router, the gateway and the library speak swift-distributed-tracing's API and take any tracer.
        .target(
            name: "MultiplexerTelemetry",
            dependencies: [
                "MultiplexerGateway",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // MARK: A fake provider (strict limits, provider dialects, failure modes) for tests, the demo, benchmarks
        .target(
            name: "MultiplexerMockProvider",
            dependencies: [
                "MultiplexerCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        // MARK: Demo and local tooling, shipped in the `multiplexer` command (`demo`, `mock-provider`), never a
        // dependency of the gateway or the library.
        // Real local processes (redis-server, nginx, a TLS front with a throw-away CA) on free loopback ports.
        .target(
            name: "MultiplexerProcesses",
            swiftSettings: swiftSettings
        ),
        // A whole fleet on loopback (redis-server, gateway processes, nginx, mock providers): the demo,
        // the local fleet runner and the fleet tests share it.
        .target(
            name: "MultiplexerFleet",
            dependencies: [
                "MultiplexerGateway", "MultiplexerMockProvider", "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream", "MultiplexerProcesses",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `multiplexer` command. The target is named MultiplexerCLI so its module cannot collide with the
        // `Multiplexer` library module on a case-insensitive file system; the binary is `multiplexer`.
        .executableTarget(
            name: "MultiplexerCLI",
            dependencies: [
                "MultiplexerGateway", "MultiplexerMockProvider", "MultiplexerFleet", "MultiplexerTelemetry",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests only: support for the test targets, benchmarks
        // Redis Cluster and Sentinel topologies, services run around a test body, raw HTTP responses.
        .target(
            name: "MultiplexerTestSupport",
            dependencies: [
                "MultiplexerProcesses",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "RedisBench",
            dependencies: ["MultiplexerCore", "MultiplexerRedis", "MultiplexerProcesses"],
            path: "bench/RedisBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UpstreamBench",
            dependencies: ["MultiplexerUpstream", "MultiplexerCore"],
            path: "bench/upstream/Sources/UpstreamBench",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(
            name: "MultiplexerCoreTests",
            dependencies: ["MultiplexerCore", .product(name: "Tracing", package: "swift-distributed-tracing")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "QuotaStoreTests",
            dependencies: ["MultiplexerCore", "MultiplexerRedis", "MultiplexerTestSupport", "MultiplexerProcesses"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerRedisTests",
            dependencies: ["MultiplexerRedis", "MultiplexerCore", "MultiplexerTestSupport", "MultiplexerProcesses"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerUpstreamTests",
            dependencies: ["MultiplexerUpstream", "MultiplexerCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerGatewayTests",
            dependencies: [
                "MultiplexerGateway", "MultiplexerMockProvider", "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream", "MultiplexerTestSupport", "MultiplexerProcesses",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MultiplexerLibraryTests",
            dependencies: [
                "Multiplexer", "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream", "MultiplexerGateway", "MultiplexerMockProvider",
                "MultiplexerTestSupport", "MultiplexerProcesses",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // Real processes: redis-server, three `multiplexer serve` (the built binary), nginx, mock providers;
        // and static checks of deploy/ and docker-compose.yml.
        .testTarget(
            name: "FleetTests",
            dependencies: [
                "MultiplexerFleet", "MultiplexerGateway", "MultiplexerMockProvider", "MultiplexerCore", "MultiplexerRedis", "MultiplexerUpstream",
                "MultiplexerTestSupport", "MultiplexerProcesses",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The mock provider's modes and dialects, and the TLS/HTTP/2 front (nginx, a test CA) in front of it.
        .testTarget(
            name: "MultiplexerMockProviderTests",
            dependencies: [
                "MultiplexerMockProvider", "MultiplexerCore", "MultiplexerUpstream", "MultiplexerTestSupport", "MultiplexerProcesses",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
