// CRC-32C with the CPU's instruction (SSE4.2 crc32 on x86-64, the ARMv8 CRC extension on aarch64).
// Swift cannot reach these intrinsics, and the commit path checksums every byte it writes.
#ifndef EDGELOG_CEDGELOGCRC_H
#define EDGELOG_CEDGELOGCRC_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC-32C instruction, checked at run time.
int edgelog_crc32c_hw_available(void);

/// Raw reflected CRC-32C update (no initial or final inversion). Call only when available.
uint32_t edgelog_crc32c_hw(uint32_t crc, const void *data, size_t length);

#endif
