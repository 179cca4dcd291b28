// The CPU's spin-wait hint, which Swift cannot reach: PAUSE on x86-64, YIELD on ARM. A thread that
// polls for another (the staging thread and the writer, DESIGN.md 13) issues it in every turn of
// its loop, so that the poll leaves the core's shared resources to a sibling hardware thread (a
// hypervisor's vCPUs may be two threads of one core) and does not flood the memory pipeline with
// speculative loads. On the bench's VM it moved store_vs_raw under (a) from 0.94 to 0.98 on
// average over ten alternated runs each (noisy: DESIGN.md 13).
#ifndef EDGELOG_CSPINHINT_H
#define EDGELOG_CSPINHINT_H

#if defined(__linux__)
#include <sys/prctl.h>
#endif

// How late the calling thread's timers may fire (prctl PR_SET_TIMERSLACK, 50 µs by default): the
// staging thread naps 20 µs at a time between jobs. prctl is variadic, which Swift cannot call.
static inline int edgelog_timer_slack(unsigned long ns) {
#if defined(__linux__)
    return prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
#else
    return -1;
#endif
}

static inline void edgelog_spin_hint(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

#endif
