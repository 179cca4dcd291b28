// What can be wrong with a running logger, in the four categories of NAMUR NE 107 ("Self-monitoring
// and diagnosis of field devices"): Failure, Function check, Out of specification, Maintenance
// required; none active is OK. The order of the cases is the priority (docs/LEDS.md): categories in
// NE 107's order F > C > S > M, and a fixed order inside each. The blink code of a condition is its
// category's number in long flashes, then its place in the category in short ones.

/// NE 107 status categories, most urgent first. `rawValue` is the long-flash count.
public enum NE107Category: Int, CaseIterable, Sendable, Comparable {
    case failure = 1
    case functionCheck = 2
    case outOfSpecification = 3
    case maintenanceRequired = 4

    /// The letter NE 107 and its symbols use: F, C, S, M.
    public var letter: String {
        switch self {
        case .failure: "F"
        case .functionCheck: "C"
        case .outOfSpecification: "S"
        case .maintenanceRequired: "M"
        }
    }

    public var name: String {
        switch self {
        case .failure: "Failure"
        case .functionCheck: "Function check"
        case .outOfSpecification: "Out of specification"
        case .maintenanceRequired: "Maintenance required"
        }
    }

    public init?(letter: String) {
        guard let found = Self.allCases.first(where: { $0.letter == letter }) else { return nil }
        self = found
    }

    /// More urgent sorts first.
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A blink code: `long` long flashes (the category), then `short` short ones (the condition).
public struct BlinkCode: Hashable, Sendable, CustomStringConvertible {
    public var long: Int
    public var short: Int
    public init(long: Int, short: Int) {
        self.long = long
        self.short = short
    }

    /// "3-2": how docs/LEDS.md and `edgelog status --json` write it.
    public var description: String { "\(long)-\(short)" }

    /// "3 long, 2 short": how a technician counts it.
    public var words: String { "\(long) long, \(short) short" }
}

public enum StatusCondition: String, CaseIterable, Sendable, Codable, Comparable {
    case storageFault = "storage_fault"
    case verificationFailure = "verification_failure"
    case powerFailHold = "power_fail_hold"
    case brownoutLoop = "brownout_loop"
    case sensorFault = "sensor_fault"
    case timeNotSynchronized = "time_not_synchronized"
    case uplinkBacklog = "uplink_backlog"

    public var category: NE107Category {
        switch self {
        case .storageFault, .verificationFailure: .failure
        case .powerFailHold: .functionCheck
        case .brownoutLoop, .sensorFault: .outOfSpecification
        case .timeNotSynchronized, .uplinkBacklog: .maintenanceRequired
        }
    }

    /// 1 = the most urgent of all.
    public var priority: Int { (Self.allCases.firstIndex(of: self) ?? Self.allCases.count) + 1 }

    /// 1-based place inside its category (the short-flash count).
    public var placeInCategory: Int {
        Self.allCases.filter { $0.category == category }.firstIndex(of: self).map { $0 + 1 } ?? 1
    }

    public var blinkCode: BlinkCode { BlinkCode(long: category.rawValue, short: placeInCategory) }

    public static func < (a: Self, b: Self) -> Bool { a.priority < b.priority }

    /// What it means, for a technician.
    public var meaning: String {
        switch self {
        case .storageFault:
            "the store refuses records (writes or flushes to the card fail, or the ring is full under policy pause): readings are not being kept"
        case .verificationFailure:
            "the store's own evidence does not check (a committed segment fails its hash or chain, or the metadata contradicts the signed head)"
        case .powerFailHold:
            "the supply failed: acquisition is frozen and what is buffered is being committed before the hold-up energy runs out"
        case .brownoutLoop:
            "the supply keeps failing and coming back: every brownout stops acquisition for a moment"
        case .sensorFault:
            "one or more sensors do not answer or answer wrongly: their readings are missing (each failure is recorded)"
        case .timeNotSynchronized:
            "the system clock is not synchronized: wall times carry their uncertainty; order is not affected"
        case .uplinkBacklog:
            "committed segments are waiting to be sent upstream"
        }
    }

    /// What to do about it.
    public var action: String {
        switch self {
        case .storageFault:
            "check the card (dmesg for I/O errors) and the ring (edgelog inspect); copy the image before anything else; replace a failing card; a full ring: export, then free space (docs/CLI.md exit codes 4 and 6)"
        case .verificationFailure:
            "do not format or replace anything: copy the image, run edgelog verify with the public key and the anchor, and give both to the person responsible for the records"
        case .powerFailHold:
            "restore the supply; do not unplug or reset the unit while this shows: it ends by itself"
        case .brownoutLoop:
            "check the supply, its wiring and connectors, and the hold-up capacitor; measure the voltage under load"
        case .sensorFault:
            "see the sources below for which sensor and what error; check its wiring, address, power and bus"
        case .timeNotSynchronized:
            "check the network and the time service (timedatectl, chronyc tracking)"
        case .uplinkBacklog:
            "check the network and the collector; the records stay safe in the store until the ring fills"
        }
    }
}
