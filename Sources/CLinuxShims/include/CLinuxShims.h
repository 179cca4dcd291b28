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

#endif
