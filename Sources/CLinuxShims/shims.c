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
#include <linux/input.h>
#include <unistd.h>
#include <termios.h>
#include <sys/file.h>
#include <stdlib.h>
#include <linux/i2c.h>
#include <linux/i2c-dev.h>
#include <linux/spi/spidev.h>
#include <sched.h>

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

int edgelog_aio_submit_dsync(uint64_t context, int fd, const void *buffer, uint64_t length, uint64_t offset, uint64_t tag) {
    struct iocb cb;
    struct iocb *list[1] = { &cb };
    memset(&cb, 0, sizeof cb);
    cb.aio_data = tag;
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_fildes = (uint32_t)fd;
    cb.aio_buf = (uint64_t)(uintptr_t)buffer;
    cb.aio_nbytes = length;
    cb.aio_offset = (int64_t)offset;
    cb.aio_rw_flags = RWF_DSYNC;
    for (;;) {
        long n = syscall(SYS_io_submit, (aio_context_t)context, 1L, list);
        if (n == 1) return 0;
        if (n < 0 && errno == EINTR) continue;
        // EAGAIN (no resources now) goes back to the caller, which writes and flushes instead.
        if (n == 0) errno = EAGAIN;
        return -1;
    }
}

int edgelog_aio_wait_one(uint64_t context, int64_t *result, uint64_t *tag) {
    struct io_event event;
    for (;;) {
        long n = syscall(SYS_io_getevents, (aio_context_t)context, 1L, 1L, &event, NULL);
        if (n == 1) {
            *result = event.res;
            *tag = event.data;
            return 0;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) errno = EIO;
        return -1;
    }
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

// I2C ---------------------------------------------------------------------------------------------
_Static_assert(sizeof(struct i2c_msg) == (sizeof(void *) == 8 ? 16 : 12), "struct i2c_msg as the I2C_RDWR ioctl takes it");

int edgelog_i2c_funcs(int fd, unsigned long *funcs) { return ioctl(fd, I2C_FUNCS, funcs); }
int edgelog_i2c_set_address(int fd, unsigned address) { return ioctl(fd, I2C_SLAVE, (unsigned long)address); }
unsigned long edgelog_i2c_func_smbus_byte_data(void) { return I2C_FUNC_SMBUS_BYTE_DATA; }
unsigned long edgelog_i2c_func_smbus_word_data(void) { return I2C_FUNC_SMBUS_WORD_DATA; }
unsigned long edgelog_i2c_func_smbus_i2c_block(void) { return I2C_FUNC_SMBUS_READ_I2C_BLOCK; }
unsigned long edgelog_i2c_func_i2c(void) { return I2C_FUNC_I2C; }

int edgelog_i2c_rdwr(int fd, unsigned address, const uint8_t *wbuf, uint16_t wlen, uint8_t *rbuf, uint16_t rlen) {
    struct i2c_msg msgs[2];
    int n = 0;
    if (wlen > 0) {
        msgs[n].addr = (uint16_t)address;
        msgs[n].flags = 0;
        msgs[n].len = wlen;
        msgs[n].buf = (uint8_t *)wbuf;
        n++;
    }
    if (rlen > 0) {
        msgs[n].addr = (uint16_t)address;
        msgs[n].flags = I2C_M_RD;
        msgs[n].len = rlen;
        msgs[n].buf = rbuf;
        n++;
    }
    if (n == 0) return 0;
    struct i2c_rdwr_ioctl_data data = { .msgs = msgs, .nmsgs = (uint32_t)n };
    return ioctl(fd, I2C_RDWR, &data);
}

// SPI ---------------------------------------------------------------------------------------------
_Static_assert(sizeof(struct spi_ioc_transfer) == 32, "struct spi_ioc_transfer is 32 bytes in the spidev ABI");

int edgelog_spi_configure(int fd, uint8_t mode, uint8_t bits, uint32_t speed_hz) {
    if (ioctl(fd, SPI_IOC_WR_MODE, &mode) < 0) return -1;
    if (ioctl(fd, SPI_IOC_WR_BITS_PER_WORD, &bits) < 0) return -1;
    if (ioctl(fd, SPI_IOC_WR_MAX_SPEED_HZ, &speed_hz) < 0) return -1;
    return 0;
}

int edgelog_spi_transfer(int fd, const uint8_t *tx, uint8_t *rx, uint32_t len, uint32_t speed_hz, uint8_t bits) {
    struct spi_ioc_transfer t;
    memset(&t, 0, sizeof t);
    t.tx_buf = (uint64_t)(uintptr_t)tx;
    t.rx_buf = (uint64_t)(uintptr_t)rx;
    t.len = len;
    t.speed_hz = speed_hz;
    t.bits_per_word = bits;
    return ioctl(fd, SPI_IOC_MESSAGE(1), &t);
}

// Serial ------------------------------------------------------------------------------------------
static speed_t edgelog_speed(int baud) {
    switch (baud) {
    case 1200: return B1200;
    case 2400: return B2400;
    case 4800: return B4800;
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 921600: return B921600;
    default: return 0;
    }
}

int edgelog_serial_configure(int fd, int baud, int data_bits, int parity, int stop_bits) {
    speed_t speed = edgelog_speed(baud);
    if (speed == 0 || data_bits < 5 || data_bits > 8 || parity < 0 || parity > 2 || stop_bits < 1 || stop_bits > 2) {
        errno = EINVAL;
        return -1;
    }
    struct termios t;
    if (tcgetattr(fd, &t) < 0) return -1;
    cfmakeraw(&t);
    t.c_cflag &= ~(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag |= data_bits == 5 ? CS5 : data_bits == 6 ? CS6 : data_bits == 7 ? CS7 : CS8;
    if (parity == 1) t.c_cflag |= PARENB;
    if (parity == 2) t.c_cflag |= PARENB | PARODD;
    if (stop_bits == 2) t.c_cflag |= CSTOPB;
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, speed) < 0 || cfsetospeed(&t, speed) < 0) return -1;
    if (tcsetattr(fd, TCSANOW, &t) < 0) return -1;
    return tcflush(fd, TCIOFLUSH);
}

int edgelog_serial_exclusive(int fd) { return ioctl(fd, TIOCEXCL); }
int edgelog_serial_flush_input(int fd) { return tcflush(fd, TCIFLUSH); }
int edgelog_flock_exclusive(int fd) { return flock(fd, LOCK_EX | LOCK_NB); }

int edgelog_open_pty(char *name, int size) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) return -1;
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, (size_t)size) != 0) {
        int e = errno;
        close(master);
        errno = e;
        return -1;
    }
    return master;
}

int edgelog_evdev_monotonic(int fd) {
    int clock = CLOCK_MONOTONIC;
    return ioctl(fd, EVIOCSCLOCKID, &clock);
}

int edgelog_evdev_read(int fd, int64_t *sec, int64_t *usec, uint16_t *type, uint16_t *code, int32_t *value) {
    struct input_event event;
    ssize_t n = read(fd, &event, sizeof event);
    if (n < 0) return -1;
    if ((size_t)n != sizeof event) return 0;
    *sec = (int64_t)event.input_event_sec;
    *usec = (int64_t)event.input_event_usec;
    *type = event.type;
    *code = event.code;
    *value = event.value;
    return 1;
}

#include <sys/socket.h>

int edgelog_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }

int edgelog_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC | O_NONBLOCK); }

int edgelog_bind_thread(int tid, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (count <= 0) { errno = EINVAL; return -1; }
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) { errno = EINVAL; return -1; }
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(tid, sizeof set, &set);
}

int edgelog_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++) {
        if (CPU_ISSET(c, &set)) cpus[n++] = c;
    }
    return n;
}
