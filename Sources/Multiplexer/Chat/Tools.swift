public import MultiplexerCore

/// A tool the model may call: a function with a name, a description and JSON-Schema parameters.
///
/// ```swift
/// let weather = Tool.function(
///     name: "get_weather", description: "The weather in a city",
///     parameters: .object(["type": .string("object"), "properties": .object(["city": .object(["type": .string("string")])])]))
/// ```
public struct Tool: JSONObjectRepresentable, Hashable {
    /// The tool's type; `function` today.
    public var type: String
    /// The function.
    public var function: FunctionDefinition
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - type: the tool's type.
    ///   - function: the function.
    ///   - extra: further members.
    public init(type: String = "function", function: FunctionDefinition, extra: [String: JSONValue] = [:]) {
        self.type = type
        self.function = function
        self.extra = extra
    }

    /// A function tool.
    ///
    /// - Parameters:
    ///   - name: the function's name.
    ///   - description: what it does.
    ///   - parameters: its JSON Schema.
    ///   - strict: whether the model must follow the schema exactly.
    public static func function(name: String, description: String? = nil, parameters: JSONValue? = nil, strict: Bool? = nil) -> Tool {
        Tool(function: FunctionDefinition(name: name, description: description, parameters: parameters, strict: strict))
    }

    /// Decodes a tool.
    ///
    /// - Parameter json: a tool object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "tool")
        self.type = try r.requiredString("type", default: "function")
        self.function = try r.object("function", as: FunctionDefinition.self) ?? FunctionDefinition(name: "")
        self.extra = r.rest
    }

    /// The tool as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("type", self.type)
        w.set("function", self.function)
        return w.json
    }
}

/// A function the model may call.
public struct FunctionDefinition: JSONObjectRepresentable, Hashable {
    /// The function's name.
    public var name: String
    /// What it does.
    public var description: String?
    /// Its parameters, as a JSON Schema object.
    public var parameters: JSONValue?
    /// Whether the model must follow the schema exactly.
    public var strict: Bool?
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - name: the function's name.
    ///   - description: what it does.
    ///   - parameters: its JSON Schema.
    ///   - strict: strict schema adherence.
    ///   - extra: further members.
    public init(name: String, description: String? = nil, parameters: JSONValue? = nil, strict: Bool? = nil, extra: [String: JSONValue] = [:]) {
        self.name = name
        self.description = description
        self.parameters = parameters
        self.strict = strict
        self.extra = extra
    }

    /// Decodes a function definition.
    ///
    /// - Parameter json: a function object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "function")
        self.name = try r.requiredString("name", default: "")
        self.description = try r.string("description")
        self.parameters = r.value("parameters")
        self.strict = try r.bool("strict")
        self.extra = r.rest
    }

    /// The definition as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("name", self.name)
        w.set("description", self.description)
        w.set("parameters", self.parameters)
        w.set("strict", self.strict)
        return w.json
    }
}

/// A tool call an assistant made (in a completion), or a piece of one (in a stream's delta).
public struct ToolCall: JSONObjectRepresentable, Hashable {
    /// The call's position in a streamed delta (absent in complete messages).
    public var index: Int?
    /// The call's id, which the tool message answering it repeats.
    public var id: String?
    /// `function`.
    public var type: String?
    /// The function called and its arguments.
    public var function: FunctionCall?
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - index: the position in a streamed delta.
    ///   - id: the call's id.
    ///   - type: the call's type.
    ///   - function: the function called.
    ///   - extra: further members.
    public init(index: Int? = nil, id: String?, type: String? = "function", function: FunctionCall?, extra: [String: JSONValue] = [:]) {
        self.index = index
        self.id = id
        self.type = type
        self.function = function
        self.extra = extra
    }

    /// Decodes a tool call.
    ///
    /// - Parameter json: a tool call object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "tool_call")
        self.index = try r.int("index")
        self.id = try r.string("id")
        self.type = try r.string("type")
        self.function = try r.object("function", as: FunctionCall.self)
        self.extra = r.rest
    }

    /// The call as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("index", self.index)
        w.set("id", self.id)
        w.set("type", self.type)
        w.set("function", self.function)
        return w.json
    }
}

/// The function of a tool call: its name and its arguments as JSON text.
public struct FunctionCall: JSONObjectRepresentable, Hashable {
    /// The function's name (in a stream, only in the first delta of a call).
    public var name: String?
    /// The arguments, as JSON text (in a stream, a piece of it per delta).
    public var arguments: String?
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - name: the function's name.
    ///   - arguments: the arguments as JSON text.
    ///   - extra: further members.
    public init(name: String?, arguments: String?, extra: [String: JSONValue] = [:]) {
        self.name = name
        self.arguments = arguments
        self.extra = extra
    }

    /// Decodes a function call.
    ///
    /// - Parameter json: a function call object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "function")
        self.name = try r.string("name")
        self.arguments = try r.string("arguments")
        self.extra = r.rest
    }

    /// The call as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("name", self.name)
        w.set("arguments", self.arguments)
        return w.json
    }
}

/// Which tool the model must (or must not) call.
public struct ToolChoice: Hashable, Sendable {
    /// The value sent as `tool_choice`.
    public var json: JSONValue

    /// - Parameter json: the `tool_choice` value.
    public init(json: JSONValue) {
        self.json = json
    }

    /// The model decides (`"auto"`).
    public static let auto = ToolChoice(json: .string("auto"))
    /// The model must call some tool (`"required"`).
    public static let required = ToolChoice(json: .string("required"))
    /// The model must not call a tool (`"none"`; named so it cannot be mistaken for `Optional.none`).
    public static let noTool = ToolChoice(json: .string("none"))

    /// The model must call the function `name`.
    ///
    /// - Parameter name: the function's name.
    public static func function(_ name: String) -> ToolChoice {
        ToolChoice(json: .object(["type": .string("function"), "function": .object(["name": .string(name)])]))
    }
}

/// The format the model must answer in: text, any JSON object, or JSON following a schema.
public struct ResponseFormat: JSONObjectRepresentable, Hashable {
    /// `text`, `json_object` or `json_schema`.
    public var type: String
    /// For `json_schema`: `{"name": …, "schema": …, "strict": …}`.
    public var jsonSchema: JSONValue?
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - type: the format's type.
    ///   - jsonSchema: the schema description, for `json_schema`.
    ///   - extra: further members.
    public init(type: String, jsonSchema: JSONValue? = nil, extra: [String: JSONValue] = [:]) {
        self.type = type
        self.jsonSchema = jsonSchema
        self.extra = extra
    }

    /// Plain text.
    public static let text = ResponseFormat(type: "text")
    /// Any JSON object.
    public static let jsonObject = ResponseFormat(type: "json_object")

    /// JSON that follows `schema`.
    ///
    /// - Parameters:
    ///   - name: the schema's name.
    ///   - schema: the JSON Schema.
    ///   - strict: strict adherence.
    public static func jsonSchema(name: String, schema: JSONValue, strict: Bool? = nil) -> ResponseFormat {
        var o: [String: JSONValue] = ["name": .string(name), "schema": schema]
        if let strict { o["strict"] = .bool(strict) }
        return ResponseFormat(type: "json_schema", jsonSchema: .object(o))
    }

    /// Decodes a response format.
    ///
    /// - Parameter json: a response format object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "response_format")
        self.type = try r.requiredString("type", default: "text")
        self.jsonSchema = r.value("json_schema")
        self.extra = r.rest
    }

    /// The format as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("type", self.type)
        w.set("json_schema", self.jsonSchema)
        return w.json
    }
}
