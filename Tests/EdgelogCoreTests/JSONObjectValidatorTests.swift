import EdgelogCore
import Testing

@Suite("JSON object validator")
struct JSONObjectValidatorTests {
    static let accepted: [String] = [
        "{}", " {} ", "{\"a\":1}", "{\"a\":-0.5e+10,\"b\":[true,false,null],\"c\":{\"d\":\"\\u00e9\\n\"}}",
        "{\"t\":\"caf\u{e9} \u{1F600}\"}", "{\"a\":[]}", "{\"a\":0}", "\t{\"x\":[1,[2,[3]]]}\r",
    ]

    @Test("accepts JSON objects", arguments: accepted)
    func accepts(_ text: String) throws {
        let bytes = Array(text.utf8)
        let range = try bytes.withUnsafeBytes { try JSONObjectValidator.validate($0) }
        #expect(bytes[range.lowerBound] == UInt8(ascii: "{"))
        #expect(bytes[range.upperBound - 1] == UInt8(ascii: "}"))
    }

    static let rejected: [(String, String)] = [
        ("", "empty line"),
        ("[1,2]", "expected a JSON object"),
        ("\"text\"", "expected a JSON object"),
        ("{", "line ends"),
        ("{\"a\":}", "unexpected character"),
        ("{\"a\":1,}", "quoted member name"),
        ("{a:1}", "quoted member name"),
        ("{\"a\":01}", "',' or '}'"),
        ("{\"a\":1.}", "digits after '.'"),
        ("{\"a\":tru}", "unknown literal"),
        ("{\"a\":\"x\ty\"}", "control character"),
        ("{\"a\":\"\\x\"}", "unknown escape"),
        ("{\"a\":\"\\u12G4\"}", "four hex digits"),
        ("{} {}", "after the JSON object"),
    ]

    @Test("rejects what is not one JSON object, naming the reason")
    func rejects() {
        for (text, reason) in Self.rejected {
            let bytes = Array(text.utf8)
            let outcome = bytes.withUnsafeBytes { raw -> JSONProblem? in
                do { _ = try JSONObjectValidator.validate(raw); return nil } catch let problem as JSONProblem { return problem } catch { return nil }
            }
            guard let problem = outcome else {
                Issue.record("accepted \(text)")
                continue
            }
            #expect(problem.reason.contains(reason), "\(text): \(problem)")
        }
    }

    @Test("rejects invalid UTF-8 and overlong or surrogate sequences")
    func rejectsBadUTF8() {
        let cases: [[UInt8]] = [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0xFF]]
        for bad in cases {
            let bytes = Array("{\"a\":\"".utf8) + bad + Array("\"}".utf8)
            #expect(throws: JSONProblem.self) { _ = try bytes.withUnsafeBytes { try JSONObjectValidator.validate($0) } }
        }
    }

    @Test("bounds nesting depth")
    func depth() {
        let deep = "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
        let bytes = Array(deep.utf8)
        #expect(throws: JSONProblem.self) { _ = try bytes.withUnsafeBytes { try JSONObjectValidator.validate($0) } }
    }
}
