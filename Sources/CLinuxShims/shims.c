#define _GNU_SOURCE
#include "CLinuxShims.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/aio_abi.h>
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

// The kernel ABI these wrappers rely on: the ioctl argument types.
_Static_assert(sizeof(uint64_t) == 8, "BLKGETSIZE64 writes a u64");
_Static_assert(sizeof(int) == 4, "BLKSSZGET writes an int");

int edgelog_o_direct(void) { return O_DIRECT; }

int edgelog_blk_getsize64(int fd, uint64_t *size) { return ioctl(fd, BLKGETSIZE64, size); }

int edgelog_blk_sszget(int fd, int *sector_size) { return ioctl(fd, BLKSSZGET, sector_size); }

int edgelog_aio_setup(unsigned max_events, uint64_t *context) {
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, max_events, &ctx) < 0) return -1;
    *context = (uint64_t)ctx;
    return 0;
}

void edgelog_aio_destroy(uint64_t context) { syscall(SYS_io_destroy, (aio_context_t)context); }

int edgelog_aio_pwrite_all(uint64_t context, int fd, int count, const void *const *buffers,
                           const uint64_t *lengths, const uint64_t *offsets, int64_t *results) {
    if (count < 1 || count > 8) { errno = EINVAL; return -1; }
    struct iocb cbs[8];
    struct iocb *list[8];
    for (int i = 0; i < count; i++) {
        memset(&cbs[i], 0, sizeof cbs[i]);
        cbs[i].aio_data = (uint64_t)i;
        cbs[i].aio_lio_opcode = IOCB_CMD_PWRITE;
        cbs[i].aio_fildes = (uint32_t)fd;
        cbs[i].aio_buf = (uint64_t)(uintptr_t)buffers[i];
        cbs[i].aio_nbytes = lengths[i];
        cbs[i].aio_offset = (int64_t)offsets[i];
        list[i] = &cbs[i];
        results[i] = -EIO;
    }
    int submitted = 0;
    int failure = 0;
    while (submitted < count) {
        long n = syscall(SYS_io_submit, (aio_context_t)context, (long)(count - submitted), list + submitted);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            failure = errno;
            for (int i = submitted; i < count; i++) results[i] = -failure;
            break;
        }
        submitted += (int)n;
    }
    // Every submitted write must be waited for, even after a failure: its buffer is in use.
    int done = 0;
    struct io_event events[8];
    while (done < submitted) {
        long n = syscall(SYS_io_getevents, (aio_context_t)context, (long)(submitted - done), (long)(submitted - done), events, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        for (long k = 0; k < n; k++) {
            uint64_t i = events[k].data;
            if (i < (uint64_t)count) results[i] = events[k].res;
        }
        done += (int)n;
    }
    if (failure) { errno = failure; return -1; }
    return 0;
}

int edgelog_clock_sync(int *synchronized, long *maxerror_us, long *esterror_us) {
    struct timex tx;
    memset(&tx, 0, sizeof tx); /* modes 0: read only */
    int state = adjtimex(&tx);
    if (state == -1) return -1;
    *synchronized = state != TIME_ERROR && !(tx.status & STA_UNSYNC);
    *maxerror_us = tx.maxerror;
    *esterror_us = tx.esterror;
    return 0;
}
