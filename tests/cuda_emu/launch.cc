// Kernel launches in the host emulator (cuda_emu_device.h): the grid's blocks run one after
// another on the calling thread, and the threads of a block are fibers.
//
// A fiber takes the next thread of the block that has not started and runs it; when the thread
// returns, the same fiber takes the next one, on the same stack, so threads that meet no barrier
// cost one call each. A thread that reaches __syncthreads (or a warp shuffle) waits there: its
// fiber is suspended and another fiber starts the next thread, or resumes one the barrier has
// released. A barrier releases its threads when every thread of the block has arrived (a shuffle:
// every lane of the warp). When nothing can run and threads still wait, the barrier was divergent
// (some threads exited, or wait at another barrier): a kernel bug, reported with the kernel, the
// block and the barriers' places, and the process aborts, as a GPU would hang or fault.
//
// Fibers switch with a few instructions (x86-64 System V: the callee-saved registers, the stack
// pointer and the floating-point control words), not ucontext's signal-mask system calls. Stacks
// are mapped once per host thread and reused, with a guard page below each.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vector>

#include "cuda_emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

__thread uint3 cuda_emu_thread_idx, cuda_emu_block_idx;
__thread dim3 cuda_emu_block_dim, cuda_emu_grid_dim;

// ---- the context switch ----

extern "C" void cuda_emu_switch(void **save_sp, void *load_sp);
extern "C" void cuda_emu_fiber_start(void);
extern "C" void cuda_emu_fiber_main(void);

asm(R"(
    .text
    .globl cuda_emu_switch
    .hidden cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch

    .globl cuda_emu_fiber_start
    .hidden cuda_emu_fiber_start
    .type cuda_emu_fiber_start, @function
cuda_emu_fiber_start:
    call cuda_emu_fiber_main
    ud2
    .size cuda_emu_fiber_start, .-cuda_emu_fiber_start
)");

// ---- state: one launch at a time per host thread ----

namespace {

const size_t STACK_BYTES = (size_t)256 << 10;
const size_t GUARD_BYTES = 4096;

struct fiber {
    void *sp;
    char *stack; // lowest usable address
    int thread;  // the thread it runs, -1 when idle
    void *fake_stack;
};

enum thread_state : unsigned char { UNSTARTED, RUNNING, AT_BARRIER, AT_SHUFFLE, EXITED };

struct place {
    const char *file;
    int line;
};

struct warp_state {
    int arrived;
    unsigned generation;
    uint64_t values[2][32]; // by generation parity: a lane can be at most one shuffle ahead
};

struct launch_state {
    const cuda_emu_site *site;
    dim3 grid, block;
    void (*run)(void *);
    void *ctx;
    int n_threads, next, exited;
    bool reverse; // PETAL_CUDA_EMU_ORDER=reverse: threads start last first
    std::vector<thread_state> state;
    std::vector<place> waits_at; // where a waiting thread waits
    std::vector<fiber *> fiber_of;
    int barrier_arrived;
    place barrier_place;
    std::vector<warp_state> warps;
    std::vector<int> ready; // fibers to resume, in release order
    size_t ready_head;
    int current; // the running thread
};

__thread launch_state *L;
__thread std::vector<fiber *> *fibers; // every fiber of this host thread
__thread std::vector<fiber *> *idle;
__thread fiber *running;
__thread void *scheduler_sp;
#if EMU_ASAN
__thread const void *scheduler_stack; // the launching thread's stack, for AddressSanitizer
__thread size_t scheduler_stack_size;
__thread void *scheduler_fake_stack;
#endif

} // namespace

// ---- switching, with AddressSanitizer told which stack is live ----

static void enter_fiber(fiber *f) {
    running = f;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, f->stack, STACK_BYTES);
#endif
    cuda_emu_switch(&scheduler_sp, f->sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, NULL, NULL);
#endif
    running = NULL;
}

static void arrived_in_fiber(fiber *f) {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &scheduler_stack, &scheduler_stack_size);
#else
    (void)f;
#endif
}

static void leave_fiber(fiber *f) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, scheduler_stack, scheduler_stack_size);
#endif
    cuda_emu_switch(&f->sp, scheduler_sp);
    arrived_in_fiber(f);
}

static fiber *fiber_new(void) {
    char *map = (char *)mmap(NULL, STACK_BYTES + GUARD_BYTES, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "cuda_emu: cannot map a %zu-byte thread stack\n", STACK_BYTES);
        abort();
    }
    mprotect(map, GUARD_BYTES, PROT_NONE); // a stack overflow faults instead of corrupting
    fiber *f = new fiber{NULL, map + GUARD_BYTES, -1, NULL};
    // The frame cuda_emu_switch pops: control words, six registers, then the entry point, placed
    // so that the entry's call finds the stack 16-byte aligned.
    uint64_t *sp = (uint64_t *)(f->stack + STACK_BYTES - 16 - 64);
    unsigned int mxcsr = __builtin_ia32_stmxcsr();
    unsigned short fpucw;
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    memcpy(sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fpucw, 2);
    for (int i = 1; i <= 6; i++) sp[i] = 0;
    sp[7] = (uint64_t)(uintptr_t)cuda_emu_fiber_start;
    f->sp = sp;
    fibers->push_back(f);
    return f;
}

// ---- reporting ----

// The kernel's name: the launch's first argument as written.
static void kernel_name(const cuda_emu_site *site, char *out, size_t cap) {
    const char *s = site->spelling;
    int depth = 0;
    size_t n = 0;
    for (; s[n] && (depth > 0 || s[n] != ','); n++)
        depth += (s[n] == '<' || s[n] == '(') - (s[n] == '>' || s[n] == ')');
    snprintf(out, cap, "%.*s", (int)n, s);
}

static void thread_coords(int t, char *out, size_t cap) {
    dim3 b = L->block;
    snprintf(out, cap, "(%d, %d, %d)", (int)(t % b.x), (int)(t / b.x % b.y),
             (int)(t / (b.x * b.y)));
}

[[noreturn]] __attribute__((format(printf, 1, 2))) static void kernel_fault(const char *fmt, ...) {
    char name[256], detail[1024];
    kernel_name(L->site, name, sizeof name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    dim3 b = cuda_emu_block_idx;
    if (L->n_threads == 0) // before the launch ran anything
        fprintf(stderr, "cuda_emu: kernel %s launched at %s:%d: %s\n", name, L->site->file,
                L->site->line, detail);
    else
        fprintf(stderr,
                "cuda_emu: kernel %s launched at %s:%d, block (%u, %u, %u) of (%u, %u, %u), %u x "
                "%u x %u threads: %s\n",
                name, L->site->file, L->site->line, b.x, b.y, b.z, L->grid.x, L->grid.y, L->grid.z,
                L->block.x, L->block.y, L->block.z, detail);
    fflush(stderr);
    abort();
}

// Nothing can run, yet threads wait: say who waits where, and who has gone or waits elsewhere.
[[noreturn]] static void report_deadlock(void) {
    int waiting = -1, other = -1;
    for (int t = 0; t < L->n_threads; t++) {
        thread_state s = L->state[t];
        if (s == AT_BARRIER || s == AT_SHUFFLE) {
            if (waiting < 0)
                waiting = t;
            else if (other < 0 &&
                     (s != L->state[waiting] || L->waits_at[t].line != L->waits_at[waiting].line ||
                      strcmp(L->waits_at[t].file, L->waits_at[waiting].file) != 0))
                other = t;
        }
    }
    // The first thread gone; for a shuffle, the first lane of the waiting warp that is gone.
    int gone = -1, from = 0, to = L->n_threads;
    if (L->state[waiting] == AT_SHUFFLE) {
        from = waiting / 32 * 32;
        to = from + 32;
    }
    for (int t = from; t < to && gone < 0; t++)
        if (L->state[t] == EXITED) gone = t;
    char w[48], o[48], g[48];
    thread_coords(waiting, w, sizeof w);
    const char *what = L->state[waiting] == AT_BARRIER ? "__syncthreads" : "a warp shuffle";
    if (other >= 0) {
        thread_coords(other, o, sizeof o);
        kernel_fault("divergent barrier: thread %s waits at %s at %s:%d, thread %s at %s at %s:%d",
                     w, what, L->waits_at[waiting].file, L->waits_at[waiting].line, o,
                     L->state[other] == AT_BARRIER ? "__syncthreads" : "a warp shuffle",
                     L->waits_at[other].file, L->waits_at[other].line);
    }
    thread_coords(gone, g, sizeof g);
    if (L->state[waiting] == AT_SHUFFLE)
        kernel_fault("divergent shuffle: thread %s waits at a warp shuffle at %s:%d, which lane "
                     "%s of its warp exited without reaching",
                     w, L->waits_at[waiting].file, L->waits_at[waiting].line, g);
    kernel_fault("divergent barrier: thread %s waits at __syncthreads at %s:%d, which thread %s "
                 "(and %d others) exited without reaching",
                 w, L->waits_at[waiting].file, L->waits_at[waiting].line, g, L->exited - 1);
}

// ---- threads ----

static void set_thread(int t) {
    dim3 b = L->block;
    L->current = t;
    cuda_emu_thread_idx = uint3{t % b.x, t / b.x % b.y, t / (b.x * b.y)};
}

extern "C" void cuda_emu_fiber_main(void) {
    fiber *f = running;
    arrived_in_fiber(f);
    for (;;) {
        while (L->next < L->n_threads) {
            int k = L->next++, t = L->reverse ? L->n_threads - 1 - k : k;
            f->thread = t;
            L->fiber_of[t] = f;
            L->state[t] = RUNNING;
            set_thread(t);
            L->run(L->ctx);
            L->state[t] = EXITED;
            L->exited++;
        }
        f->thread = -1;
        idle->push_back(f);
        leave_fiber(f); // idle until the next block needs it
        f = running;
    }
}

// Suspends the running thread until released.
static void wait_here(void) {
    fiber *f = running;
    int t = L->current;
    leave_fiber(f);
    set_thread(t);
}

static void release(int t) {
    L->state[t] = RUNNING;
    L->ready.push_back(t);
}

void cuda_emu_syncthreads(const char *file, int line) {
    if (!L) {
        fprintf(stderr, "cuda_emu: __syncthreads at %s:%d called outside a kernel\n", file, line);
        abort();
    }
    int t = L->current;
    if (L->barrier_arrived > 0 &&
        (L->barrier_place.line != line || strcmp(L->barrier_place.file, file) != 0)) {
        char a[48], b[48];
        thread_coords(t, a, sizeof a);
        int first = -1;
        for (int u = 0; u < L->n_threads && first < 0; u++)
            if (L->state[u] == AT_BARRIER) first = u;
        thread_coords(first, b, sizeof b);
        kernel_fault("divergent barrier: thread %s reached __syncthreads at %s:%d while thread %s "
                     "waits at the one at %s:%d",
                     a, file, line, b, L->barrier_place.file, L->barrier_place.line);
    }
    if (++L->barrier_arrived == L->n_threads) { // the last one: release the others, go on
        L->barrier_arrived = 0;
        for (int u = 0; u < L->n_threads; u++)
            if (L->state[u] == AT_BARRIER) release(u);
        return;
    }
    L->barrier_place = place{file, line};
    L->state[t] = AT_BARRIER;
    L->waits_at[t] = place{file, line};
    wait_here();
}

uint64_t cuda_emu_shuffle(const char *file, int line, unsigned mask, uint64_t bits,
                          cuda_emu_shfl_mode mode, int arg, int width) {
    int t = L->current, lane = t % 32, first = t - lane;
    if (mask != 0xffffffffu)
        kernel_fault("a warp shuffle with mask 0x%08x: petal's kernels shuffle full warps only",
                     mask);
    if (first + 32 > L->n_threads)
        kernel_fault("a warp shuffle in a warp of %d threads: the block's size is not a multiple "
                     "of 32, so lanes of mask 0xffffffff are missing",
                     L->n_threads - first);
    if (width < 1 || width > 32 || (width & (width - 1)))
        kernel_fault("a warp shuffle of width %d: not a power of two up to 32", width);
    int seg = lane / width * width, src = lane;
    switch (mode) {
    case CUDA_EMU_SHFL_IDX:
        src = seg + (arg & (width - 1));
        break;
    case CUDA_EMU_SHFL_XOR:
        src = lane ^ arg;
        if (src < seg || src >= seg + width) src = lane;
        break;
    case CUDA_EMU_SHFL_DOWN:
        src = lane + arg < seg + width ? lane + arg : lane;
        break;
    case CUDA_EMU_SHFL_UP:
        src = lane - arg >= seg ? lane - arg : lane;
        break;
    }
    warp_state &w = L->warps[first / 32];
    unsigned generation = w.generation;
    w.values[generation & 1][lane] = bits;
    if (++w.arrived == 32) {
        w.arrived = 0;
        w.generation++;
        for (int u = first; u < first + 32; u++)
            if (L->state[u] == AT_SHUFFLE) release(u);
    } else {
        L->state[t] = AT_SHUFFLE;
        L->waits_at[t] = place{file, line};
        wait_here();
    }
    return w.values[generation & 1][src];
}

// ---- dynamic shared memory ----
//
// Each `extern __shared__ T name[]` of the kernels is a thread_local array that the build defines
// (cmake/cuda_emu.cmake generates the definitions) and registers here. A launch with smem bytes
// marks the bytes past smem: poisoned under AddressSanitizer, which then reports the first access
// beyond them, else a canary checked after every block, which catches writes just past them.

namespace {
const int MAX_SHARED_ARRAYS = 64;
const size_t CANARY_BYTES = 64;
char *(*shared_arrays[MAX_SHARED_ARRAYS])(void);
int n_shared_arrays;
} // namespace

void cuda_emu_register_dynamic_shared(char *(*array)(void)) {
    if (n_shared_arrays == MAX_SHARED_ARRAYS) {
        fprintf(stderr, "cuda_emu: more than %d extern __shared__ arrays\n", MAX_SHARED_ARRAYS);
        abort();
    }
    shared_arrays[n_shared_arrays++] = array;
}

static void shared_begin(size_t smem) {
    for (int i = 0; i < n_shared_arrays; i++) {
        char *a = shared_arrays[i]();
#if EMU_ASAN
        ASAN_POISON_MEMORY_REGION(a + smem, CUDA_EMU_DYNAMIC_SHARED_BYTES + CANARY_BYTES - smem);
#else
        memset(a + smem, 0xa5, CANARY_BYTES);
#endif
    }
}

// Each block starts with its dynamic shared memory all 0xff bytes (NaN in every float type), as
// a GPU leaves it undefined: a kernel that reads before it writes sees NaN, not what the block
// before it left.
static void shared_fill(size_t smem) {
    for (int i = 0; i < n_shared_arrays && smem > 0; i++) memset(shared_arrays[i](), 0xff, smem);
}

static bool shared_intact(size_t smem) {
#if !EMU_ASAN
    for (int i = 0; i < n_shared_arrays; i++) {
        const char *a = shared_arrays[i]() + smem;
        for (size_t k = 0; k < CANARY_BYTES; k++)
            if ((unsigned char)a[k] != 0xa5) return false;
    }
#else
    (void)smem;
#endif
    return true;
}

static void shared_end(size_t smem) {
#if EMU_ASAN
    for (int i = 0; i < n_shared_arrays; i++)
        ASAN_UNPOISON_MEMORY_REGION(shared_arrays[i]() + smem,
                                    CUDA_EMU_DYNAMIC_SHARED_BYTES + CANARY_BYTES - smem);
#else
    (void)smem;
#endif
}

// ---- launches ----

static cudaError_t check_shape(dim3 grid, dim3 block, size_t smem) {
    if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z)
        return cudaErrorInvalidConfiguration;
    if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        return cudaErrorInvalidConfiguration;
    if (block.x > 1024 || block.y > 1024 || block.z > 64 ||
        (uint64_t)block.x * block.y * block.z > 1024)
        return cudaErrorInvalidConfiguration;
    if (smem > CUDA_EMU_DYNAMIC_SHARED_BYTES) return cudaErrorInvalidValue;
    return cudaSuccess;
}

void cuda_emu_check_pointer(const cuda_emu_site *site, int arg, const void *p) {
    int owner = p ? cuda_emu_memory_device(p) : -1, device = 0;
    if (owner == -1 ||
        (owner >= 0 && cuda_emu_current_device(&device) == cudaSuccess && owner == device))
        return;
    launch_state at = {};
    at.site = site;
    L = &at;
    if (owner >= 0)
        kernel_fault("argument %d is %p, memory of cuda:%d, but the kernel runs on cuda:%d (no "
                     "peer access): the kernel would fault on a GPU",
                     arg, p, owner, device);
    kernel_fault("argument %d is %p, neither device memory nor pinned host memory: the kernel "
                 "would fault on a GPU",
                 arg, p);
}

static void run_block(launch_state &s) {
    s.next = s.exited = s.barrier_arrived = 0;
    s.ready.clear();
    s.ready_head = 0;
    for (int t = 0; t < s.n_threads; t++) s.state[t] = UNSTARTED;
    for (warp_state &w : s.warps) w.arrived = 0;
    while (s.exited < s.n_threads) {
        if (s.ready_head < s.ready.size()) {
            int t = s.ready[s.ready_head++];
            enter_fiber(s.fiber_of[t]);
        } else if (s.next < s.n_threads) {
            fiber *f;
            if (idle->empty()) {
                f = fiber_new();
            } else {
                f = idle->back();
                idle->pop_back();
            }
            enter_fiber(f);
        } else {
            report_deadlock();
        }
    }
}

cudaError_t cuda_emu_run(const cuda_emu_site *site, dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, void (*run)(void *ctx), void *ctx) {
    cudaError_t err = cuda_emu_check_launch_stream(stream);
    if (err == cudaSuccess) err = check_shape(grid, block, smem);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (!fibers) {
        fibers = new std::vector<fiber *>;
        idle = new std::vector<fiber *>;
    }
    launch_state s;
    s.site = site;
    s.grid = grid;
    s.block = block;
    s.run = run;
    s.ctx = ctx;
    s.n_threads = (int)(block.x * block.y * block.z);
    const char *order = getenv("PETAL_CUDA_EMU_ORDER");
    s.reverse = order && strcmp(order, "reverse") == 0;
    s.state.resize(s.n_threads);
    s.waits_at.resize(s.n_threads);
    s.fiber_of.resize(s.n_threads);
    s.warps.resize((s.n_threads + 31) / 32);
    launch_state *outer = L;
    L = &s;
    cuda_emu_grid_dim = grid;
    cuda_emu_block_dim = block;
    shared_begin(smem);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                cuda_emu_block_idx = uint3{x, y, z};
                shared_fill(smem);
                run_block(s);
                if (!shared_intact(smem))
                    kernel_fault("wrote past the end of its %zu bytes of dynamic shared memory",
                                 smem);
            }
    shared_end(smem);
    L = outer;
    return cudaSuccess;
}
