#define _GNU_SOURCE
#include "CLinuxShims.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

// The kernel ABI these wrappers rely on: the ioctl argument types.
_Static_assert(sizeof(uint64_t) == 8, "BLKGETSIZE64 writes a u64");
_Static_assert(sizeof(int) == 4, "BLKSSZGET writes an int");

int edgelog_o_direct(void) { return O_DIRECT; }

int edgelog_blk_getsize64(int fd, uint64_t *size) { return ioctl(fd, BLKGETSIZE64, size); }

int edgelog_blk_sszget(int fd, int *sector_size) { return ioctl(fd, BLKSSZGET, sector_size); }
