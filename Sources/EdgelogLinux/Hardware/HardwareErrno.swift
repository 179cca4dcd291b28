// How the kernel's errno values read as hardware faults (docs/SENSORS.md, "Errors").

import EdgelogHAL
import Glibc

extension HardwareError {
    /// A failed syscall on `device`, classified by its errno.
    static func errno(_ e: Errno, device: String, address: String? = nil, register: String? = nil, doing: String) -> HardwareError {
        let kind: HardwareError.Kind
        var detail = doing + ": " + e.message
        switch e.code {
        case ENXIO, EREMOTEIO:
            kind = .nack
            detail = doing + ": no acknowledgement (" + e.message + ")"
        case ETIMEDOUT: kind = .timeout
        case ENODEV, ENOENT, ESHUTDOWN:
            kind = .vanished
            detail = doing + ": the device or its adapter is gone, or nothing answers at this address (" + e.message + ")"
        case EACCES, EPERM: kind = .permission
        case EBUSY, EWOULDBLOCK: kind = .busy
        case EOPNOTSUPP, ENOTTY, EPROTONOSUPPORT: kind = .unsupported
        case EINVAL: kind = .invalidArgument
        default: kind = .io
        }
        return HardwareError(kind, device: device, address: address, register: register, errno: e.code, detail: detail)
    }
}
