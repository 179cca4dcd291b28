// The inputs that tell the power path power is failing, each on a thread (or queue) of its own:
// a GPIO line's kernel edge events, an input-event key, and SIGPWR. They decide only "failing"
// or "good"; the window itself is the power path's (PowerPath.swift).

import Dispatch
import EdgelogCore
import EdgelogHAL
import EdgelogLinux
import EdgelogStore

/// What goes wrong with an input: reported, counted, retried; the other inputs carry on.
public typealias PowerInputFault = @Sendable (String, HardwareError) -> Void

/// Something the power path listens to until `stop`.
public protocol PowerInput: AnyObject, Sendable {
    var label: String { get }
    func start(path: PowerPath, fault: @escaping PowerInputFault)
    func stop()
}

/// A start/stop flag and the thread's end, shared by the thread-based inputs.
final class InputThread: @unchecked Sendable {
    private let monitor = Monitor()
    private var stopping = false
    private var running = false

    var shouldStop: Bool {
        monitor.lock()
        defer { monitor.unlock() }
        return stopping
    }

    func run(label: String, _ body: @escaping @Sendable () -> Void) {
        monitor.lock()
        running = true
        monitor.unlock()
        DispatchQueue(label: label).async {
            body()
            self.monitor.lock()
            self.running = false
            self.monitor.broadcast()
            self.monitor.unlock()
        }
    }

    func stop() {
        monitor.lock()
        stopping = true
        while running { monitor.wait() }
        monitor.unlock()
    }

    /// Sleeps in short steps, returning early when stopped.
    func pause(ms: Int) {
        var left = ms
        while left > 0 && !shouldStop {
            Process.sleep(milliseconds: min(left, 50))
            left -= 50
        }
    }
}

/// A supervisor or UPS output on a GPIO line (both edges requested; the active level means failing).
public final class GPIOPowerInput: PowerInput, @unchecked Sendable {
    public let label: String
    private let open: () throws(HardwareError) -> GPIOInput
    private let activeHigh: Bool
    private let debounceMs: Int
    private let thread = InputThread()
    /// Active pulses shorter than the debounce (ripple), counted.
    public private(set) var ripples: UInt64 = 0

    /// `open` requests the line (retried after a failure with a pause).
    public init(label: String, activeHigh: Bool, debounceMs: Int, open: @escaping () throws(HardwareError) -> GPIOInput) {
        self.label = label
        self.activeHigh = activeHigh
        self.debounceMs = debounceMs
        self.open = open
    }

    public func start(path: PowerPath, fault: @escaping PowerInputFault) {
        thread.run(label: "edgelog.power.gpio") { [self] in
            var line: GPIOInput?
            while !thread.shouldStop {
                do throws(HardwareError) {
                    if line == nil {
                        let opened = try open()
                        line = opened
                        // Already failing at start (a brownout loop comes back up into a low supply).
                        if try opened.value() == activeHigh { path.failing(trigger: .gpio, input: label, detectedNs: nil) }
                    }
                    guard let input = line, let edge = try input.waitEdge(timeoutMs: 100) else { continue }
                    if edge.rising == activeHigh {
                        if debounceMs > 0, try released(input, within: debounceMs) {
                            ripples &+= 1
                            continue
                        }
                        path.failing(trigger: .gpio, input: label, detectedNs: Int64(clamping: edge.timestampNs))
                    } else {
                        let level = LevelReader(input: input, activeHigh: activeHigh)
                        path.good { level.inactive() }
                    }
                } catch {
                    fault(label, error)
                    line = nil
                    thread.pause(ms: 1000)
                }
            }
        }
    }

    /// True when the line goes back to its inactive level within `ms` (a glitch, not a failure).
    private func released(_ input: GPIOInput, within ms: Int) throws(HardwareError) -> Bool {
        guard let edge = try input.waitEdge(timeoutMs: ms) else { return false }
        return edge.rising != activeHigh
    }

    public func stop() { thread.stop() }
}

/// Reads a line's level for the resume check (on the resume queue, while the input's own thread
/// waits for edges: a libgpiod line may be read from two threads).
final class LevelReader: @unchecked Sendable {
    let input: GPIOInput
    let activeHigh: Bool
    init(input: GPIOInput, activeHigh: Bool) {
        self.input = input
        self.activeHigh = activeHigh
    }
    func inactive() -> Bool { (try? input.value()).map { $0 != activeHigh } ?? false }
}

/// An input-event key (KEY_POWER from an ACPI power button or gpio-shutdown): a press is a failure.
/// A key says nothing about power coming back: the hold lasts until the job stops.
public final class KeyPowerInput: PowerInput, @unchecked Sendable {
    public let label: String
    private let code: UInt16
    private let open: () throws(HardwareError) -> KeyInput
    private let thread = InputThread()

    public init(label: String, code: UInt16, open: @escaping () throws(HardwareError) -> KeyInput) {
        self.label = label
        self.code = code
        self.open = open
    }

    public func start(path: PowerPath, fault: @escaping PowerInputFault) {
        thread.run(label: "edgelog.power.key") { [self] in
            var device: KeyInput?
            while !thread.shouldStop {
                do throws(HardwareError) {
                    if device == nil { device = try open() }
                    guard let input = device, let event = try input.waitKey(timeoutMs: 100) else { continue }
                    if event.code == code && event.value == 1 {
                        path.failing(trigger: .inputKey, input: label, detectedNs: event.timestampNs)
                    }
                } catch {
                    fault(label, error)
                    device = nil
                    thread.pause(ms: 1000)
                }
            }
        }
    }

    public func stop() { thread.stop() }
}

/// SIGPWR as UPS daemons send it; the power status file (sysvinit's convention: "F" failing, "L"
/// low battery, "O" power OK) tells a failure from a restoration. No file, or anything else: failing.
/// Created as early as possible (its default action would end the process): a signal that comes
/// before the power path exists is kept and acted on at `start`.
public final class SignalPowerInput: PowerInput, @unchecked Sendable {
    public let label = "SIGPWR"
    private let statusFile: String
    private let queue = DispatchQueue(label: "edgelog.power.sigpwr")
    private var watch: SignalWatch?
    private var path: PowerPath?
    private var pendingFailure = false

    public init(statusFile: String) {
        self.statusFile = statusFile
        watch = SignalWatch(signal: SignalWatch.powerFailure, queue: queue) { [weak self] in self?.signalled() }
    }

    /// On the queue.
    private func signalled() {
        let ok = Self.powerOK(statusFile)
        guard let path else {
            pendingFailure = !ok
            return
        }
        if ok {
            let file = statusFile
            path.good { Self.powerOK(file) }
        } else {
            path.failing(trigger: .sigpwr, input: "SIGPWR", detectedNs: nil)
        }
    }

    public func start(path: PowerPath, fault: @escaping PowerInputFault) {
        queue.sync {
            self.path = path
            if pendingFailure {
                pendingFailure = false
                path.failing(trigger: .sigpwr, input: "SIGPWR", detectedNs: nil)
            }
        }
    }

    /// The first byte of the status file is "O". A FIFO, a device or anything but a regular file
    /// is not read (it could block the signal's queue or never end).
    static func powerOK(_ file: String) -> Bool {
        guard let bytes = LocalFile.readRegularPrefix(file, count: 1) else { return false }
        return bytes.first == UInt8(ascii: "O")
    }

    public func stop() {
        watch?.cancel()
        queue.sync { path = nil }
    }
}
