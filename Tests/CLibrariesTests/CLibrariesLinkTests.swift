// Proves that the C libraries the runtime depends on are installed and link: one real call each.
import CGPIOD
import CI2C
import CLinuxShims
import CMosquitto
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
}
