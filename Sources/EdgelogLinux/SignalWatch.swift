// A signal delivered to a handler on a queue of the caller's, instead of its default action:
// SIGPWR (which UPS daemons send) would otherwise end the process.

import Dispatch
import Glibc

public final class SignalWatch: @unchecked Sendable {
    public static let powerFailure = SIGPWR
    private let source: DispatchSourceSignal

    public init(signal number: Int32, queue: DispatchQueue, handler: @escaping @Sendable () -> Void) {
        // Dispatch sees the signal only once its default action is off.
        Glibc.signal(number, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler(handler: handler)
        source.resume()
    }

    public func cancel() { source.cancel() }

    /// Sends `signal` to this process (tests).
    public static func raise(_ number: Int32) { _ = Glibc.kill(getpid(), number) }
}
