import CartritaEnvelope

// MARK: - The body of POST /v3/tasks

/// A client's task as the API takes it: the `task_request` payload of MCP-SPEC §3 (`task`,
/// `input`, `preferences`, with the spec's field names, as `cartrita log dump` prints them) plus
/// the envelope options a client may choose (`priority`, `delivery_mode`, `ttl_ms`,
/// `max_retries`, `context`). Anything else is refused with the field named: a misspelt option
/// silently ignored is a bug report waiting to happen.
struct TaskBody: Equatable {
    var request: TaskRequest
    var priority: Priority = .normal
    var deliveryMode: DeliveryMode?
    var ttlMilliseconds: Int32 = 600_000
    var maxRetries: Int32 = 3
    var conversationID: String?
    var sessionID: String?
    var workspaceID: String?
    var customAttributes: [StringPair] = []

    static let topLevelKeys = ["task", "input", "preferences", "priority", "delivery_mode", "ttl_ms", "max_retries", "context"]

    static func decode(_ json: JSON) throws(APIError) -> TaskBody {
        guard case .object(let members) = json else { throw APIError.badField("$", "the body must be a JSON object") }
        try Self.onlyKeys(members, Self.topLevelKeys, path: "")
        guard let taskJSON = json["task"] else {
            throw APIError(.badRequest, .missingField, "task is required", field: "task")
        }
        let task = try Self.task(taskJSON)
        let input = try json["input"].map { (value) throws(APIError) in try Self.input(value) } ?? TaskInput()
        let preferences = try json["preferences"].map { (value) throws(APIError) in try Self.preferences(value) }
        var body = TaskBody(request: TaskRequest(task: task, input: input, preferences: preferences))
        if let value = json["priority"] {
            guard case .string(let text) = value, let priority = Priority(rawValue: text) else {
                throw APIError.badField("priority", "priority is one of low, normal, high, critical")
            }
            body.priority = priority
        }
        if let value = json["delivery_mode"] {
            guard case .string(let text) = value, let mode = DeliveryMode(rawValue: text) else {
                throw APIError.badField("delivery_mode", "delivery_mode is one of at_most_once, at_least_once, exactly_once")
            }
            body.deliveryMode = mode
        }
        if let value = json["ttl_ms"] {
            guard case .int(let ttl) = value, ttl > 0, ttl <= Int64(Int32.max) else {
                throw APIError.badField("ttl_ms", "ttl_ms is an integer in 1...\(Int32.max)")
            }
            body.ttlMilliseconds = Int32(ttl)
        }
        if let value = json["max_retries"] {
            guard case .int(let retries) = value, (0...100).contains(retries) else {
                throw APIError.badField("max_retries", "max_retries is an integer in 0...100")
            }
            body.maxRetries = Int32(retries)
        }
        if let context = json["context"] {
            guard case .object(let fields) = context else { throw APIError.badField("context", "context must be an object") }
            // user_id is not the client's to choose: it comes from the credentials.
            try Self.onlyKeys(fields, ["conversation_id", "session_id", "workspace_id", "custom_attributes"], path: "context.")
            body.conversationID = try Self.optionalString(context["conversation_id"], "context.conversation_id")
            body.sessionID = try Self.optionalString(context["session_id"], "context.session_id")
            body.workspaceID = try Self.optionalString(context["workspace_id"], "context.workspace_id")
            if let attributes = context["custom_attributes"] {
                guard case .object(let pairs) = attributes else {
                    throw APIError.badField("context.custom_attributes", "custom_attributes is an object of strings")
                }
                for (key, value) in pairs {
                    guard case .string(let text) = value else {
                        throw APIError.badField("context.custom_attributes.\(key)", "custom attribute values are strings")
                    }
                    body.customAttributes.append(StringPair(key, text))
                }
            }
        }
        return body
    }

    static func onlyKeys(_ members: [(String, JSON)], _ allowed: [String], path: String) throws(APIError) {
        for (key, _) in members where !allowed.contains(key) {
            throw APIError(.badRequest, .unknownField, "unknown field \(path)\(key)", field: path + key)
        }
    }

    static func optionalString(_ value: JSON?, _ path: String) throws(APIError) -> String? {
        guard let value else { return nil }
        guard case .string(let text) = value else { throw APIError.badField(path, "\(path) must be a string") }
        return text
    }

    static func int(_ value: JSON?, _ path: String) throws(APIError) -> Int64? {
        guard let value else { return nil }
        guard case .int(let number) = value else { throw APIError.badField(path, "\(path) must be an integer") }
        return number
    }

    static func number(_ value: JSON?, _ path: String) throws(APIError) -> Double? {
        switch value {
        case nil: return nil
        case .int(let number)?: return Double(number)
        case .double(let number)?: return number
        default: throw APIError.badField(path, "\(path) must be a number")
        }
    }

    static func bool(_ value: JSON?, _ path: String) throws(APIError) -> Bool? {
        guard let value else { return nil }
        guard case .bool(let flag) = value else { throw APIError.badField(path, "\(path) must be true or false") }
        return flag
    }

    static func task(_ json: JSON) throws(APIError) -> TaskSpec {
        guard case .object(let members) = json else { throw APIError.badField("task", "task must be an object") }
        try Self.onlyKeys(members, ["type", "parameters", "constraints"], path: "task.")
        guard let typeJSON = json["type"] else { throw APIError(.badRequest, .missingField, "task.type is required", field: "task.type") }
        guard case .string(let type) = typeJSON else { throw APIError.badField("task.type", "task.type must be a string") }
        var parameters: [MCPValue.MapEntry] = []
        if let value = json["parameters"] {
            guard case .object = value, case .map(let entries) = value.mcpValue else {
                throw APIError.badField("task.parameters", "task.parameters must be an object")
            }
            parameters = entries
        }
        var constraints: TaskConstraints?
        if let value = json["constraints"] {
            guard case .object(let fields) = value else { throw APIError.badField("task.constraints", "task.constraints must be an object") }
            try Self.onlyKeys(fields, ["max_execution_time_ms", "max_memory_mb", "max_cost_usd"], path: "task.constraints.")
            constraints = TaskConstraints(
                maxExecutionTimeMilliseconds: try Self.int(value["max_execution_time_ms"], "task.constraints.max_execution_time_ms"),
                maxMemoryMB: try Self.int(value["max_memory_mb"], "task.constraints.max_memory_mb"),
                maxCostUSD: try Self.number(value["max_cost_usd"], "task.constraints.max_cost_usd"))
        }
        return TaskSpec(type: type, parameters: parameters, constraints: constraints)
    }

    static func input(_ json: JSON) throws(APIError) -> TaskInput {
        guard case .object(let members) = json else { throw APIError.badField("input", "input must be an object") }
        try Self.onlyKeys(members, ["data", "files"], path: "input.")
        var files: [FileInput] = []
        if let value = json["files"] {
            guard case .array(let items) = value else { throw APIError.badField("input.files", "input.files must be an array") }
            for (index, item) in items.enumerated() {
                let path = "input.files.\(index)"
                guard case .object(let fields) = item else { throw APIError.badField(path, "\(path) must be an object") }
                try Self.onlyKeys(fields, ["name", "content_type", "size_bytes", "url", "inline_data"], path: path + ".")
                guard let name = try Self.optionalString(item["name"], path + ".name") else {
                    throw APIError(.badRequest, .missingField, "\(path).name is required", field: path + ".name")
                }
                let contentType = try Self.optionalString(item["content_type"], path + ".content_type") ?? "application/octet-stream"
                let url = try Self.optionalString(item["url"], path + ".url")
                let inline = try Self.optionalString(item["inline_data"], path + ".inline_data")
                let source: FileInput.Source
                switch (url, inline) {
                case (let url?, nil): source = .url(url)
                case (nil, let hex?):
                    // Hex, as the API prints binary data (`cartrita log dump`, GET /v3/tasks/{id}).
                    guard let bytes = Hex.decode(hex) else { throw APIError.badField(path + ".inline_data", "inline_data is hex") }
                    source = .inline(bytes)
                default: throw APIError.badField(path, "a file has exactly one of url and inline_data")
                }
                var size = try Self.int(item["size_bytes"], path + ".size_bytes") ?? 0
                if case .inline(let bytes) = source, item["size_bytes"] == nil { size = Int64(bytes.count) }
                files.append(FileInput(name: name, contentType: contentType, sizeBytes: size, source: source))
            }
        }
        return TaskInput(data: json["data"]?.mcpValue, files: files)
    }

    static func preferences(_ json: JSON) throws(APIError) -> TaskPreferences {
        guard case .object(let members) = json else { throw APIError.badField("preferences", "preferences must be an object") }
        try Self.onlyKeys(members, ["quality_level", "cost_optimization", "streaming"], path: "preferences.")
        var preferences = TaskPreferences()
        if let value = json["quality_level"] {
            guard case .string(let text) = value, let level = QualityLevel(rawValue: text) else {
                throw APIError.badField("preferences.quality_level", "quality_level is one of fast, balanced, best")
            }
            preferences.qualityLevel = level
        }
        if let flag = try Self.bool(json["cost_optimization"], "preferences.cost_optimization") { preferences.costOptimization = flag }
        if let flag = try Self.bool(json["streaming"], "preferences.streaming") { preferences.streaming = flag }
        return preferences
    }
}
