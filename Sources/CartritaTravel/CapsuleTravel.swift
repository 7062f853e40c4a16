import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime

/// A capsule opened for reading (the web debugger's `--capsule`): its records decoded once, and
/// any actor's state at any of its seqs, rebuilt as `capsule replay` does (the capsule's
/// starting snapshots, then the production `Recovery` over its records up to that seq).
package final class CapsuleReader: @unchecked Sendable {
    package let capsule: Capsule
    /// In seq order.
    package let records: [(seq: UInt64, record: LogRecord)]
    let hierarchy: Hierarchy

    package init(_ capsule: Capsule, hierarchy base: Hierarchy = .standard()) throws(TravelError) {
        self.capsule = capsule
        self.records = try capsule.verifiedRecords()
        for actor in capsule.meta.actors where !base.addresses.contains(actor) {
            throw TravelError(.unknownActor, "the capsule replays \(actor), which this build's hierarchy does not have")
        }
        let wanted = Set(capsule.meta.actors)
        let makeCells = base.makeCells
        self.hierarchy = Hierarchy(addresses: capsule.meta.actors) { makeCells().filter { wanted.contains($0.address) } }
    }

    /// `actor`'s state after the capsule's records up to `at` (its starting snapshot before the
    /// first). Replays from the start of the capsule each time: capsules are small.
    package func state(at: UInt64, actor: Address) throws(TravelError) -> ActorState {
        guard self.capsule.meta.actors.contains(actor) else {
            throw TravelError(.unknownActor, "the capsule does not replay \(actor) (actors: \(self.capsule.meta.actors.map(\.rawValue).joined(separator: ", ")))")
        }
        let prefix = Array(self.records.prefix { $0.seq <= at })
        let log = CapsuleLog(records: prefix, snapshots: self.capsule.snapshots)
        let cells: [any ActorCell]
        do {
            (cells, _) = try Recovery(log: log, hierarchy: self.hierarchy, useSnapshots: true, handlers: .all).run()
        } catch {
            throw .log(error)
        }
        guard let cell = cells.first(where: { $0.address == actor }) else { throw TravelError(.unknownActor, "no cell for \(actor)") }
        let snapshotSeq = self.capsule.snapshots.first { $0.actor == actor.rawValue }?.seq ?? 0
        return ActorState(
            address: actor, lastSeq: cell.lastSeq, digest: Recovery.digest(of: cell), state: cell.describeState(), snapshotSeq: snapshotSeq,
            replayed: prefix.filter { $0.record.envelope.recipient == actor && $0.seq > snapshotSeq }.count)
    }
}
