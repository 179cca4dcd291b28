// Catalog entries of the serial drivers: the Modbus RTU master's sensors and the line readers.

import EdgelogHAL
import EdgelogIngress
import EdgelogSensors

extension DriverCatalog {
    static let serialEntries: [DriverEntry] = []
}
