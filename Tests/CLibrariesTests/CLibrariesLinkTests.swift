// Proves that the C libraries the runtime depends on are installed and link: one real call each.
import CGPIOD
import CI2C
import CLinuxShims
import CMosquitto
import Glibc
import Testing

@Suite("C libraries link")
struct CLibrariesLinkTests {
    @Test("libgpiod reports a 1.x version")
    func gpiodVersion() throws {
        let version = try #require(gpiod_version_string())
        #expect(String(cString: version).hasPrefix("1."))
    }

    @Test("libmosquitto initialises and reports a 2.x library version")
    func mosquittoVersion() {
        #expect(mosquitto_lib_init() == Int32(MOSQ_ERR_SUCCESS.rawValue))
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        #expect(major >= 1)
        mosquitto_lib_cleanup()
    }

    @Test("libi2c rejects a closed file descriptor with a negative result")
    func i2cOnBadDescriptor() {
        // fd -1 is never an I2C adapter: the library must call the kernel and fail, not crash.
        #expect(i2c_smbus_read_byte(-1) < 0)
    }

    @Test("the C shim exposes O_DIRECT")
    func oDirect() {
        #expect(edgelog_o_direct() != 0)
    }

    @Test("the affinity shims list the CPUs allowed, bind to one and back, and refuse bad lists")
    func affinity() throws {
        var cpus = [Int32](repeating: -1, count: 64)
        let count = Int(edgelog_allowed_cpus(&cpus, Int32(cpus.count)))
        #expect(count >= 1)
        let allowed = Array(cpus[0..<max(count, 0)])
        #expect(allowed == allowed.sorted())
        let first = try #require(allowed.first)
        // The test thread bound to one CPU, then given every allowed CPU back.
        #expect([first].withUnsafeBufferPointer { edgelog_bind_thread(0, $0.baseAddress, 1) } == 0)
        var now = [Int32](repeating: -1, count: 64)
        #expect(edgelog_allowed_cpus(&now, Int32(now.count)) == 1 && now[0] == first)
        #expect(allowed.withUnsafeBufferPointer { edgelog_bind_thread(0, $0.baseAddress, Int32($0.count)) } == 0)
        #expect(Int(edgelog_allowed_cpus(&now, Int32(now.count))) == count)
        // No CPU, or one out of range: refused, nothing changed.
        for bad: [Int32] in [[], [-1], [1 << 20]] {
            let (result, error) = bad.withUnsafeBufferPointer { (edgelog_bind_thread(0, $0.baseAddress, Int32($0.count)), errno) }
            #expect(result == -1 && error == EINVAL, "cpus \(bad)")
        }
        #expect(Int(edgelog_allowed_cpus(&now, Int32(now.count))) == count)
    }
}
