/*
 * hil-powerdev: the emulated board's power and LED devices, from the guest side (scripts/hil/power-board).
 * Built on the host by scripts/hil/provision into .build-hil/bin/hil-powerdev; the guest runs it in its
 * chroot onto the host root, so a dynamic binary of the host works.
 *
 *   hil-powerdev leds --log FILE [--ready FILE] [--max N] [--watch NAME=PATH]... [--input NAME]... [--poll-ms N] LED...
 *       Creates one uleds LED per name (/dev/uleds: struct uleds_user_dev {char name[64]; int max_brightness;}),
 *       keeps their descriptors open (closing one removes its LED) and appends one JSON line to FILE per event,
 *       stamped with CLOCK_MONOTONIC (what edgelog's *_mono_ns fields use):
 *         {"mono_ns":N,"kind":"start","pid":P,"leds":K,"watches":W,"inputs":I}
 *         {"mono_ns":N,"kind":"led","name":"edgelog:green:status","brightness":B}     a brightness change
 *         {"mono_ns":N,"kind":"gpio","name":"LED_POWER","value":V}                   a watched file's first read and each change
 *         {"mono_ns":N,"kind":"key","name":"Power Button","type":1,"code":116,"value":1,"event_ns":E}  an EV_KEY event
 *         {"mono_ns":N,"kind":"stop","signal":15}
 *       uleds reports the latest brightness only (a change and its undo between two reads are lost; the
 *       kernel keeps one value and a flag); watched files are read every --poll-ms (default 10) ms.
 *       Input devices are the /dev/input/event* whose EVIOCGNAME equals NAME; their events are stamped
 *       by the kernel with CLOCK_MONOTONIC (EVIOCSCLOCKID), in event_ns. The device is not grabbed.
 *       Writes --ready (the string "ready\n") once every LED exists. Runs until SIGTERM or SIGINT.
 *   hil-powerdev write PATH VALUE
 *       Writes VALUE to PATH (a sysfs attribute) and prints "BEFORE_NS AFTER_NS" (CLOCK_MONOTONIC around the write).
 *   hil-powerdev drive CHIPDEV OFFSET VALUE MS
 *       Requests line OFFSET of /dev/gpiochipN as an output at VALUE (GPIO v2 uAPI, consumer "hil-powerdev"),
 *       holds it MS milliseconds and releases it (the line then falls back to its pull). A stand-in for a
 *       consumer that drives an LED line, for testing the harness itself.
 *   hil-powerdev mono
 *       Prints CLOCK_MONOTONIC in ns.
 * Exit status: 0; 1 on a device or file error (message on stderr); 2 on a usage error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <linux/input.h>
#include <linux/uleds.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITEMS 16

static volatile sig_atomic_t stop_signal;
static int log_fd = -1;

static void on_signal(int sig) { stop_signal = sig; }

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hil-powerdev: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void usage(void) {
  fputs("usage: hil-powerdev leds --log FILE [--ready FILE] [--max N] [--watch NAME=PATH]... [--input NAME]... [--poll-ms N] LED...\n"
        "       hil-powerdev write PATH VALUE\n"
        "       hil-powerdev drive CHIPDEV OFFSET VALUE MS\n"
        "       hil-powerdev mono\n", stderr);
  exit(2);
}

/* Names are ours (LED names, line names, input device names): printable ASCII without '"' or '\\'. */
static void json_name(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  for (; *src && n + 1 < cap; src++) dst[n++] = (*src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\') ? *src : '?';
  dst[n] = 0;
}

/* One line per event, written with one write() (O_APPEND), so a reader never sees half a line. */
static void log_line(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  if (write(log_fd, buf, (size_t)n) != n) die("write to the log: %s", strerror(errno));
}

static int read_file(int fd, char *buf, size_t cap) {
  ssize_t n = pread(fd, buf, cap - 1, 0);
  if (n < 0) return -1;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) n--;
  buf[n] = 0;
  return 0;
}

static int cmd_leds(int argc, char **argv) {
  const char *log_path = NULL, *ready_path = NULL;
  int max_brightness = 1, poll_ms = 10;
  const char *led_names[MAX_ITEMS], *watch_names[MAX_ITEMS], *watch_paths[MAX_ITEMS], *input_names[MAX_ITEMS];
  int nleds = 0, nwatch = 0, ninput_names = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--log") && i + 1 < argc) log_path = argv[++i];
    else if (!strcmp(a, "--ready") && i + 1 < argc) ready_path = argv[++i];
    else if (!strcmp(a, "--max") && i + 1 < argc) max_brightness = atoi(argv[++i]);
    else if (!strcmp(a, "--poll-ms") && i + 1 < argc) poll_ms = atoi(argv[++i]);
    else if (!strcmp(a, "--watch") && i + 1 < argc) {
      char *spec = argv[++i], *eq = strchr(spec, '=');
      if (!eq || eq == spec || nwatch >= MAX_ITEMS) usage();
      *eq = 0;
      watch_names[nwatch] = spec;
      watch_paths[nwatch++] = eq + 1;
    } else if (!strcmp(a, "--input") && i + 1 < argc) {
      if (ninput_names >= MAX_ITEMS) usage();
      input_names[ninput_names++] = argv[++i];
    } else if (a[0] == '-') usage();
    else {
      if (nleds >= MAX_ITEMS || strlen(a) >= LED_MAX_NAME_SIZE || !*a) usage();
      led_names[nleds++] = a;
    }
  }
  if (!log_path || max_brightness <= 0 || poll_ms <= 0) usage();
  log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) die("%s: %s", log_path, strerror(errno));

  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  struct pollfd pfd[2 * MAX_ITEMS];
  char led_json[MAX_ITEMS][LED_MAX_NAME_SIZE];
  for (int i = 0; i < nleds; i++) {
    int fd = open("/dev/uleds", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("/dev/uleds: %s (is uleds.ko loaded?)", strerror(errno));
    struct uleds_user_dev dev;
    memset(&dev, 0, sizeof dev);
    strncpy(dev.name, led_names[i], LED_MAX_NAME_SIZE - 1);
    dev.max_brightness = max_brightness;
    if (write(fd, &dev, sizeof dev) != (ssize_t)sizeof dev) die("creating LED %s: %s", led_names[i], strerror(errno));
    pfd[i].fd = fd;
    pfd[i].events = POLLIN;
    json_name(led_json[i], sizeof led_json[i], led_names[i]);
  }

  /* Input devices by name. */
  char input_json[MAX_ITEMS][128];
  int ninputs = 0;
  if (ninput_names) {
    DIR *d = opendir("/dev/input");
    struct dirent *e;
    while (d && (e = readdir(d)) && ninputs < MAX_ITEMS) {
      if (strncmp(e->d_name, "event", 5)) continue;
      char path[300], name[128] = "";
      snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
      int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) continue;
      if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) < 0) { close(fd); continue; }
      int want = 0;
      for (int k = 0; k < ninput_names; k++) want |= !strcmp(name, input_names[k]);
      if (!want) { close(fd); continue; }
      int clk = CLOCK_MONOTONIC;
      if (ioctl(fd, EVIOCSCLOCKID, &clk) < 0) die("%s: EVIOCSCLOCKID: %s", path, strerror(errno));
      pfd[nleds + ninputs].fd = fd;
      pfd[nleds + ninputs].events = POLLIN;
      json_name(input_json[ninputs], sizeof input_json[ninputs], name);
      ninputs++;
    }
    if (d) closedir(d);
    if (ninputs == 0) die("no input device named %s under /dev/input (are button and evdev loaded?)", input_names[0]);
  }

  int watch_fd[MAX_ITEMS];
  char watch_val[MAX_ITEMS][64], watch_json[MAX_ITEMS][64];
  for (int i = 0; i < nwatch; i++) {
    watch_fd[i] = open(watch_paths[i], O_RDONLY | O_CLOEXEC);
    if (watch_fd[i] < 0) die("%s: %s", watch_paths[i], strerror(errno));
    watch_val[i][0] = 1; /* never equal to a read value: the first read is logged */
    watch_val[i][1] = 0;
    json_name(watch_json[i], sizeof watch_json[i], watch_names[i]);
  }

  log_line("{\"mono_ns\":%lld,\"kind\":\"start\",\"pid\":%d,\"leds\":%d,\"watches\":%d,\"inputs\":%d,\"max_brightness\":%d}",
           (long long)mono_ns(), (int)getpid(), nleds, nwatch, ninputs, max_brightness);
  if (ready_path) {
    int fd = open(ready_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) < 0) die("%s: %s", ready_path, strerror(errno));
  }

  int nfds = nleds + ninputs;
  while (!stop_signal) {
    for (int i = 0; i < nwatch; i++) {
      char v[64];
      if (read_file(watch_fd[i], v, sizeof v) < 0) die("%s: %s", watch_paths[i], strerror(errno));
      if (strcmp(v, watch_val[i])) {
        strcpy(watch_val[i], v);
        char *end;
        long n = strtol(v, &end, 10);
        if (*v && !*end) log_line("{\"mono_ns\":%lld,\"kind\":\"gpio\",\"name\":\"%s\",\"value\":%ld}", (long long)mono_ns(), watch_json[i], n);
        else log_line("{\"mono_ns\":%lld,\"kind\":\"gpio\",\"name\":\"%s\",\"text\":\"%s\"}", (long long)mono_ns(), watch_json[i], "?");
      }
    }
    int r = poll(pfd, (nfds_t)nfds, nwatch ? poll_ms : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    int64_t now = mono_ns();
    for (int i = 0; i < nleds; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      int b;
      ssize_t n = read(pfd[i].fd, &b, sizeof b);
      if (n == (ssize_t)sizeof b) log_line("{\"mono_ns\":%lld,\"kind\":\"led\",\"name\":\"%s\",\"brightness\":%d}", (long long)now, led_json[i], b);
      else if (n < 0 && errno != EINTR && errno != EAGAIN) die("reading LED %s: %s", led_names[i], strerror(errno));
    }
    for (int i = 0; i < ninputs; i++) {
      struct pollfd *p = &pfd[nleds + i];
      if (!(p->revents & POLLIN)) continue;
      struct input_event ev[16];
      ssize_t n = read(p->fd, ev, sizeof ev);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        die("reading input %s: %s", input_json[i], strerror(errno));
      }
      for (size_t k = 0; k < (size_t)n / sizeof ev[0]; k++) {
        if (ev[k].type != EV_KEY) continue;
        long long ens = (long long)ev[k].input_event_sec * 1000000000LL + (long long)ev[k].input_event_usec * 1000LL;
        log_line("{\"mono_ns\":%lld,\"kind\":\"key\",\"name\":\"%s\",\"type\":%u,\"code\":%u,\"value\":%d,\"event_ns\":%lld}",
                 (long long)now, input_json[i], ev[k].type, ev[k].code, ev[k].value, ens);
      }
    }
  }
  log_line("{\"mono_ns\":%lld,\"kind\":\"stop\",\"signal\":%d}", (long long)mono_ns(), (int)stop_signal);
  return 0;
}

static int cmd_write(int argc, char **argv) {
  if (argc != 2) usage();
  int fd = open(argv[0], O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("%s: %s", argv[0], strerror(errno));
  size_t len = strlen(argv[1]);
  int64_t before = mono_ns();
  ssize_t n = write(fd, argv[1], len);
  int64_t after = mono_ns();
  if (n != (ssize_t)len) die("writing %s to %s: %s", argv[1], argv[0], n < 0 ? strerror(errno) : "short write");
  close(fd);
  printf("%lld %lld\n", (long long)before, (long long)after);
  return 0;
}

static int cmd_drive(int argc, char **argv) {
  if (argc != 4) usage();
  int chip = open(argv[0], O_RDWR | O_CLOEXEC);
  if (chip < 0) die("%s: %s", argv[0], strerror(errno));
  struct gpio_v2_line_request req;
  memset(&req, 0, sizeof req);
  req.offsets[0] = (unsigned)atoi(argv[1]);
  req.num_lines = 1;
  strncpy(req.consumer, "hil-powerdev", sizeof req.consumer - 1);
  req.config.flags = GPIO_V2_LINE_FLAG_OUTPUT;
  req.config.num_attrs = 1;
  req.config.attrs[0].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
  req.config.attrs[0].attr.values = atoi(argv[2]) ? 1 : 0;
  req.config.attrs[0].mask = 1;
  if (ioctl(chip, GPIO_V2_GET_LINE_IOCTL, &req) < 0) die("%s line %s: GPIO_V2_GET_LINE_IOCTL: %s", argv[0], argv[1], strerror(errno));
  printf("%lld\n", (long long)mono_ns());
  fflush(stdout);
  struct timespec ts = {atoi(argv[3]) / 1000, (long)(atoi(argv[3]) % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
  close(req.fd);
  close(chip);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "leds")) return cmd_leds(argc - 2, argv + 2);
  if (!strcmp(argv[1], "write")) return cmd_write(argc - 2, argv + 2);
  if (!strcmp(argv[1], "drive")) return cmd_drive(argc - 2, argv + 2);
  if (!strcmp(argv[1], "mono") && argc == 2) {
    printf("%lld\n", (long long)mono_ns());
    return 0;
  }
  usage();
  return 2;
}
