import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation

// MARK: - What `cartrita serve` is told

/// The server's settings. Sources, later ones winning: the defaults below, the JSON config file
/// (`--config FILE`), `CARTRITA_*` environment variables, then the command line. Every limit
/// carries its unit in its name.
public struct ServerConfiguration: Sendable {
    public var dataPath = "./data"
    /// 127.0.0.1 by default: the API is not on the network until someone decides it should be.
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); the bound port is reported by `ServerHandle.port`.
    public var port = 8001
    public var durability: Durability = .durable
    /// Largest request body; past it the answer is 413.
    public var maxBodyBytes = 1 << 20
    /// How long `POST /v3/tasks` (without `async=true`) waits for the terminal answer before it
    /// answers 202 with the task id.
    public var syncTimeoutMilliseconds: Int64 = 30_000
    /// Most requests waiting for an answer at once; past it the answer is 429.
    public var maxWaitingRequests = 10_000
    /// On SIGTERM, how long requests in flight may still finish; those still waiting then are
    /// answered 503 with their task id (the task is in the log and a restart finishes it).
    public var drainTimeoutMilliseconds: Int64 = 10_000
    /// Largest page of `GET /v3/tasks`.
    public var maxPageTasks = 100
    /// Most log records one `GET /v3/tasks` page reads before it returns a cursor to go on from.
    public var maxScanRecordsPerPage = 20_000
    /// Most records of a task's message flow that `GET /v3/tasks/{id}` returns.
    public var maxFlowRecords = 1_000
    /// Most `GET /v3/tasks/{id}/events` streams open at once, and how long one may stay open.
    public var maxEventStreams = 1_000
    public var maxEventStreamMilliseconds: Int64 = 300_000
    /// How long `GET /ready` waits for every supervisor to answer its probe.
    public var readyTimeoutMilliseconds: Int64 = 2_000
    /// The node: most new-work messages an actor's mailbox holds, snapshot period.
    public var mailboxCapacity = 10_000
    public var snapshotEveryDeliveries = 1_000
    /// The log's group commit waits at most this long for more records when fewer wait than the
    /// last commit held (`EventLogConfiguration.groupCommitLingerMicroseconds`).
    public var groupCommitLingerMicroseconds = EventLogConfiguration().groupCommitLingerMicroseconds
    /// The log writer drops the process's mappings of the log file's pages after this many
    /// committed bytes (`EventLogConfiguration.releaseMappedPagesEveryBytes`; 0: never), so
    /// the server's RSS does not grow with its log.
    public var releaseMappedPagesEveryBytes = EventLogConfiguration().releaseMappedPagesEveryBytes
    /// Most tasks the orchestrator holds in flight.
    public var maxPendingTasks = 100_000
    /// The orchestrator's routing table: the standard one, changed by the config's `routing`
    /// (task-type prefix → supervisor address; null removes a prefix, whose tasks are then
    /// answered `unknown_task_type`).
    public var routing: RoutingTable = .standard
    /// One supervisor's limits instead of the shared ones (`budgets`: supervisor address →
    /// `max_concurrent_tasks`, `tokens`, `cost_usd`).
    public var budgets: [Address: Hierarchy.SupervisorBudget] = [:]
    public var auth = Auth()
    /// Root folder of the I/O gateway's `files` service (tasks' `file://` inputs); nil: no
    /// files service, and such inputs are answered `io_unavailable`.
    public var filesRoot: String?
    /// The gateway's services, by name, beside `files` (tests put their own here).
    var ioServices: [String: any IOService] = [:]

    public struct Auth: Sendable {
        /// Off: every request is the anonymous user with the `admin` role (a local tool on
        /// loopback). On: every /v3 request needs an API key.
        public var required = false
        /// Role → task-type prefixes it may submit (`""` allows every type). `admin` may also
        /// see and cancel every user's tasks.
        public var roles: [String: [String]] = ["admin": [""], "user": [""]]
        /// Per-user token bucket: steady rate and burst.
        public var rateLimitPerSecond: Double = 5_000
        public var rateLimitBurst: Double = 10_000
        /// Origins a browser may call from; a request with an `Origin` header not in this list
        /// is refused 403 (a page on another site must not drive a local server).
        public var allowedOrigins: [String] = []
        /// JWT bearer tokens beside API keys; off until a key is set.
        public var jwt = JWT()
        /// When true (and `required`), `/metrics` and `/ready` need credentials too (any role);
        /// off by default so a local Prometheus scrapes without a key. `/health` stays open.
        public var protectMetrics = false

        public init() {}
    }

    /// JWT bearer tokens (jwt-kit): each algorithm is on when its key is set. Issuer and audience
    /// are then required and checked on every token, with expiry (and `nbf` when present).
    /// The token's `sub` is the user id, its `role` claim maps to task-type prefixes through
    /// `Auth.roles`, as an API key's role does.
    public struct JWT: Sendable {
        /// HS256 shared secret (at least 32 bytes).
        public var hs256Secret: String?
        /// ES256 (P-256) and RS256 (2048 bits or more) public keys, PEM text.
        public var es256PublicKeyPEM: String?
        public var rs256PublicKeyPEM: String?
        public var issuer: String?
        public var audience: String?
        /// Clock skew tolerated on `exp` and `nbf`.
        public var leewaySeconds = 0
        /// A JSON Web Key Set, as JSON text (`jwks`), or the file that holds one (`jwks_file`,
        /// read again when it changes, see `JWKSKeys`); tokens choose its keys by `kid`.
        public var jwksJSON: String?
        public var jwksFile: String?
        /// A changed `jwks_file` is read again at most this often (a removed key stops
        /// verifying within it); a `kid` it does not have rechecks the file at most once a second.
        public var jwksReloadSeconds = 30

        public var isEnabled: Bool {
            self.hs256Secret != nil || self.es256PublicKeyPEM != nil || self.rs256PublicKeyPEM != nil || self.jwksJSON != nil
                || self.jwksFile != nil
        }

        public init() {}
    }

    public init() {}

    public struct ConfigError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
        init(_ message: String) { self.message = message }
    }

    // MARK: The config file

    /// Applies a JSON config file: `{"data": …, "host": …, "port": …, "durability": …, "files_root": …,
    /// "limits": {"max_body_bytes", "sync_timeout_ms", "max_waiting_requests", "drain_timeout_ms",
    /// "max_page_tasks", "mailbox_capacity", "max_pending_tasks", "snapshot_every_deliveries",
    /// "group_commit_linger_us", "log_mapped_release_bytes"},
    /// "auth": {"required", "roles": {ROLE: [PREFIX]}, "rate_limit_per_s", "rate_limit_burst",
    /// "allowed_origins": [ORIGIN], "protect_metrics", "jwt": {"hs256_secret", "es256_public_key",
    /// "es256_public_key_file", "rs256_public_key", "rs256_public_key_file", "issuer", "audience",
    /// "leeway_s", "jwks" (a JWKS object), "jwks_file", "jwks_reload_s"}}}`. Unknown keys are refused
    /// with their path.
    public mutating func apply(configFile path: String) throws(ConfigError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read the config file \(path)") }
        let json: JSON
        do {
            json = try JSONParser().parse([UInt8](data))
        } catch {
            throw ConfigError("\(path): \(error)")
        }
        do {
            try self.apply(json)
        } catch {
            throw ConfigError("\(path): \(error.message)")
        }
    }

    mutating func apply(_ json: JSON) throws(ConfigError) {
        guard case .object(let members) = json else { throw ConfigError("the config file holds one JSON object") }
        for (key, value) in members {
            switch key {
            case "data": self.dataPath = try Self.string(value, key)
            case "host": self.host = try Self.string(value, key)
            case "files_root": self.filesRoot = try Self.string(value, key)
            case "port": self.port = try Self.int(value, key, 0...65_535)
            case "durability":
                guard let mode = Durability(rawValue: try Self.string(value, key)) else { throw ConfigError("durability is durable, relaxed or fast") }
                self.durability = mode
            case "limits":
                guard case .object(let limits) = value else { throw ConfigError("limits must be an object") }
                for (name, limit) in limits {
                    let path = "limits.\(name)"
                    switch name {
                    case "max_body_bytes": self.maxBodyBytes = try Self.int(limit, path, 1...(256 << 20))
                    case "sync_timeout_ms": self.syncTimeoutMilliseconds = Int64(try Self.int(limit, path, 0...3_600_000))
                    case "max_waiting_requests": self.maxWaitingRequests = try Self.int(limit, path, 1...10_000_000)
                    case "drain_timeout_ms": self.drainTimeoutMilliseconds = Int64(try Self.int(limit, path, 0...3_600_000))
                    case "max_page_tasks": self.maxPageTasks = try Self.int(limit, path, 1...10_000)
                    case "mailbox_capacity": self.mailboxCapacity = try Self.int(limit, path, 1...10_000_000)
                    case "max_pending_tasks": self.maxPendingTasks = try Self.int(limit, path, 1...10_000_000)
                    case "snapshot_every_deliveries": self.snapshotEveryDeliveries = try Self.int(limit, path, 1...10_000_000)
                    case "group_commit_linger_us": self.groupCommitLingerMicroseconds = try Self.int(limit, path, 0...100_000)
                    case "log_mapped_release_bytes": self.releaseMappedPagesEveryBytes = try Self.int(limit, path, 0...(1 << 40))
                    default: throw ConfigError("unknown key \(path)")
                    }
                }
            case "routing": try self.applyRouting(value, "routing")
            case "budgets": try self.applyBudgets(value, "budgets")
            case "auth":
                guard case .object(let fields) = value else { throw ConfigError("auth must be an object") }
                for (name, field) in fields {
                    let path = "auth.\(name)"
                    switch name {
                    case "required":
                        guard case .bool(let flag) = field else { throw ConfigError("\(path) must be true or false") }
                        self.auth.required = flag
                    case "roles":
                        guard case .object(let roles) = field else { throw ConfigError("\(path) maps a role to its task-type prefixes") }
                        var table: [String: [String]] = [:]
                        for (role, prefixes) in roles {
                            guard case .array(let items) = prefixes else { throw ConfigError("\(path).\(role) must be an array of prefixes") }
                            table[role] = try items.map { (item) throws(ConfigError) in try Self.string(item, "\(path).\(role)") }
                        }
                        self.auth.roles = table
                    case "rate_limit_per_s": self.auth.rateLimitPerSecond = try Self.positive(field, path)
                    case "rate_limit_burst": self.auth.rateLimitBurst = try Self.positive(field, path)
                    case "allowed_origins":
                        guard case .array(let items) = field else { throw ConfigError("\(path) must be an array of origins") }
                        self.auth.allowedOrigins = try items.map { (item) throws(ConfigError) in try Self.string(item, path) }
                    case "protect_metrics":
                        guard case .bool(let flag) = field else { throw ConfigError("\(path) must be true or false") }
                        self.auth.protectMetrics = flag
                    case "jwt":
                        guard case .object(let settings) = field else { throw ConfigError("\(path) must be an object") }
                        for (setting, item) in settings {
                            let itemPath = "\(path).\(setting)"
                            switch setting {
                            case "hs256_secret": self.auth.jwt.hs256Secret = try Self.string(item, itemPath)
                            case "es256_public_key": self.auth.jwt.es256PublicKeyPEM = try Self.string(item, itemPath)
                            case "rs256_public_key": self.auth.jwt.rs256PublicKeyPEM = try Self.string(item, itemPath)
                            case "es256_public_key_file": self.auth.jwt.es256PublicKeyPEM = try Self.file(try Self.string(item, itemPath), itemPath)
                            case "rs256_public_key_file": self.auth.jwt.rs256PublicKeyPEM = try Self.file(try Self.string(item, itemPath), itemPath)
                            case "issuer": self.auth.jwt.issuer = try Self.string(item, itemPath)
                            case "audience": self.auth.jwt.audience = try Self.string(item, itemPath)
                            case "leeway_s": self.auth.jwt.leewaySeconds = try Self.int(item, itemPath, 0...3_600)
                            case "jwks":
                                guard case .object = item else { throw ConfigError("\(itemPath) must be a JWKS object ({\"keys\": [...]})") }
                                self.auth.jwt.jwksJSON = item.rendered()
                            case "jwks_file": self.auth.jwt.jwksFile = try Self.string(item, itemPath)
                            case "jwks_reload_s": self.auth.jwt.jwksReloadSeconds = try Self.int(item, itemPath, 0...86_400)
                            default: throw ConfigError("unknown key \(itemPath)")
                            }
                        }
                    default: throw ConfigError("unknown key \(path)")
                    }
                }
            default: throw ConfigError("unknown key \(key)")
            }
        }
    }

    /// Prefix → supervisor address (or null: the prefix is no longer routed), applied to the
    /// table so far. Checked whole, at start: a table that does not build, or a supervisor this
    /// server does not run, is a configuration error, not tasks lost later.
    mutating func applyRouting(_ value: JSON, _ path: String) throws(ConfigError) {
        guard case .object(let entries) = value else {
            throw ConfigError("\(path) maps task-type prefixes to supervisor addresses, like {\"llm.\": \"supervisor.intelligence@v1.0\"}")
        }
        var routes = self.routing.routes
        for (prefix, target) in entries {
            routes.removeAll { $0.prefix == prefix }
            switch target {
            case .null:
                continue
            case .string(let text):
                let supervisor: Address
                do {
                    supervisor = try Address(validating: text)
                } catch {
                    throw ConfigError("\(path).\(prefix): \(error)")
                }
                guard Hierarchy.standardSupervisors.contains(supervisor) else {
                    let known = Hierarchy.standardSupervisors.map(\.rawValue).joined(separator: ", ")
                    throw ConfigError("\(path).\(prefix): \(text) is not a supervisor of this server (\(known))")
                }
                routes.append(RoutingTable.Route(prefix: prefix, supervisor: supervisor))
            default:
                throw ConfigError("\(path).\(prefix) must be a supervisor address or null")
            }
        }
        do {
            self.routing = try RoutingTable(routes: routes)
        } catch {
            throw ConfigError("\(path): \(error)")
        }
    }

    /// Supervisor address → its own limits; fields not given keep the shared ones.
    mutating func applyBudgets(_ value: JSON, _ path: String) throws(ConfigError) {
        guard case .object(let entries) = value else {
            throw ConfigError("\(path) maps supervisor addresses to {max_concurrent_tasks, tokens, cost_usd}")
        }
        for (name, limits) in entries {
            let address = Address(unchecked: name)
            guard Hierarchy.standardSupervisors.contains(address) else {
                let known = Hierarchy.standardSupervisors.map(\.rawValue).joined(separator: ", ")
                throw ConfigError("\(path).\(name) is not a supervisor of this server (\(known))")
            }
            guard case .object(let fields) = limits else { throw ConfigError("\(path).\(name) must be an object") }
            var budget = self.budgets[address] ?? Hierarchy.SupervisorBudget()
            for (field, item) in fields {
                let itemPath = "\(path).\(name).\(field)"
                switch field {
                case "max_concurrent_tasks": budget.maxConcurrentTasks = Int64(try Self.int(item, itemPath, 1...10_000_000))
                case "tokens": budget.tokens = Int64(try Self.int(item, itemPath, 0...Int(Int64.max)))
                case "cost_usd":
                    let cost: Double
                    switch item {
                    case .int(let int): cost = Double(int)
                    case .double(let double): cost = double
                    default: throw ConfigError("\(itemPath) must be a number")
                    }
                    guard cost >= 0, cost.isFinite else { throw ConfigError("\(itemPath) must be >= 0") }
                    budget.costUSD = cost
                default: throw ConfigError("unknown key \(itemPath)")
                }
            }
            self.budgets[address] = budget
        }
    }

    static func string(_ value: JSON, _ path: String) throws(ConfigError) -> String {
        guard case .string(let text) = value else { throw ConfigError("\(path) must be a string") }
        return text
    }

    /// A key file's text (PEM), read when the configuration is applied so a missing file is
    /// an error at start.
    static func file(_ path: String, _ setting: String) throws(ConfigError) -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError("\(setting): cannot read \(path)")
        }
        return text
    }

    static func int(_ value: JSON, _ path: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard case .int(let number) = value, range.contains(Int(number)) else {
            throw ConfigError("\(path) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return Int(number)
    }

    static func positive(_ value: JSON, _ path: String) throws(ConfigError) -> Double {
        let number: Double
        switch value {
        case .int(let int): number = Double(int)
        case .double(let double): number = double
        default: throw ConfigError("\(path) must be a number")
        }
        guard number > 0, number.isFinite else { throw ConfigError("\(path) must be > 0") }
        return number
    }

    // MARK: The environment

    /// `CARTRITA_DATA`, `CARTRITA_HOST`, `CARTRITA_FILES_ROOT`, `CARTRITA_PORT`, `CARTRITA_DURABILITY`,
    /// `CARTRITA_MAX_BODY_BYTES`, `CARTRITA_SYNC_TIMEOUT_MS`, `CARTRITA_DRAIN_TIMEOUT_MS`,
    /// `CARTRITA_GROUP_COMMIT_LINGER_US`, `CARTRITA_LOG_MAPPED_RELEASE_BYTES`,
    /// `CARTRITA_AUTH_REQUIRED` (true/false), `CARTRITA_RATE_LIMIT_PER_S`,
    /// `CARTRITA_ALLOWED_ORIGINS` (comma-separated), `CARTRITA_PROTECT_METRICS` (true/false),
    /// `CARTRITA_JWT_HS256_SECRET`, `CARTRITA_JWT_ES256_PUBLIC_KEY` and `CARTRITA_JWT_RS256_PUBLIC_KEY`
    /// (PEM text, or `…_FILE` with a path), `CARTRITA_JWT_ISSUER`, `CARTRITA_JWT_AUDIENCE`,
    /// `CARTRITA_JWT_LEEWAY_S`, `CARTRITA_JWT_JWKS` (JSON text), `CARTRITA_JWT_JWKS_FILE`,
    /// `CARTRITA_JWT_JWKS_RELOAD_S`, `CARTRITA_ROUTING` and `CARTRITA_BUDGETS` (a JSON object, as the
    /// config file's `routing` and `budgets`, applied after them).
    public mutating func apply(environment: [String: String]) throws(ConfigError) {
        func value(_ name: String) -> JSON? { environment[name].map { Self.scalar($0) } }
        if let text = environment["CARTRITA_DATA"] { self.dataPath = text }
        if let text = environment["CARTRITA_HOST"] { self.host = text }
        if let text = environment["CARTRITA_FILES_ROOT"] { self.filesRoot = text }
        if let port = value("CARTRITA_PORT") { self.port = try Self.int(port, "CARTRITA_PORT", 0...65_535) }
        if let text = environment["CARTRITA_DURABILITY"] {
            guard let mode = Durability(rawValue: text) else { throw ConfigError("CARTRITA_DURABILITY is durable, relaxed or fast") }
            self.durability = mode
        }
        if let bytes = value("CARTRITA_MAX_BODY_BYTES") { self.maxBodyBytes = try Self.int(bytes, "CARTRITA_MAX_BODY_BYTES", 1...(256 << 20)) }
        if let ms = value("CARTRITA_SYNC_TIMEOUT_MS") { self.syncTimeoutMilliseconds = Int64(try Self.int(ms, "CARTRITA_SYNC_TIMEOUT_MS", 0...3_600_000)) }
        if let ms = value("CARTRITA_DRAIN_TIMEOUT_MS") { self.drainTimeoutMilliseconds = Int64(try Self.int(ms, "CARTRITA_DRAIN_TIMEOUT_MS", 0...3_600_000)) }
        if let us = value("CARTRITA_GROUP_COMMIT_LINGER_US") {
            self.groupCommitLingerMicroseconds = try Self.int(us, "CARTRITA_GROUP_COMMIT_LINGER_US", 0...100_000)
        }
        if let bytes = value("CARTRITA_LOG_MAPPED_RELEASE_BYTES") {
            self.releaseMappedPagesEveryBytes = try Self.int(bytes, "CARTRITA_LOG_MAPPED_RELEASE_BYTES", 0...(1 << 40))
        }
        func flag(_ name: String) throws(ConfigError) -> Bool? {
            guard let text = environment[name] else { return nil }
            switch text {
            case "true", "1": return true
            case "false", "0": return false
            default: throw ConfigError("\(name) is true or false")
            }
        }
        if let required = try flag("CARTRITA_AUTH_REQUIRED") { self.auth.required = required }
        if let protect = try flag("CARTRITA_PROTECT_METRICS") { self.auth.protectMetrics = protect }
        if let text = environment["CARTRITA_JWT_HS256_SECRET"] { self.auth.jwt.hs256Secret = text }
        if let text = environment["CARTRITA_JWT_ES256_PUBLIC_KEY"] { self.auth.jwt.es256PublicKeyPEM = text }
        if let text = environment["CARTRITA_JWT_RS256_PUBLIC_KEY"] { self.auth.jwt.rs256PublicKeyPEM = text }
        if let path = environment["CARTRITA_JWT_ES256_PUBLIC_KEY_FILE"] {
            self.auth.jwt.es256PublicKeyPEM = try Self.file(path, "CARTRITA_JWT_ES256_PUBLIC_KEY_FILE")
        }
        if let path = environment["CARTRITA_JWT_RS256_PUBLIC_KEY_FILE"] {
            self.auth.jwt.rs256PublicKeyPEM = try Self.file(path, "CARTRITA_JWT_RS256_PUBLIC_KEY_FILE")
        }
        if let text = environment["CARTRITA_JWT_ISSUER"] { self.auth.jwt.issuer = text }
        if let text = environment["CARTRITA_JWT_AUDIENCE"] { self.auth.jwt.audience = text }
        if let seconds = value("CARTRITA_JWT_LEEWAY_S") { self.auth.jwt.leewaySeconds = try Self.int(seconds, "CARTRITA_JWT_LEEWAY_S", 0...3_600) }
        if let text = environment["CARTRITA_JWT_JWKS"] { self.auth.jwt.jwksJSON = text }
        if let path = environment["CARTRITA_JWT_JWKS_FILE"] { self.auth.jwt.jwksFile = path }
        if let seconds = value("CARTRITA_JWT_JWKS_RELOAD_S") {
            self.auth.jwt.jwksReloadSeconds = try Self.int(seconds, "CARTRITA_JWT_JWKS_RELOAD_S", 0...86_400)
        }
        if let rate = value("CARTRITA_RATE_LIMIT_PER_S") { self.auth.rateLimitPerSecond = try Self.positive(rate, "CARTRITA_RATE_LIMIT_PER_S") }
        func object(_ name: String) throws(ConfigError) -> JSON? {
            guard let text = environment[name] else { return nil }
            do {
                return try JSONParser().parse(Array(text.utf8))
            } catch {
                throw ConfigError("\(name) is not JSON: \(error)")
            }
        }
        if let routing = try object("CARTRITA_ROUTING") { try self.applyRouting(routing, "CARTRITA_ROUTING") }
        if let budgets = try object("CARTRITA_BUDGETS") { try self.applyBudgets(budgets, "CARTRITA_BUDGETS") }
        if let text = environment["CARTRITA_ALLOWED_ORIGINS"] {
            self.auth.allowedOrigins = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }

    /// An environment variable's text as a JSON scalar (a number when it is one).
    static func scalar(_ text: String) -> JSON {
        if let int = Int64(text) { return .int(int) }
        if let double = Double(text) { return .double(double) }
        return .string(text)
    }
}
