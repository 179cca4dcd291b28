// Built with -DEDGELOG_FUZZ and -sanitize=fuzzer it is a libFuzzer target (the target is chosen
// with EDGELOG_FUZZ_TARGET). Built normally it replays files through the targets, so the seed
// corpus and every crash file kept in fuzz/regressions are part of the ordinary tests, and it writes
// seed corpora from the crash workloads.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
#if canImport(Glibc)
import Glibc
#endif

func abortProcess() -> Never { abort() }

enum FuzzOutput {
    static func line(_ text: String) {
        var text = text + "\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

#if EDGELOG_FUZZ
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    if selected == nil {
        let name = Environment.get("EDGELOG_FUZZ_TARGET") ?? "json"
        guard let target = FuzzTarget(rawValue: name) else {
            FuzzOutput.line("EDGELOG_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue))")
            abortProcess()
        }
        selected = target
    }
    selected?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct FuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard args.count >= 2 else {
            FuzzOutput.line("""
                usage: edgelog-fuzz TARGET FILE...        replay files through a fuzz target (json, metadata, segment, image)
                       edgelog-fuzz seed-corpus DIR       write seed inputs for every target under DIR/TARGET/
                """)
            exit(64)
        }
        if args[0] == "seed-corpus" {
            do { try SeedCorpus.write(to: args[1]) } catch {
                FuzzOutput.line("seed-corpus: \(error)")
                exit(1)
            }
            return
        }
        guard let target = FuzzTarget(rawValue: args[0]) else {
            FuzzOutput.line("unknown target \(args[0])")
            exit(64)
        }
        var count = 0
        for path in args.dropFirst() {
            guard let bytes = FileBytes.read(path) else {
                FuzzOutput.line("cannot read \(path)")
                exit(1)
            }
            bytes.withUnsafeBytes { target.run($0) }
            count += 1
        }
        FuzzOutput.line("replayed \(count) input(s) through \(target.rawValue): no crash")
    }
}
#endif
