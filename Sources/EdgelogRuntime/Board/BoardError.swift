// A mistake in a board or configuration file, named by file, line and key, as a person fixes it.

public struct BoardError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    /// 1-based; 0 when the problem is the file as a whole (unreadable, empty).
    public var line: Int
    /// The dotted path of the key: "sensors[2].address".
    public var key: String?
    public var why: String

    public init(file: String, line: Int, key: String?, why: String) {
        self.file = file
        self.line = line
        self.key = key
        self.why = why
    }

    public var description: String {
        var text = file
        if line > 0 { text += ":\(line)" }
        if let key { text += ": \(key)" }
        return text + ": " + why
    }
}
