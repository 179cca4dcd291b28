import ArgumentParser
import EdgelogCore
import EdgelogRuntime

struct BoardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "board",
        abstract: "Check a board file, or list the shipped ones.",
        subcommands: [BoardCheck.self, BoardList.self]
    )
}

struct BoardCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a board file without running it: every key, value, bus, address and driver setting.",
        discussion: """
            Reads the file as `run --board` does and builds every driver over stand-in buses (no device \
            is opened), so a mistake is reported before the board is deployed, as FILE:LINE: KEY: WHY. \
            Device images of simulated buses are read too. Exit 0: valid; 64: a mistake (named on stderr).

            Example: edgelog board check board/raspberry-pi-4.yaml
            """
    )

    @Argument(help: "The board file.")
    var file: String

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        do {
            let board = try Board.load(file)
            _ = try BoardSources.build(board, check: true)
            if json {
                print(BoardSummaryJSON.check(board))
            } else {
                print("\(terminalSafe(file)): board \(terminalSafe(board.name)) is valid: \(board.buses.count) bus(es), \(board.sensors.count) sensor(s)")
                for sensor in board.sensors {
                    let period = sensor.periodMs > 0 ? "every \(sensor.periodMs) ms" : "as readings arrive"
                    print("  \(terminalSafe(sensor.name)): \(sensor.driver) on \(terminalSafe(sensor.bus))\(sensor.settings.busAddress.map { " at \($0)" } ?? ""), \(period), overload \(sensor.policy.name)")
                }
                for line in BoardPowerText.lines(board) { print("  " + terminalSafe(line)) }
            }
        } catch {
            if json { print(BoardSummaryJSON.error(error)) }
            Exit.say("error: \(error)")
            throw ExitCode(Exit.usage)
        }
    }
}

struct BoardList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the board files shipped with edgelog (the board/ directory beside the executable's source tree, or --dir)."
    )

    @Option(help: "Directory of board files.")
    var dir: String?

    @Flag(help: "Print one JSON object per board.")
    var json = false

    func run() throws {
        let directory = dir ?? ShippedBoards.directory()
        let boards = ShippedBoards.list(directory)
        if boards.isEmpty {
            Exit.say("error: no board files in \(directory)")
            throw ExitCode(Exit.usage)
        }
        for (path, result) in boards {
            switch result {
            case .success(let board):
                if json { print(BoardSummaryJSON.check(board)) } else {
                    print("\(terminalSafe(path))  \(terminalSafe(board.name)): \(terminalSafe(board.description ?? "")) (\(board.sensors.count) sensors)")
                }
            case .failure(let error):
                if json { print(BoardSummaryJSON.error(error)) } else { print("\(terminalSafe(path))  invalid: \(terminalSafe(error.description))") }
            }
        }
    }
}
