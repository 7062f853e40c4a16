import CartritaEnvelope
import XCTest

final class AddressTests: XCTestCase {
    func testValidAddresses() throws {
        let valid = [
            "orchestrator@v1.0", "supervisor.intelligence@v1.0", "agent.visionmaster@v1.3",
            "agent.vision-master_2@v10.42", "a@v0.0", "micro.supervisor.legal@v12345.99999",
            "agent.x-@v1.0", "9lives@v1.0",
        ]
        for text in valid {
            let address = try Address(validating: text)
            XCTAssertEqual(address.rawValue, text)
            XCTAssertEqual(address.description, text)
        }
        XCTAssertEqual(Address("supervisor.intelligence@v1.0").kind, "supervisor")
        XCTAssertEqual(Address("supervisor.intelligence@v1.0").name, "supervisor.intelligence")
        XCTAssertTrue(Address("supervisor.intelligence@v1.0").isSupervisor)
        XCTAssertFalse(Address("agent.visionmaster@v1.3").isSupervisor)
        XCTAssertFalse(Address("supervisors.x@v1.0").isSupervisor)
        XCTAssertEqual(Address.orchestrator.kind, "orchestrator")
        XCTAssertEqual(Address("orchestrator@v1.0").kind, "orchestrator")
        XCTAssertEqual(Address.orchestrator.name, "orchestrator")
        XCTAssertTrue(Address("agent.a@v1.0") < Address("agent.b@v1.0"))
    }

    func testInvalidAddressesAreRejected() {
        let invalid = [
            "",  // empty
            "orchestrator",  // no version
            "orchestrator@",  // nothing after @
            "orchestrator@1.0",  // no v
            "orchestrator@v1",  // no minor
            "orchestrator@v1.",  // empty minor
            "orchestrator@v.1",  // empty major
            "orchestrator@v1.0.0",  // three numbers
            "orchestrator@v123456.0",  // major over 5 digits
            "orchestrator@v1.123456",  // minor over 5 digits
            "orchestrator@v1.a",  // not a number
            "orchestrator@V1.0",  // capital V
            "Orchestrator@v1.0",  // upper case
            "agent..vision@v1.0",  // empty segment
            ".agent@v1.0",  // leading dot
            "agent.@v1.0",  // trailing dot
            "@v1.0",  // no name
            "-agent@v1.0",  // segment starts with -
            "agent._x@v1.0",  // segment starts with _
            "agent vision@v1.0",  // space
            "agent.visión@v1.0",  // non-ASCII
            "agent@v1.0@v1.0",  // two @
            "agent@v1.0 ",  // trailing space
            "agent/x@v1.0",
            String(repeating: "a", count: 124) + "@v1.0",  // 129 bytes
        ]
        for text in invalid {
            assertRule(.invalidAddress, at: "address") { () throws(EnvelopeError) in _ = try Address(validating: text) }
        }
        // Exactly the maximum length is fine.
        XCTAssertNoThrow(try Address(validating: String(repeating: "a", count: 123) + "@v1.0"))
    }

    func testEnvelopeNamesTheFieldOfABadAddress() {
        var envelope = Fixture.envelope()
        envelope.sender = Address(unchecked: "Orchestrator@v1.0")
        assertInvalid(envelope, .invalidAddress, at: "sender")
        envelope = Fixture.envelope()
        envelope.recipient = Address(unchecked: "supervisor.intelligence")
        assertInvalid(envelope, .invalidAddress, at: "recipient")
    }

    func testKindIsTheWholeFirstSegmentAndInstancesExtendTheName() {
        XCTAssertTrue(Address("client.run@v1.0").hasKind("client"))
        XCTAssertTrue(Address("orchestrator@v1.0").hasKind("orchestrator"))
        XCTAssertFalse(Address("clients.run@v1.0").hasKind("client"), "a prefix of the segment is not the kind")
        XCTAssertFalse(Address("agent.client@v1.0").hasKind("client"))
        XCTAssertFalse(Address("agent.a@v1.0").hasKind("agen"))
        XCTAssertTrue(Address("supervisor.system@v1.0").isSupervisor)
        XCTAssertEqual(Address("agent.datasage@v1.0").instance(1), Address("agent.datasage@v1.0"))
        XCTAssertEqual(Address("agent.datasage@v1.0").instance(2), Address("agent.datasage.2@v1.0"))
        XCTAssertEqual(Address("agent.datasage@v1.3").instance(12).kind, "agent")
    }
}
