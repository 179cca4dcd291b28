// Runs the real edgelog binary (built by `swift build --build-tests`) as a child process.

import Foundation

enum Binary {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let edgelog = root.appendingPathComponent(".build/debug/edgelog").path
    static let decoder = root.appendingPathComponent("scripts/edgelog_decode.py").path
}

struct Outcome {
    var code: Int32
    var out: String
    var err: String
}

/// Runs `edgelog args...` with `input` on stdin (and `environment` added to the test's); waits for it to exit.
@discardableResult
func edgelog(_ args: [String], input: String = "", environment: [String: String] = [:]) throws -> Outcome {
    try runProcess(Binary.edgelog, args, input: input, environment: environment)
}

func runProcess(_ executable: String, _ args: [String], input: String = "", environment: [String: String] = [:]) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = args
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    // A child that stops reading early (a refusal, a full ring) must fail its test, not kill the
    // test runner with SIGPIPE.
    signal(SIGPIPE, SIG_IGN)
    try process.run()
    try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
    try? stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Outcome(code: process.terminationStatus, out: String(decoding: out, as: UTF8.self), err: String(decoding: err, as: UTF8.self))
}

/// A scratch directory removed at the end of the test.
final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// A file of `size` zero bytes (sparse), for loop devices.
    func sparseFile(_ name: String, size: UInt64) throws -> String {
        let file = path(name)
        guard FileManager.default.createFile(atPath: file, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try handle.truncate(atOffset: size)
        try handle.close()
        return file
    }
}

/// Exported data records as (seq, payload object) for one source.
func exportedData(_ store: String, source: String) throws -> [(seq: UInt64, payload: [String: Any])] {
    let result = try edgelog(["export", "--device", store])
    var rows: [(UInt64, [String: Any])] = []
    for line in result.out.split(separator: "\n") {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              object["type"] as? String == "data", object["source"] as? String == source,
              let seq = (object["seq"] as? NSNumber)?.uint64Value, let payload = object["payload"] as? [String: Any]
        else { continue }
        rows.append((seq, payload))
    }
    return rows
}

func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}
