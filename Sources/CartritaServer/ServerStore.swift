import CartritaEnvelope
import CartritaLMDB
import Crypto
import Foundation

// MARK: - What the front door keeps beside the log

/// The server's own small LMDB environment, `DATA/server/` (files mode 0600): API keys (hashes
/// only) and idempotency keys. Kept apart from the event log because neither is an MCP message:
/// the log stays the record of what the hierarchy did, this is the door's bookkeeping.
///
/// Idempotency rides on the log's exactly_once dedupe: the first request with a key gets a task
/// id, written here (synced) before the task is submitted; a repeat gets the same id and is
/// submitted again, which the log's id index drops if the first one was logged. So a crash
/// between this write and the log's never loses the task and never runs it twice.
public final class ServerStore: Sendable {
    let environment: LMDBEnvironment
    let idempotency: LMDBDatabase
    let keys: LMDBDatabase
    let keyHashes: LMDBDatabase
    /// Idempotency writes are synced LMDB commits (milliseconds on a slow disk): they run here,
    /// one after the other, never on a NIO event loop or a thread of Swift's cooperative pool,
    /// where a blocked thread stalls every connection it serves. Its depth is bounded by the
    /// requests in progress, which the front door limits.
    let writeQueue = DispatchQueue(label: "cartrita.server-store.writes")

    public struct StoreError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    public init(dataPath: String) throws(StoreError) {
        do {
            let path = (dataPath as NSString).appendingPathComponent("server")
            self.environment = try LMDBEnvironment(
                path: path, configuration: .init(mapSizeBytes: 64 << 20, maxDatabases: 8, fileMode: 0o600))
            self.idempotency = try self.environment.openDatabase(name: "idempotency")
            self.keys = try self.environment.openDatabase(name: "api_keys")
            self.keyHashes = try self.environment.openDatabase(name: "api_key_hashes")
        } catch {
            throw StoreError(message: "opening the server store in \(dataPath)/server: \(error)")
        }
    }

    public func close() {
        try? self.environment.close()
    }

    // MARK: Idempotency

    struct IdempotentTask: Equatable {
        var taskID: MessageID
        /// SHA-256 of the request body: the same key with another body is a client bug (409).
        var bodyDigest: [UInt8]
    }

    static func idempotencyKey(user: String, key: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(user.utf8) + [0] + Array(key.utf8)))
    }

    /// The task of (`user`, `key`): the one stored, or `id`, stored now. `created` tells which.
    /// The write runs on `writeQueue`; the caller's thread is free while it syncs.
    func idempotentTask(user: String, key: String, bodyDigest: [UInt8], id: MessageID) async throws(StoreError)
        -> (task: IdempotentTask, created: Bool)
    {
        let result: Result<(task: IdempotentTask, created: Bool), StoreError> = await withCheckedContinuation { continuation in
            self.writeQueue.async {
                do throws(StoreError) {
                    continuation.resume(returning: .success(try self.idempotentTaskOnWriteQueue(user: user, key: key, bodyDigest: bodyDigest, id: id)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    func idempotentTaskOnWriteQueue(user: String, key: String, bodyDigest: [UInt8], id: MessageID) throws(StoreError)
        -> (task: IdempotentTask, created: Bool)
    {
        dispatchPrecondition(condition: .onQueue(self.writeQueue))
        let storeKey = Self.idempotencyKey(user: user, key: key)
        do {
            return try self.environment.write { txn in
                if let bytes = try txn.getBytes(self.idempotency, key: storeKey), bytes.count == 48,
                    let id = MessageID(bytes: Array(bytes[0..<16]))
                {
                    return (IdempotentTask(taskID: id, bodyDigest: Array(bytes[16..<48])), false)
                }
                let task = IdempotentTask(taskID: id, bodyDigest: bodyDigest)
                try txn.put(self.idempotency, key: storeKey, value: task.taskID.bytes + bodyDigest)
                return (task, true)
            }
        } catch {
            throw StoreError(message: "idempotency store: \(error)")
        }
    }

    // MARK: API keys

    public struct APIKey: Sendable, Equatable {
        public var id: String
        public var role: String
        public var user: String
        public var createdMilliseconds: Int64
        public var revoked: Bool
        /// SHA-256 of the whole key, hex. The key itself is never stored.
        var hashHex: String

        var json: JSON {
            .object([
                ("id", .string(self.id)), ("role", .string(self.role)), ("user", .string(self.user)),
                ("created_ms", .int(self.createdMilliseconds)), ("revoked", .bool(self.revoked)), ("sha256", .string(self.hashHex)),
            ])
        }

        public var publicJSON: String {
            JSON.object([
                ("id", .string(self.id)), ("role", .string(self.role)), ("user", .string(self.user)),
                ("created_ms", .int(self.createdMilliseconds)), ("revoked", .bool(self.revoked)),
            ]).rendered()
        }

        init?(_ json: JSON) {
            guard case .string(let id)? = json["id"], case .string(let role)? = json["role"], case .string(let user)? = json["user"],
                case .int(let created)? = json["created_ms"], case .bool(let revoked)? = json["revoked"],
                case .string(let hash)? = json["sha256"]
            else { return nil }
            self.init(id: id, role: role, user: user, createdMilliseconds: created, revoked: revoked, hashHex: hash)
        }

        init(id: String, role: String, user: String, createdMilliseconds: Int64, revoked: Bool, hashHex: String) {
            self.id = id
            self.role = role
            self.user = user
            self.createdMilliseconds = createdMilliseconds
            self.revoked = revoked
            self.hashHex = hashHex
        }
    }

    static func hash(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Array(key.utf8))) }

    /// Makes a key for `role`: `ck_ID_SECRET` (ID 12 hex digits, SECRET 64, from the system's
    /// random generator). Returns the record and the key, which is shown once and never stored.
    public func createKey(role: String, user: String?, nowMilliseconds: Int64) throws(StoreError) -> (APIKey, String) {
        var generator = SystemRandomNumberGenerator()
        let id = Hex.encode((0..<6).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let secret = Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let key = "ck_\(id)_\(secret)"
        let hash = Self.hash(key)
        let record = APIKey(
            id: id, role: role, user: user ?? "key:\(id)", createdMilliseconds: nowMilliseconds, revoked: false, hashHex: Hex.encode(hash))
        do {
            try self.environment.write { txn in
                try txn.put(self.keys, key: Array(id.utf8), value: Array(record.json.rendered().utf8))
                try txn.put(self.keyHashes, key: hash, value: Array(id.utf8))
            }
        } catch {
            throw StoreError(message: "saving the key: \(error)")
        }
        return (record, key)
    }

    public func listKeys() throws(StoreError) -> [APIKey] {
        do {
            return try self.environment.read { txn in
                var result: [APIKey] = []
                try txn.withCursor(self.keys) { cursor in
                    var entry = try cursor.first()
                    while let current = entry {
                        if let json = try? JSONParser().parse([UInt8](current.value)), let key = APIKey(json) { result.append(key) }
                        entry = try cursor.next()
                    }
                }
                return result
            }
        } catch {
            throw StoreError(message: "reading keys: \(error)")
        }
    }

    /// Marks key `id` revoked (kept, so `list` shows it). False when there is no such key.
    public func revokeKey(id: String) throws(StoreError) -> Bool {
        do {
            return try self.environment.write { txn in
                guard let bytes = try txn.getBytes(self.keys, key: Array(id.utf8)),
                    let json = try? JSONParser().parse(bytes), var key = APIKey(json)
                else { return false }
                key.revoked = true
                try txn.put(self.keys, key: Array(id.utf8), value: Array(key.json.rendered().utf8))
                if let hash = Hex.decode(key.hashHex) { _ = try txn.delete(self.keyHashes, key: hash) }
                return true
            }
        } catch {
            throw StoreError(message: "revoking \(id): \(error)")
        }
    }

    /// The live key whose hash matches `presented`, if any. Read on every request (a read
    /// transaction is microseconds), so a key revoked by the CLI stops working at once.
    func authenticate(_ presented: String) -> APIKey? {
        let hash = Self.hash(presented)
        return try? self.environment.read { txn -> APIKey? in
            guard let id = try txn.getBytes(self.keyHashes, key: hash),
                let bytes = try txn.getBytes(self.keys, key: id),
                let json = try? JSONParser().parse(bytes), let key = APIKey(json), !key.revoked
            else { return nil }
            return key
        }
    }
}
