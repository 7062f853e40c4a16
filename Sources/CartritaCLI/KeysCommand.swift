import ArgumentParser
import CartritaNode
import CartritaServer
import Foundation

// MARK: - cartrita keys

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage the API keys of `cartrita serve` (only their SHA-256 is stored, in DATA/server).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key; it is printed once, alone on the last line, and cannot be shown again.")

        @OptionGroup var options: DataOption
        @Option(help: "The role (a key of auth.roles in the server's config: admin, user, …).") var role: String
        @Option(help: "The user id the key's tasks carry in context.user_id (default key:ID).") var user: String?

        func validate() throws {
            guard !self.role.isEmpty, self.role.utf8.count <= 64 else { throw ValidationError("--role is 1 to 64 bytes") }
            if let user = self.user, user.isEmpty || user.utf8.count > 256 { throw ValidationError("--user is 1 to 256 bytes") }
        }

        func run() async throws {
            let store = openStore(self.options.data)
            defer { store.close() }
            do {
                let (record, key) = try store.createKey(role: self.role, user: self.user, nowMilliseconds: WallClock().now())
                // Both through the same unbuffered write: the key must come out last, alone.
                printFlushed("created key \(record.id) role \(record.role) user \(record.user)")
                printFlushed(key)
            } catch {
                fail("\(error)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (never the keys themselves).")

        @OptionGroup var options: DataOption
        @Flag(help: "One JSON object per key, one per line.") var json = false

        func run() async throws {
            let store = openStore(self.options.data)
            defer { store.close() }
            do {
                for key in try store.listKeys() {
                    if self.json {
                        print(key.publicJSON)
                    } else {
                        print("\(key.id) role \(key.role) user \(key.user)\(key.revoked ? " revoked" : "")")
                    }
                }
            } catch {
                fail("\(error)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by its id; a running server refuses it at once.")

        @OptionGroup var options: DataOption
        @Argument(help: "The key's id (from `keys list`).") var id: String

        func run() async throws {
            let store = openStore(self.options.data)
            defer { store.close() }
            do {
                guard try store.revokeKey(id: self.id) else { fail("no key \(self.id)") }
                print("revoked \(self.id)")
            } catch {
                fail("\(error)")
            }
        }
    }
}

func openStore(_ data: String) -> ServerStore {
    do {
        return try ServerStore(dataPath: data)
    } catch {
        fail("\(error)")
    }
}
