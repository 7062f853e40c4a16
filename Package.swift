// swift-tools-version: 6.1
import PackageDescription

// Layers, dependencies pointing inward (see ARCHITECTURE.md):
//   CartritaEnvelope  (pure Swift: types, validation, UUIDv7)   no dependencies
//   CartritaCodec     (msgpack: native, checked against msgpack-c) -> Envelope, CMsgPack
//   CartritaLMDB      (thin safe layer over liblmdb)             -> CLMDB
//   CartritaLog       (LMDB event log, snapshots, indexes)       -> Codec, LMDB, CSHA256, Crypto
//   CartritaRuntime   (actor contract, mailboxes, routing: pure)  -> Envelope, Codec
//   CartritaAgents    (the tier-2 agents' deterministic work)    -> Runtime, Envelope
//   CartritaNode      (drives the actors on the log: delivery,
//                      snapshots, recovery; clock and entropy)   -> Runtime, Agents, Log
//   CartritaSim       (deterministic simulation of the hierarchy) -> Runtime, Agents, Node
//   CartritaTravel    (time travel, traces, capsules, forks)     -> Node, Log, Runtime
//   CartritaDebugger  (the web debugger's API, page, routes)     -> Travel, Hummingbird
//   CartritaTelemetry (OTLP spans built from the node's delivery
//                      observer; swift-otel, distributed tracing) -> Node, Runtime, Envelope
//   CartritaServer    (HTTP/WebSocket front door: Hummingbird,
//                      metrics, API keys, JWT)                   -> Node, Log, LMDB, Runtime, Debugger, Telemetry
//   CartritaLoad      (load tester on SwiftNIO, flow check)       -> Node, Envelope, NIO
//   CartritaCLI       (the `cartrita` executable)                -> everything above
// Server packages (Hummingbird, swift-otel, gRPC) never enter the inner three.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "cartrita",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cartrita", targets: ["CartritaCLI"]),
        .library(name: "CartritaEnvelope", targets: ["CartritaEnvelope"]),
        .library(name: "CartritaCodec", targets: ["CartritaCodec"]),
        .library(name: "CartritaLMDB", targets: ["CartritaLMDB"]),
        .library(name: "CartritaLog", targets: ["CartritaLog"]),
        .library(name: "CartritaRuntime", targets: ["CartritaRuntime"]),
        .library(name: "CartritaAgents", targets: ["CartritaAgents"]),
        .library(name: "CartritaNode", targets: ["CartritaNode"]),
        .library(name: "CartritaSim", targets: ["CartritaSim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // jwt-kit 5 needs swift-crypto 4 (CartritaLog only hashes with SHA-256, whose API is unchanged).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // The server's packages (CartritaServer only).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        // The load tester's HTTP client (CartritaLoad only); already in the graph through Hummingbird.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Tracing (CartritaTelemetry only). OTLP/HTTP only: the gRPC trait would pull grpc-swift
        // into every build for an exporter we do not use.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-service-context", from: "1.5.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .systemLibrary(
            name: "CMsgPack",
            pkgConfig: "msgpack",
            providers: [.apt(["libmsgpack-dev"])]
        ),
        // SHA-256 in C with the x86 SHA extensions: the record hash on the writer's hot path.
        .target(name: "CSHA256"),
        .target(
            name: "CartritaEnvelope",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaCodec",
            dependencies: ["CartritaEnvelope", "CMsgPack"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaLMDB",
            dependencies: ["CLMDB"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaLog",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLMDB", "CSHA256",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaRuntime",
            dependencies: ["CartritaEnvelope", "CartritaCodec"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaAgents",
            dependencies: ["CartritaRuntime", "CartritaEnvelope"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaNode",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLog", "CartritaRuntime", "CartritaAgents",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CartritaSim",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaRuntime", "CartritaAgents", "CartritaLog", "CartritaNode",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Tracing (issue 5, seed §5.1.2): spans for each hop, built outside the deterministic core
        // from what the node reports, exported by swift-otel over OTLP/HTTP when OTEL_* asks.
        .target(
            name: "CartritaTelemetry",
            dependencies: [
                "CartritaEnvelope", "CartritaRuntime", "CartritaNode",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ServiceContextModule", package: "swift-service-context"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP front door (issue 5): the only target with Hummingbird, ServiceLifecycle,
        // swift-log and swift-metrics.
        .target(
            name: "CartritaServer",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLMDB", "CartritaLog", "CartritaRuntime", "CartritaNode", "CartritaDebugger",
                "CartritaTelemetry",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load tester (issue 5, seed §8.1.2): keep-alive HTTP/1.1 clients on SwiftNIO and the
        // message-flow check (seed §8.1.1). Outer: no core target sees NIO.
        .target(
            name: "CartritaLoad",
            dependencies: [
                "CartritaEnvelope", "CartritaRuntime", "CartritaNode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Time-travel debugging and incident capsules (issue 6): reads the log, drives the
        // same cells as recovery. No server packages.
        .target(
            name: "CartritaTravel",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLog", "CartritaRuntime", "CartritaNode",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The web debugger (issue 6): its JSON API, page and routes, used by `cartrita debug` and
        // by the server at /debug.
        .target(
            name: "CartritaDebugger",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLog", "CartritaRuntime", "CartritaNode", "CartritaTravel",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "CartritaCLI",
            dependencies: [
                "CartritaEnvelope", "CartritaCodec", "CartritaLMDB", "CartritaLog", "CartritaRuntime", "CartritaAgents",
                "CartritaNode", "CartritaSim", "CartritaServer", "CartritaTravel", "CartritaLoad", "CartritaDebugger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // What several test targets share (running the real `cartrita` binary); not a product.
        .target(
            name: "CartritaTestSupport",
            path: "Tests/CartritaTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaServerTests",
            dependencies: [
                "CartritaTestSupport",
                "CartritaServer", "CartritaTelemetry", "CartritaNode", "CartritaRuntime", "CartritaLog", "CartritaEnvelope",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // Signs test tokens with keys generated inside the tests.
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaLoadTests",
            dependencies: [
                "CartritaTestSupport",
                "CartritaLoad", "CartritaServer", "CartritaNode", "CartritaRuntime", "CartritaEnvelope",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaEnvelopeTests",
            dependencies: ["CartritaEnvelope"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaCodecTests",
            // CMsgPack: msgpack-c's packer is the reference the native writer is checked against.
            dependencies: ["CartritaCodec", "CartritaEnvelope", "CMsgPack"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaRuntimeTests",
            dependencies: ["CartritaRuntime", "CartritaEnvelope", "CartritaCodec"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaAgentsTests",
            dependencies: ["CartritaAgents", "CartritaRuntime", "CartritaEnvelope"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaNodeTests",
            dependencies: [
                "CartritaTestSupport",
                "CartritaNode", "CartritaRuntime", "CartritaAgents", "CartritaLog", "CartritaCodec", "CartritaEnvelope",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaSimTests",
            dependencies: ["CartritaTestSupport", "CartritaSim", "CartritaNode", "CartritaRuntime", "CartritaEnvelope", "CartritaLog"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaLMDBTests",
            dependencies: ["CartritaLMDB"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaTravelTests",
            dependencies: [
                "CartritaTestSupport",
                "CartritaTravel", "CartritaNode", "CartritaRuntime", "CartritaAgents", "CartritaLog", "CartritaCodec",
                "CartritaEnvelope", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaDebuggerTests",
            dependencies: [
                "CartritaDebugger", "CartritaTravel", "CartritaNode", "CartritaRuntime", "CartritaLog", "CartritaEnvelope",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CartritaLogTests",
            dependencies: [
                "CartritaTestSupport", "CartritaLog", "CartritaCodec", "CartritaEnvelope", "CartritaLMDB",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
