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

/// Submits one write through kernel AIO with RWF_DSYNC: it completes only once durable (O_DSYNC:
/// the data and what is needed to read it back). The buffer must stay valid until the write is
/// waited for. `tag` comes back with its completion. Returns 0, or -1 with errno set.
int edgelog_aio_submit_dsync(uint64_t context, int fd, const void *buffer, uint64_t length, uint64_t offset, uint64_t tag);
/// Waits for one submitted write; *result is its byte count or -errno, *tag the one it was
/// submitted with. Returns 0, or -1 with errno.
int edgelog_aio_wait_one(uint64_t context, int64_t *result, uint64_t *tag);

/// adjtimex(2) read-only: whether the kernel says its clock is synchronized (the call did not return
/// TIME_ERROR and STA_UNSYNC is clear), and its maximum and estimated error in microseconds.
/// Returns 0, or -1 with errno set.
int edgelog_clock_sync(int *synchronized, long *maxerror_us, long *esterror_us);

/// I2C (linux/i2c-dev.h): ioctl(fd, I2C_FUNCS) into *funcs; ioctl(fd, I2C_SLAVE, address).
int edgelog_i2c_funcs(int fd, unsigned long *funcs);
int edgelog_i2c_set_address(int fd, unsigned address);
/// The adapter's functionality bits edgelog checks at open.
unsigned long edgelog_i2c_func_smbus_byte_data(void);
unsigned long edgelog_i2c_func_smbus_word_data(void);
unsigned long edgelog_i2c_func_smbus_i2c_block(void);
unsigned long edgelog_i2c_func_i2c(void);
/// One I2C_RDWR: write `wlen` bytes (if any), then read `rlen` (if any) after a repeated start.
int edgelog_i2c_rdwr(int fd, unsigned address, const uint8_t *wbuf, uint16_t wlen, uint8_t *rbuf, uint16_t rlen);

/// spidev (linux/spi/spidev.h): mode, bits per word and maximum speed at open; one full-duplex
/// SPI_IOC_MESSAGE(1) transfer of `len` bytes with chip select held throughout.
int edgelog_spi_configure(int fd, uint8_t mode, uint8_t bits, uint32_t speed_hz);
int edgelog_spi_transfer(int fd, const uint8_t *tx, uint8_t *rx, uint32_t len, uint32_t speed_hz, uint8_t bits);

/// termios: raw 8N1-style line at `baud` with the given data bits (5-8), parity (0 none, 1 even,
/// 2 odd) and stop bits (1-2); VMIN=0/VTIME=0 (reads are bounded by poll). -1 with errno EINVAL for
/// a baud rate the kernel's table lacks.
int edgelog_serial_configure(int fd, int baud, int data_bits, int parity, int stop_bits);
/// ioctl(fd, TIOCEXCL): no further open of the tty (root ignores it; flock covers that case).
int edgelog_serial_exclusive(int fd);
/// flock(fd, LOCK_EX | LOCK_NB) (Swift sees only the struct of the same name).
int edgelog_flock_exclusive(int fd);
/// tcflush(fd, TCIFLUSH).
int edgelog_serial_flush_input(int fd);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK) (a GNU extension Swift's Glibc hides).
int edgelog_accept_cloexec(int fd);
/// pipe2(fds, O_CLOEXEC | O_NONBLOCK).
int edgelog_pipe_cloexec(int fds[2]);

/// A pseudo-terminal for tests (the far end of a serial line): returns the master descriptor and
/// writes the slave's path into `name`, or -1 with errno set.
int edgelog_open_pty(char *name, int size);

/// Input events (/dev/input/eventN): EVIOCSCLOCKID to CLOCK_MONOTONIC, so event times compare
/// with the writer's clock.
int edgelog_evdev_monotonic(int fd);
/// Reads one struct input_event (its layout differs between 32- and 64-bit ABIs: the C side knows
/// it). Returns 1 when an event was read, 0 on a short read, -1 with errno set.
int edgelog_evdev_read(int fd, int64_t *sec, int64_t *usec, uint16_t *type, uint16_t *code, int32_t *value);

/// sched_setaffinity for one thread (`tid`, 0: the caller) onto the CPUs in `cpus` (`count` of
/// them, at least one, each below CPU_SETSIZE). 0, or -1 with errno set.
int edgelog_bind_thread(int tid, const int *cpus, int count);
/// The CPUs the calling thread may run on (sched_getaffinity), at most `max` of them, lowest
/// first: their count, or -1 with errno set.
int edgelog_allowed_cpus(int *cpus, int max);

#endif
