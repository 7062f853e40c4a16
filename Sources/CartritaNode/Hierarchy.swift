import CartritaAgents
import CartritaCodec
import CartritaEnvelope
import CartritaRuntime

// MARK: - What runs: the three tiers as cells

/// The actors of one node, in a fixed order (the order never comes from hashing). The standard
/// hierarchy is the orchestrator, the intelligence, multimodal and system supervisors, and the
/// agents of this release, plus the clients that submit tasks.
public struct Hierarchy {
    /// Makes fresh cells; a node calls it once, a recovery or a replay once more each.
    public let makeCells: @Sendable () -> [any ActorCell]
    public let addresses: [Address]
    /// Each supervisor's restart rules, in hierarchy order (the simulator's oracle checks them).
    public var supervisionPolicies: [(supervisor: Address, policy: SupervisionPolicy)] = []
    /// Which agent of which supervisor handles which task types, in hierarchy order: the path a
    /// task must take (the load tester's message-flow check asserts it).
    public var agentRoutes: [AgentRoute] = []
    /// The orchestrator's routing table.
    public var routing: RoutingTable = .standard

    public struct AgentRoute: Hashable, Sendable {
        public var supervisor: Address
        public var agent: Address
        public var taskTypes: [String]

        public init(supervisor: Address, agent: Address, taskTypes: [String]) {
            self.supervisor = supervisor
            self.agent = agent
            self.taskTypes = taskTypes
        }
    }

    /// The supervisor and the agents (a pool's instances) that a task of `taskType` must pass
    /// through; nil when no route takes it (the orchestrator answers `unknown_task_type`).
    public func expectedPath(forTaskType taskType: String) -> (supervisor: Address, agents: [Address])? {
        guard let supervisor = self.routing.supervisor(forTaskType: taskType) else { return nil }
        let agents = self.agentRoutes.filter { $0.supervisor == supervisor && $0.taskTypes.contains(taskType) }.map(\.agent)
        return (supervisor, agents)
    }

    public init(addresses: [Address], makeCells: @escaping @Sendable () -> [any ActorCell]) {
        self.addresses = addresses
        self.makeCells = makeCells
    }

    public static let intelligence = Address("supervisor.intelligence@v1.0")
    public static let multimodal = Address("supervisor.multimodal@v1.0")
    public static let system = Address("supervisor.system@v1.0")
    /// The client that `cartrita run` and the benchmarks submit tasks as.
    public static let runClient = Address("client.run@v1.0")

    public struct Options: Sendable {
        public var routing: RoutingTable = .standard
        public var policy: SupervisionPolicy = SupervisionPolicy()
        public var maxConcurrentTasksPerSupervisor: Int64 = 100_000
        public var tokenBudget: Int64 = 1_000_000_000
        public var costBudgetUSD: Double = 1_000_000
        public var maxPendingTasks = 1_000_000
        public var clients: [Address] = [Hierarchy.runClient]
        /// Instances of each stateless agent (DataSage, LanguageMaestro) in its supervisor's
        /// pool. A stateful agent (TaskManagement) has one: its state must not be split.
        public var statelessAgentInstances = 2
        /// Injected agent crashes per million requests (the simulator's `agent_crash` fault).
        public var agentCrashesPerMillion: UInt64 = 0
        /// One supervisor's limits instead of the shared ones above (`cartrita serve`'s
        /// `budgets`). A supervisor not named here has the shared limits.
        public var budgets: [Address: SupervisorBudget] = [:]

        public init() {}
    }

    /// A supervisor's own limits; nil fields keep the shared ones.
    public struct SupervisorBudget: Hashable, Sendable {
        public var maxConcurrentTasks: Int64?
        public var tokens: Int64?
        public var costUSD: Double?

        public init(maxConcurrentTasks: Int64? = nil, tokens: Int64? = nil, costUSD: Double? = nil) {
            self.maxConcurrentTasks = maxConcurrentTasks
            self.tokens = tokens
            self.costUSD = costUSD
        }
    }

    /// The supervisors of the standard hierarchy, in its order.
    public static let standardSupervisors = [Self.intelligence, Self.multimodal, Self.system]

    /// The standard three tiers with this release's agents.
    public static func standard(_ options: Options = Options()) -> Hierarchy {
        let language = LanguageMaestro()
        let data = DataSage()
        let crashes = options.agentCrashesPerMillion
        let pool = 1...max(1, options.statelessAgentInstances)
        func supervisor(_ address: Address, _ agents: [AgentSpec]) -> SupervisorSpec {
            let own = options.budgets[address]
            return SupervisorSpec(
                address: address, agents: agents, policy: options.policy,
                maxConcurrentTasks: own?.maxConcurrentTasks ?? options.maxConcurrentTasksPerSupervisor,
                tokenBudget: own?.tokens ?? options.tokenBudget, costBudgetUSD: own?.costUSD ?? options.costBudgetUSD)
        }
        return .custom(
            routing: options.routing,
            supervisors: [
                supervisor(Self.intelligence, pool.map { .agent(language, address: language.address.instance($0), crashesPerMillion: crashes) }),
                supervisor(Self.multimodal, []),
                supervisor(
                    Self.system,
                    pool.map { .agent(data, address: data.address.instance($0), crashesPerMillion: crashes) }
                        + [.agent(TaskManagement(), crashesPerMillion: crashes), .agent(SystemMonitor(), crashesPerMillion: crashes)]),
            ],
            clients: options.clients, maxPendingTasks: options.maxPendingTasks)
    }
}

// MARK: - A client as an actor

/// The end of a task's path: the answers addressed to a client are logged like every other
/// delivery, and this machine counts them. Its requests come from outside (a command, an HTTP
/// request) and are inputs of the log, not effects.
public struct ClientMachine: StateMachine {
    public struct State: Hashable, Sendable {
        public var completed = 0
        public var failed = 0
        public var progress = 0
    }

    public let address: Address
    public var stateFormatVersion: UInt32 { 1 }

    public init(address: Address) {
        self.address = address
    }

    public func initialState() -> State { State() }

    public func step(_ state: inout State, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect] {
        switch ClientMachine.outcome(envelope) {
        case .completed?: state.completed += 1
        case .failed?: state.failed += 1
        case nil: if case .taskProgress = envelope.payload { state.progress += 1 }
        }
        return []
    }

    public enum Outcome: String, Sendable {
        case completed, failed
    }

    /// Whether `envelope` is a terminal answer, and which.
    public static func outcome(_ envelope: Envelope) -> Outcome? {
        switch envelope.payload {
        case .taskResponse(let response):
            switch response.status {
            case .completed: .completed
            case .failed, .cancelled: .failed
            default: nil
            }
        case .taskError: .failed
        default: nil
        }
    }

    public func encodeState(_ state: State) -> [UInt8] {
        let writer = MsgPackWriter(initialCapacityBytes: 64)
        writer.write(.array([.int(Int64(state.completed)), .int(Int64(state.failed)), .int(Int64(state.progress))]))
        return writer.withBytes { [UInt8]($0) }
    }

    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        guard case .array(let values)? = try? EnvelopeDecoder().decodeValue(bytes), values.count == 3,
            case .int(let completed) = values[0], case .int(let failed) = values[1], case .int(let progress) = values[2]
        else {
            throw StateDecodingError("a client's snapshot is [completed, failed, progress]")
        }
        return State(completed: Int(completed), failed: Int(failed), progress: Int(progress))
    }

    public func describeState(_ state: State) -> MCPValue {
        .map(["completed": .int(Int64(state.completed)), "failed": .int(Int64(state.failed)), "progress": .int(Int64(state.progress))])
    }
}

// MARK: - Your own hierarchy

extension Hierarchy {
    /// One agent of a hierarchy you build: its address, the task types it handles, and how to
    /// make its cell.
    public struct AgentSpec: Sendable {
        public var address: Address
        public var taskTypes: [String]
        let makeCell: @Sendable () -> any ActorCell

        /// Any `Agent`, at its own address (or `address`, for a second instance).
        /// `crashesPerMillion` injects deterministic crashes (the simulator's `agent_crash`).
        public static func agent<A: Agent>(_ agent: A, address: Address? = nil, crashesPerMillion: UInt64 = 0) -> AgentSpec {
            let address = address ?? agent.address
            return AgentSpec(address: address, taskTypes: agent.taskTypes) {
                MachineCell(AgentActor(agent, address: address, crashesPerMillion: crashesPerMillion))
            }
        }
    }

    /// A supervisor of a hierarchy you build, with its agents and rules.
    public struct SupervisorSpec: Sendable {
        public var address: Address
        public var agents: [AgentSpec]
        public var policy: SupervisionPolicy
        public var maxConcurrentTasks: Int64
        public var tokenBudget: Int64
        public var costBudgetUSD: Double

        public init(
            address: Address, agents: [AgentSpec], policy: SupervisionPolicy = SupervisionPolicy(), maxConcurrentTasks: Int64 = 100_000,
            tokenBudget: Int64 = 1_000_000_000, costBudgetUSD: Double = 1_000_000
        ) {
            self.address = address
            self.agents = agents
            self.policy = policy
            self.maxConcurrentTasks = maxConcurrentTasks
            self.tokenBudget = tokenBudget
            self.costBudgetUSD = costBudgetUSD
        }
    }

    /// A hierarchy of your own agents: the orchestrator with `routing`, your supervisors, and
    /// the clients. Runs under `Node` in production and under the simulator in your tests.
    public static func custom(
        routing: RoutingTable, supervisors: [SupervisorSpec], clients: [Address] = [Hierarchy.runClient], maxPendingTasks: Int = 1_000_000
    ) -> Hierarchy {
        let addresses = [Orchestrator.address] + supervisors.map(\.address) + supervisors.flatMap { $0.agents.map(\.address) } + clients
        var hierarchy = Hierarchy(addresses: addresses) {
            var cells: [any ActorCell] = [MachineCell(Orchestrator(routing: routing, maxPendingTasks: maxPendingTasks))]
            for spec in supervisors {
                cells.append(MachineCell(DomainSupervisor(
                    address: spec.address, agents: spec.agents.map { DomainSupervisor.AgentRoute(address: $0.address, taskTypes: $0.taskTypes) },
                    policy: spec.policy, maxConcurrentTasks: spec.maxConcurrentTasks, tokenBudget: spec.tokenBudget,
                    costBudgetUSD: spec.costBudgetUSD)))
            }
            for spec in supervisors { for agent in spec.agents { cells.append(agent.makeCell()) } }
            for client in clients { cells.append(MachineCell(ClientMachine(address: client))) }
            return cells
        }
        hierarchy.supervisionPolicies = supervisors.map { ($0.address, $0.policy) }
        hierarchy.agentRoutes = supervisors.flatMap { spec in
            spec.agents.map { AgentRoute(supervisor: spec.address, agent: $0.address, taskTypes: $0.taskTypes) }
        }
        hierarchy.routing = routing
        return hierarchy
    }
}
