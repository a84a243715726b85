/* minidl's thread pool: parallel loops whose caller never waits for a thread that has not
 * started.
 *
 * Why not OpenMP: an OpenMP parallel region ends in a barrier that waits for every thread of
 * the team. On a busy machine (one of 2 cores taken by another process) a worker is often
 * descheduled, and every region then waits a scheduler time slice for it: a LeNet step went
 * from 1.8 ms to 6-80 ms. Here a job is (function, arguments, items) cut into chunks that
 * threads *claim* from a shared counter; the calling thread claims chunks too and waits only
 * for chunks that someone has claimed and not finished. A worker that wakes late finds nothing
 * left and goes back to waiting; the caller has already returned.
 *
 * Determinism: a chunk is a fixed range of items and a task writes each item's results the
 * same way whoever runs it, so results never depend on who ran what (the kernels keep their
 * reductions in fixed chunks combined in a fixed order, see KERNELS.md).
 *
 * The claim word. One 64-bit atomic holds the job's sequence number, its chunk count, its
 * thread limit and the next unclaimed chunk:
 *     bits 0-11 next chunk | 12-23 chunks | 24-33 thread limit | 34-63 sequence number
 * A thread claims chunk `next` by a compare-and-swap of the whole word to next + 1, and reads
 * the job's function and arguments only after a successful claim. A successful claim proves the
 * job is still running (its claimed chunk is not done), so the caller, which rewrites the job
 * only after all chunks are done, cannot have moved on: a late thread never runs a chunk of
 * the wrong job, and needs no lock. The acquire CAS reads the caller's release store (or a
 * later claim in its release sequence), so the job's fields are visible to it.
 *
 * Waiting. A worker spins for the next job for MDL_TP_SPIN_NS (a training step's kernels
 * follow each other within microseconds; waking a sleeping vCPU costs ~50-100 us), then
 * sleeps on a futex (a condition variable where there is none). The caller spins briefly for
 * claimed chunks, then sleeps until the last one is done.
 *
 * Contention. A spinning worker that finds it lost the CPU for MDL_TP_GAP_NS, or a caller
 * that waits for a claimed chunk far longer than its own chunks took, is a sign that another
 * process wants these cores; signs whose lost time adds up to a fifth of a
 * MDL_TP_WINDOW_NS window confirm it (a VM's vCPU preempted now and then loses far less, see
 * mdl_tp_contended): the pool then runs jobs on one thread fewer (down to the caller alone)
 * for a period that doubles while contention persists (MDL_TP_CAP_MIN_NS ..
 * MDL_TP_CAP_MAX_NS) and starts again from the shortest once it has been gone for a second.
 * While capped, one job per MDL_TP_PROBE_NS runs at full width: if a worker takes part and the
 * caller does not stall, the competitor has gone and the cap is lifted at once. (Another
 * process's short bursts, such as an OpenMP runtime spinning ~10 ms after each of its loops,
 * otherwise kept the pool on one thread for most of a second.)
 * On 2 cores beside a busy process minidl thus runs like its 1-thread self instead of waiting
 * for a descheduled worker at every loop.
 *
 * Included by threadpool.pyx only (the pool is one per process); kernels reach it through
 * threadpool.pxd. */
#ifndef MINIDL_THREADPOOL_H
#define MINIDL_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Runs items [begin, end) of a job; `worker` in [0, threads) names the thread (0: the caller)
 * for per-thread scratch buffers. */
typedef void (*mdl_task_fn)(void *args, ptrdiff_t begin, ptrdiff_t end, int worker);

#if !defined(_WIN32) && !defined(MINIDL_NO_THREADS)
#define MDL_TP_HAVE_THREADS 1
#else
#define MDL_TP_HAVE_THREADS 0
#endif

/* Field widths of the claim word. */
#define MDL_TP_MAX_CHUNKS 4095
#define MDL_TP_MAX_THREADS 1023
/* Chunks per thread: enough that a thread which starts late or runs slowly leaves its share
 * to the others, few enough that claiming (one contended atomic each) stays negligible. */
#define MDL_TP_CHUNKS_PER_THREAD 4

#if MDL_TP_HAVE_THREADS

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define MDL_TP_SPIN_NS 2000000
#define MDL_TP_GAP_NS 250000
#define MDL_TP_CALLER_SPIN_NS 50000
#define MDL_TP_CAP_MIN_NS 10000000
#define MDL_TP_CAP_MAX_NS 640000000
#define MDL_TP_FORGIVE_NS 1000000000
#define MDL_TP_PROBE_NS 100000000
#define MDL_TP_WINDOW_NS 100000000

#define MDL_W_NEXT(w) ((int)((w) & 0xfff))
#define MDL_W_CHUNKS(w) ((int)(((w) >> 12) & 0xfff))
#define MDL_W_LIMIT(w) ((int)(((w) >> 24) & 0x3ff))
#define MDL_W_SEQ(w) ((uint32_t)((w) >> 34))
#define MDL_W_MAKE(seq, chunks, limit)                                                        \
    (((uint64_t)(seq) << 34) | ((uint64_t)(limit) << 24) | ((uint64_t)(chunks) << 12))

typedef struct {
    _Alignas(64) atomic_uint wake; /* futex word: bumped to wake this worker */
    atomic_int sleeping;
    int index; /* 1 .. MDL_TP_MAX_THREADS - 1 */
    uint32_t start_seq;
} mdl_worker;

static struct {
    pthread_mutex_t submit; /* one job at a time; other callers run theirs inline */
    _Alignas(64) _Atomic uint64_t word;
    _Alignas(64) atomic_uint done; /* chunks finished (futex word of the waiting caller) */
    atomic_int caller_sleeping;
    /* The job, written by the caller before it publishes the word (see the claim word). */
    _Alignas(64) mdl_task_fn fn;
    void *args;
    ptrdiff_t n_items;
    int n_chunks;
    uint32_t seq;
    int n_workers; /* started; guarded by submit */
    mdl_worker *workers[MDL_TP_MAX_THREADS];
    /* Contention state (heuristics: racing updates change speed only, never results). */
    _Atomic int64_t capped_until;
    _Atomic int64_t probe_at; /* while capped: when the next full-width probe job may run */
    _Atomic int64_t window_start; /* the current MDL_TP_WINDOW_NS window of lost time */
    _Atomic int64_t window_lost;  /* ns lost in it, by the signs seen */
    atomic_int cap;
    atomic_int strikes;
    /* Counters for minidl.threads.pool_stats(). */
    _Atomic int64_t caps;    /* signs confirmed: the pool was capped */
    _Atomic int64_t lone;    /* signs that did not confirm contention: ignored */
    _Atomic int64_t probes;  /* full-width jobs run while capped */
    _Atomic int64_t lifted;  /* probes that found the competitor gone and lifted the cap */
    /* MINIDL_POOL_TEST_DELAY_US: tests make workers sleep before and inside every claim. */
    int test_delay_us;
} mdl_tp = {.submit = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int mdl_tp_in_task;

static inline int64_t mdl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void mdl_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleep while *addr == expected (or return at once if it differs). */
static void mdl_futex_wait(atomic_uint *addr, unsigned expected);
/* Wake the threads sleeping on addr. */
static void mdl_futex_wake(atomic_uint *addr);

#if defined(__linux__)
static void mdl_futex_wait(atomic_uint *addr, unsigned expected) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void mdl_futex_wake(atomic_uint *addr) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
}
#else
/* One mutex and condition variable for every waiter: rare and simple beats fast here. */
static pthread_mutex_t mdl_futex_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mdl_futex_cond = PTHREAD_COND_INITIALIZER;
static void mdl_futex_wait(atomic_uint *addr, unsigned expected) {
    pthread_mutex_lock(&mdl_futex_lock);
    while (atomic_load(addr) == expected) pthread_cond_wait(&mdl_futex_cond, &mdl_futex_lock);
    pthread_mutex_unlock(&mdl_futex_lock);
}
static void mdl_futex_wake(atomic_uint *addr) {
    (void)addr;
    pthread_mutex_lock(&mdl_futex_lock);
    pthread_cond_broadcast(&mdl_futex_cond);
    pthread_mutex_unlock(&mdl_futex_lock);
}
#endif

/* Threads a job of `limit` may use now: one fewer than the last contended job, until the cap
 * period ends. */
static inline int mdl_tp_capped(int limit, int64_t now) {
    if (now < atomic_load_explicit(&mdl_tp.capped_until, memory_order_relaxed)) {
        int cap = atomic_load_explicit(&mdl_tp.cap, memory_order_relaxed);
        return cap < limit ? cap : limit;
    }
    return limit;
}

/* A sign that another thread competes for the cores: a spinning worker lost its CPU, or the
 * caller waited far too long for a claimed chunk, for `lost` ns. On a VM a vCPU is preempted
 * by the host now and then, and a kernel thread or a low-priority process takes a core for a
 * moment: on an idle 2-vCPU VM (2026-12-02, Zen 4) that was a sign every ~100-300 ms, 0.5-2%
 * of the time lost and at most ~12 ms within 50 ms, and counting signs (two within 50 ms
 * capped the pool) capped it 3-5 times a second, halving 2-thread speed. A competitor that
 * lasts (one CPU-bound process beside a 2-thread job) took a third of each spinning worker's
 * time, a sign every ~12 ms. So the pool is capped when the signs of one MDL_TP_WINDOW_NS
 * window add up to a fifth of it, or to a twentieth within MDL_TP_FORGIVE_NS of the end of a
 * cap (the competitor was confirmed and a probe or the period's end let the pool try full
 * width again): jobs of `limit` threads then run on one fewer for a while (counted once per
 * cap period; the period doubles while strikes follow each other). */
static void mdl_tp_contended(int limit, int64_t now, int64_t lost) {
    int64_t until = atomic_load(&mdl_tp.capped_until);
    if (now < until) return;
    if (now - atomic_load(&mdl_tp.window_start) > MDL_TP_WINDOW_NS) {
        atomic_store(&mdl_tp.window_start, now);
        atomic_store(&mdl_tp.window_lost, 0);
    }
    int64_t total = atomic_fetch_add(&mdl_tp.window_lost, lost) + lost;
    int recent = until != 0 && now - until <= MDL_TP_FORGIVE_NS;
    if (total < (recent ? MDL_TP_WINDOW_NS / 20 : MDL_TP_WINDOW_NS / 5)) {
        atomic_fetch_add(&mdl_tp.lone, 1);
        return;
    }
    atomic_store(&mdl_tp.window_lost, 0);
    int strikes = atomic_load(&mdl_tp.strikes);
    if (!recent) strikes = 0;
    int64_t period = MDL_TP_CAP_MIN_NS;
    for (int i = 0; i < strikes && period < MDL_TP_CAP_MAX_NS; i++) period *= 2;
    atomic_store(&mdl_tp.cap, limit > 1 ? limit - 1 : 1);
    atomic_store(&mdl_tp.strikes, strikes + 1);
    atomic_store(&mdl_tp.capped_until, now + period);
    atomic_store(&mdl_tp.probe_at, now + MDL_TP_PROBE_NS);
    atomic_fetch_add(&mdl_tp.caps, 1);
}

/* Whether a job capped below `wanted` threads should run at full width as a probe (at most
 * one per MDL_TP_PROBE_NS; the compare-and-swap lets one caller take each turn). */
static int mdl_tp_take_probe(int64_t now) {
    int64_t at = atomic_load(&mdl_tp.probe_at);
    if (now < at || !atomic_compare_exchange_strong(&mdl_tp.probe_at, &at, now + MDL_TP_PROBE_NS))
        return 0;
    atomic_fetch_add(&mdl_tp.probes, 1);
    return 1;
}

/* A probe job had a worker's help and no stall: the competitor is gone (the cap ends now). */
static void mdl_tp_uncap(int64_t now) {
    atomic_store(&mdl_tp.capped_until, now);
    atomic_store(&mdl_tp.strikes, 0);
    atomic_fetch_add(&mdl_tp.lifted, 1);
}

/* Claim the next chunk of the current job for thread `worker`; -1 when none is left to it. */
static inline int mdl_tp_claim(int worker) {
    uint64_t w = atomic_load_explicit(&mdl_tp.word, memory_order_acquire);
    for (;;) {
        if (MDL_W_NEXT(w) >= MDL_W_CHUNKS(w) || worker >= MDL_W_LIMIT(w)) return -1;
        if (atomic_compare_exchange_weak_explicit(&mdl_tp.word, &w, w + 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return MDL_W_NEXT(w);
    }
}

/* Run chunk `chunk` of the current job (claimed by this thread). */
static inline void mdl_tp_run_chunk(int chunk, int worker) {
    ptrdiff_t n = mdl_tp.n_items, k = mdl_tp.n_chunks;
    ptrdiff_t base = n / k, rest = n % k;
    ptrdiff_t begin = chunk * base + (chunk < rest ? chunk : rest);
    ptrdiff_t end = begin + base + (chunk < rest ? 1 : 0);
    mdl_tp.fn(mdl_tp.args, begin, end, worker);
}

/* A worker's share of the current job: claim and run until nothing is left to it, then count
 * its chunks done in one atomic add (one per chunk cost ~0.1 us each in cache-line transfers
 * to the caller, which only waits for the total). */
static void mdl_tp_work(int worker) {
    int chunk, chunks = 0, mine = 0;
    if (mdl_tp.test_delay_us) usleep((useconds_t)mdl_tp.test_delay_us);
    while ((chunk = mdl_tp_claim(worker)) >= 0) {
        /* Read after a claim: the job cannot change while a chunk of it is claimed. */
        chunks = mdl_tp.n_chunks;
        if (mdl_tp.test_delay_us) usleep((useconds_t)mdl_tp.test_delay_us);
        mdl_tp_run_chunk(chunk, worker);
        mine++;
    }
    if (mine && (int)atomic_fetch_add(&mdl_tp.done, (unsigned)mine) + mine == chunks &&
        atomic_load(&mdl_tp.caller_sleeping))
        mdl_futex_wake(&mdl_tp.done);
}

/* Spin for a job newer than `seen`, then sleep until the caller wakes this worker. */
static void mdl_tp_wait_job(mdl_worker *self, uint32_t seen) {
    int64_t start = mdl_now_ns(), prev = start;
    for (;;) {
        uint64_t w = atomic_load_explicit(&mdl_tp.word, memory_order_acquire);
        if (MDL_W_SEQ(w) != seen) return;
        for (int i = 0; i < 16; i++) mdl_cpu_relax();
        int64_t t = mdl_now_ns();
        if (t - prev > MDL_TP_GAP_NS) {
            /* Descheduled while it had nothing to do but spin: someone else wants the CPU. */
            mdl_tp_contended(MDL_W_LIMIT(w), t, t - prev);
            break;
        }
        if (t - start > MDL_TP_SPIN_NS || mdl_tp_capped(2, t) < 2) break;
        prev = t;
    }
    atomic_store(&self->sleeping, 1);
    for (;;) {
        unsigned wake = atomic_load(&self->wake);
        if (MDL_W_SEQ(atomic_load(&mdl_tp.word)) != seen) break;
        mdl_futex_wait(&self->wake, wake);
    }
    atomic_store(&self->sleeping, 0);
}

static void *mdl_tp_worker_main(void *arg) {
    mdl_worker *self = (mdl_worker *)arg;
    uint32_t seen = self->start_seq;
    mdl_tp_in_task = 1; /* a kernel called from a task runs its loops inline */
    for (;;) {
        mdl_tp_wait_job(self, seen);
        seen = MDL_W_SEQ(atomic_load_explicit(&mdl_tp.word, memory_order_acquire));
        mdl_tp_work(self->index);
    }
    return NULL;
}

/* In a child after fork() the workers do not exist: start afresh (locks may be held by
 * threads that are gone; the old worker records are dropped). */
static void mdl_tp_after_fork_child(void) {
    pthread_mutex_init(&mdl_tp.submit, NULL);
    mdl_tp.n_workers = 0;
    atomic_store(&mdl_tp.caller_sleeping, 0);
}

/* Start workers until `wanted` exist (called under submit); returns how many exist. */
static int mdl_tp_grow(int wanted) {
    static int registered;
    if (!registered) {
        const char *delay = getenv("MINIDL_POOL_TEST_DELAY_US");
        mdl_tp.test_delay_us = delay ? atoi(delay) : 0;
        pthread_atfork(NULL, NULL, mdl_tp_after_fork_child);
        registered = 1;
    }
    while (mdl_tp.n_workers < wanted) {
        mdl_worker *w = (mdl_worker *)aligned_alloc(64, sizeof(mdl_worker));
        if (w == NULL) break;
        memset(w, 0, sizeof *w);
        w->index = mdl_tp.n_workers + 1;
        w->start_seq = MDL_W_SEQ(atomic_load(&mdl_tp.word));
        /* Asynchronous signals (SIGINT, ...) go to the interpreter's threads, never to a
         * worker; a fault in a worker still reaches its handler (faulthandler, ASan). */
        sigset_t all, old;
        sigfillset(&all);
        sigdelset(&all, SIGSEGV);
        sigdelset(&all, SIGBUS);
        sigdelset(&all, SIGFPE);
        sigdelset(&all, SIGILL);
        sigdelset(&all, SIGABRT);
        sigdelset(&all, SIGTRAP);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&thread, &attr, mdl_tp_worker_main, w);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err != 0) {
            free(w);
            break;
        }
        mdl_tp.workers[mdl_tp.n_workers++] = w;
    }
    return mdl_tp.n_workers;
}

/* Threads a job asking for n_threads would get now (contention cap applied). */
static int mdl_tp_threads(int n_threads) {
    if (n_threads > MDL_TP_MAX_THREADS) n_threads = MDL_TP_MAX_THREADS;
    if (n_threads <= 1 || mdl_tp_in_task) return 1;
    return mdl_tp_capped(n_threads, mdl_now_ns());
}

/* fn(args, begin, end, worker) over [0, n_items) on up to n_threads threads. Inline on the
 * calling thread when one thread is asked for or allowed, from inside a task, or while another
 * thread's job holds the pool. */
static void mdl_tp_for(mdl_task_fn fn, void *args, ptrdiff_t n_items, int n_threads) {
    if (n_items <= 0) return;
    int limit = mdl_tp_threads(n_threads), probe = 0;
    if (limit < n_threads && limit >= 1 && !mdl_tp_in_task && n_threads > 1) {
        int64_t now = mdl_now_ns();
        if (mdl_tp_capped(n_threads, now) < n_threads && mdl_tp_take_probe(now)) {
            limit = n_threads > MDL_TP_MAX_THREADS ? MDL_TP_MAX_THREADS : n_threads;
            probe = 1;
        }
    }
    if (limit > n_items) limit = (int)n_items;
    if (limit <= 1 || pthread_mutex_trylock(&mdl_tp.submit) != 0) {
        fn(args, 0, n_items, 0);
        return;
    }
    int workers = mdl_tp_grow(limit - 1);
    if (limit > workers + 1) limit = workers + 1;
    ptrdiff_t chunks = (ptrdiff_t)limit * MDL_TP_CHUNKS_PER_THREAD;
    if (chunks > n_items) chunks = n_items;
    if (chunks > MDL_TP_MAX_CHUNKS) chunks = MDL_TP_MAX_CHUNKS;
    if (limit <= 1) {
        pthread_mutex_unlock(&mdl_tp.submit);
        fn(args, 0, n_items, 0);
        return;
    }
    int64_t start = mdl_now_ns();
    mdl_tp.fn = fn;
    mdl_tp.args = args;
    mdl_tp.n_items = n_items;
    mdl_tp.n_chunks = (int)chunks;
    mdl_tp.seq++;
    atomic_store_explicit(&mdl_tp.done, 0, memory_order_relaxed);
    /* seq_cst: ordered against each worker's `sleeping` flag (a sleeping worker is woken, an
     * awake one sees the new word). */
    atomic_store(&mdl_tp.word, MDL_W_MAKE(mdl_tp.seq, chunks, limit));
    for (int i = 0; i < limit - 1; i++) {
        mdl_worker *w = mdl_tp.workers[i];
        if (atomic_load(&w->sleeping)) {
            atomic_fetch_add(&w->wake, 1);
            mdl_futex_wake(&w->wake);
        }
    }
    int chunk, mine = 0;
    mdl_tp_in_task = 1;
    while ((chunk = mdl_tp_claim(0)) >= 0) {
        mdl_tp_run_chunk(chunk, 0);
        mine++;
    }
    mdl_tp_in_task = 0;
    unsigned done = atomic_fetch_add(&mdl_tp.done, (unsigned)mine) + (unsigned)mine;
    if (done < (unsigned)chunks) {
        /* Chunks claimed by workers are running: wait for them (and only them). */
        int64_t waited_from = mdl_now_ns();
        int64_t stall = MDL_TP_GAP_NS + 2 * (waited_from - start);
        while ((done = atomic_load(&mdl_tp.done)) < (unsigned)chunks) {
            mdl_cpu_relax();
            if (mdl_now_ns() - waited_from > MDL_TP_CALLER_SPIN_NS) {
                atomic_store(&mdl_tp.caller_sleeping, 1);
                while ((done = atomic_load(&mdl_tp.done)) < (unsigned)chunks)
                    mdl_futex_wait(&mdl_tp.done, done);
                atomic_store(&mdl_tp.caller_sleeping, 0);
                break;
            }
        }
        int64_t t = mdl_now_ns();
        if (t - waited_from > stall) {
            /* The caller's wait counts four times a spinning worker's lost time: the job
             * itself lost it. */
            mdl_tp_contended(limit, t, 4 * (t - waited_from));
            probe = 0;
        }
    }
    /* mine < chunks: a worker ran some of the probe's chunks. */
    if (probe && mine < (int)chunks) mdl_tp_uncap(mdl_now_ns());
    pthread_mutex_unlock(&mdl_tp.submit);
}

/* The contention detector's counters, for minidl.threads.pool_stats(). */
typedef struct {
    int64_t caps, lone, probes, lifted;
} mdl_tp_stats;
static mdl_tp_stats mdl_tp_get_stats(void) {
    mdl_tp_stats out = {atomic_load(&mdl_tp.caps), atomic_load(&mdl_tp.lone),
                        atomic_load(&mdl_tp.probes), atomic_load(&mdl_tp.lifted)};
    return out;
}
static int mdl_tp_workers(void) { return mdl_tp.n_workers; }
/* Tests: one sign of contention, as a job of `limit` threads whose caller waited `lost_ns`
 * for a descheduled worker gives. */
static void mdl_tp_test_sign(int limit, int64_t lost_ns) {
    mdl_tp_contended(limit, mdl_now_ns(), lost_ns);
}

#else /* no threads: every job runs on the caller */

static int mdl_tp_threads(int n_threads) { (void)n_threads; return 1; }
static void mdl_tp_for(mdl_task_fn fn, void *args, ptrdiff_t n_items, int n_threads) {
    (void)n_threads;
    if (n_items > 0) fn(args, 0, n_items, 0);
}
typedef struct {
    int64_t caps, lone, probes, lifted;
} mdl_tp_stats;
static mdl_tp_stats mdl_tp_get_stats(void) {
    mdl_tp_stats out = {0, 0, 0, 0};
    return out;
}
static int mdl_tp_workers(void) { return 0; }
static void mdl_tp_test_sign(int limit, int64_t lost_ns) {
    (void)limit;
    (void)lost_ns;
}

#endif

/* Exported (not static): threadpoolctl recognises minidl's pool by this symbol. */
int minidl_threadpool_workers(void) { return mdl_tp_workers(); }

#endif
