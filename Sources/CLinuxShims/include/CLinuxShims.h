// Kernel macros that Swift cannot import (function-like ioctl numbers, some open flags).
// Each is exposed as a plain function or constant with an `edgelog_` prefix.
#ifndef EDGELOG_CLINUXSHIMS_H
#define EDGELOG_CLINUXSHIMS_H

#include <stdint.h>

/// O_DIRECT as a value: glibc hides it behind _GNU_SOURCE, which Swift's Glibc module does not set.
int edgelog_o_direct(void);

/// ioctl(fd, BLKGETSIZE64): size of a block device in bytes. Returns 0 or -1 with errno set.
int edgelog_blk_getsize64(int fd, uint64_t *size);

/// ioctl(fd, BLKSSZGET): logical sector size of a block device. Returns 0 or -1 with errno set.
int edgelog_blk_sszget(int fd, int *sector_size);

/// Linux native AIO context for submitting several O_DIRECT writes at once (io_setup).
/// Returns 0, or -1 with errno set (ENOSYS where the kernel lacks AIO).
int edgelog_aio_setup(unsigned max_events, uint64_t *context);
void edgelog_aio_destroy(uint64_t context);

/// Submits `count` (at most 8) writes to `fd` together and waits for all of them. results[i] is the
/// byte count written or -errno. Returns 0 when every write was submitted and waited for, -1 with
/// errno when submission failed (then results[i] is -errno for each write that was not submitted).
int edgelog_aio_pwrite_all(uint64_t context, int fd, int count, const void *const *buffers,
                           const uint64_t *lengths, const uint64_t *offsets, int64_t *results);

/// adjtimex(2) read-only: whether the kernel says its clock is synchronized (the call did not return
/// TIME_ERROR and STA_UNSYNC is clear), and its maximum and estimated error in microseconds.
/// Returns 0, or -1 with errno set.
int edgelog_clock_sync(int *synchronized, long *maxerror_us, long *esterror_us);

#endif
