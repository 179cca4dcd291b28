#include "CEdgelogCRC.h"
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int edgelog_crc32c_hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2")))
uint32_t edgelog_crc32c_hw(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = data;
    uint64_t c = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

int edgelog_crc32c_hw_available(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0; }

__attribute__((target("+crc")))
uint32_t edgelog_crc32c_hw(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = data;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc = __crc32cd(crc, word);
        p += 8;
        length -= 8;
    }
    while (length--) crc = __crc32cb(crc, *p++);
    return crc;
}

#else
int edgelog_crc32c_hw_available(void) { return 0; }
uint32_t edgelog_crc32c_hw(uint32_t crc, const void *data, size_t length) { (void)data; (void)length; return crc; }
#endif
