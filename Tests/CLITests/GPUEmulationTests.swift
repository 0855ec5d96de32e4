import Foundation
import Tensor
import Testing
import TestSupport

// A GPU on the host, for the tests of everything around the kernels. The stand-in driver is the
// project's own Kernels.cu compiled by the host's C++ compiler under a small shim (the CUDA
// keywords defined away, blockIdx and friends as globals). A launch of G blocks of T threads runs
// block 0 … G−1 one after another, each with its T threads: a kernel that uses shared memory runs
// its threads as coroutines (ucontext) that all stop at each __syncthreads — in a shuffled order
// each time, so that a read of another thread's value without a barrier between shows — and
// whose shared memory ends at a guard page (a kernel that uses more than its launch declared
// stops with SIGSEGV) and starts as NaNs; a thread that returns while others wait at a barrier
// stops the test. Other kernels run their threads one after another. Device memory is host
// memory. A stand-in NVRTC returns PTX whose entries declare each kernel's parameters as NVRTC
// would (pointers and 64-bit integers .u64, int .u32, float .f32), written here from the source.
// So the whole path — context, memory, modules, the launch-argument check, launches, block
// reductions, downloads — runs with the real kernel code; only the GPU's code generation is not
// exercised (`vae devices --check-kernels` on a real GPU does that).

/// Whether this CPU has fused multiply-add (x86-64's FMA3: /proc/cpuinfo's `fma` flag).
let hostHasFMA: Bool = {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
    return info.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").contains("fma") ?? false
}()

let cxxCompiler = ["/usr/bin/c++", "/usr/bin/g++", "/usr/bin/clang++"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// Each kernel's parameter types in the source: (name, [C type]).
func kernelSignatures(_ source: String) throws -> [(name: String, types: [String])] {
    let pattern = try Regex(#"extern "C" __global__ void (\w+)\(([^)]*)\)"#)
    return source.matches(of: pattern).map { match in
        let name = String(match.output[1].substring!)
        let list = String(match.output[2].substring!).replacingOccurrences(of: "\n", with: " ")
        let types = list.split(separator: ",").map { parameter -> String in
            let words = parameter.split(separator: " ").map(String.init)
            let pointer = parameter.contains("*")
            return pointer ? words.dropLast().joined(separator: " ") + " *" : words.dropLast().joined(separator: " ")
        }
        return (name, types.map { $0.replacingOccurrences(of: " *", with: "*").trimmingCharacters(in: .whitespaces) })
    }
}

/// The PTX parameter type NVRTC gives a C parameter type.
func ptxType(_ c: String) -> String {
    if c.hasSuffix("*") || c == "long" || c == "u64" || c == "unsigned long long" { return "u64" }
    if c == "float" { return "f32" }
    return "u32"
}

/// The kernels whose text (up to the next kernel) names shared memory: those whose threads work
/// together, run as coroutines by the emulated driver. (A helper defined after a kernel makes that
/// kernel one too, which only costs time; a kernel missed here that reaches __syncthreads stops
/// the emulator.)
func cooperativeKernels(_ source: String) throws -> Set<String> {
    let starts = source.ranges(of: #"extern "C" __global__ void "#)
    var names = Set<String>()
    for (index, start) in starts.enumerated() {
        let end = index + 1 < starts.count ? starts[index + 1].lowerBound : source.endIndex
        let text = source[start.upperBound..<end]
        if text.contains("shared") { names.insert(String(text.prefix { $0 != "(" })) }
    }
    return names
}

/// Writes the emulating driver (libcuda.so.1) and NVRTC (lib64/libnvrtc.so.13) under `dir`.
func writeEmulatedGPU(_ dir: String) throws {
    // Dynamic shared memory becomes a pointer the driver sets for each block (just below a guard
    // page).
    let declaration = "extern __shared__ float shared[];"
    let source = CUDAKernels.source.replacingOccurrences(of: declaration, with: "float *shared = emulator_shared;")
    #expect(source != CUDAKernels.source && !source.contains("__shared__"), "Kernels.cu declares shared memory other than `\(declaration)`")
    let signatures = try kernelSignatures(source)
    let cooperative = try cooperativeKernels(source)
    var adapters = ""
    var table = ""
    for (name, types) in signatures {
        let arguments = types.enumerated().map { "*(\($1.replacingOccurrences(of: "const ", with: "")) *)a[\($0)]" }.joined(separator: ", ")
        adapters += "static void run_\(name)(void **a) { \(name)(\(arguments)); }\n"
        table += "    {\"\(name)\", run_\(name), \(types.count), \(cooperative.contains(name) ? 1 : 0)},\n"
    }
    let driver = """
        #include <math.h>
        #include <setjmp.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <time.h>
        #include <sys/mman.h>
        #include <ucontext.h>
        #include <vector>
        #define __global__
        #define __device__
        struct dim { unsigned x, y, z; };
        static dim blockIdx, threadIdx, blockDim, gridDim;
        static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
        // The block's dynamic shared memory: its last byte just below a page that cannot be read
        // or written (48 KB at most, the limit without opting in).
        enum { shared_limit = 48 * 1024, max_threads = 1024, stack_bytes = 128 * 1024 };
        static char *shared_area;
        static float *emulator_shared;
        static void set_shared(unsigned bytes) {
            if (!shared_area) {
                shared_area = (char *)mmap(0, shared_limit + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                mprotect(shared_area + shared_limit, 4096, PROT_NONE);
            }
            emulator_shared = (float *)(shared_area + shared_limit - ((bytes + 15) & ~15u));
            memset(emulator_shared, 0xff, bytes);  // shared memory starts undefined: NaNs here
        }
        // A cooperative block's threads are coroutines: each runs until it reaches __syncthreads
        // (or returns), then the next; when all have, the waiting ones go on, in a new order. A
        // coroutine is made once (makecontext) and then switched to and from with _setjmp and
        // _longjmp, which save no signal mask (swapcontext's system call made this 10× slower);
        // after its kernel returns it waits for the next block's.
        struct fiber { ucontext_t context; jmp_buf jump; int made, state; };  // state: 0 ready, 1 at a barrier, 2 returned
        static fiber fibers[max_threads];
        static jmp_buf scheduler;
        static char *stacks;
        static int in_block;
        static unsigned running;
        static void (*fiber_run)(void **);
        static void **fiber_args;
        static void fiber_main() {
            volatile unsigned me = running;
            for (;;) {
                fiber_run(fiber_args);
                fibers[me].state = 2;
                if (!_setjmp(fibers[me].jump)) _longjmp(scheduler, 1);
            }
        }
        static void __syncthreads() {
            if (!in_block) {
                if (blockDim.x == 1) return;
                fprintf(stderr, "emulated GPU: __syncthreads in a kernel not run as coroutines\\n");
                abort();
            }
            fibers[running].state = 1;
            if (!_setjmp(fibers[running].jump)) _longjmp(scheduler, 1);
        }
        static void resume(unsigned t) {
            running = t;
            threadIdx.x = t;
            if (_setjmp(scheduler)) return;
            if (fibers[t].made) _longjmp(fibers[t].jump, 1);
            if (!stacks) stacks = (char *)mmap(0, (size_t)max_threads * stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            fibers[t].made = 1;
            getcontext(&fibers[t].context);
            fibers[t].context.uc_stack.ss_sp = stacks + (size_t)t * stack_bytes;
            fibers[t].context.uc_stack.ss_size = stack_bytes;
            fibers[t].context.uc_link = 0;
            makecontext(&fibers[t].context, fiber_main, 0);
            setcontext(&fibers[t].context);
        }
        static unsigned long long order_state = 0x9E3779B97F4A7C15ull;
        static void run_cooperative_block(const char *name, void (*run)(void **), unsigned threads, void **args) {
            fiber_run = run;
            fiber_args = args;
            for (unsigned t = 0; t < threads; t++) fibers[t].state = 0;
            unsigned order[max_threads];
            for (unsigned t = 0; t < threads; t++) order[t] = t;
            in_block = 1;
            for (;;) {
                for (unsigned t = threads - 1; t > 0; t--) {  // a new order for each stretch between barriers
                    order_state = order_state * 6364136223846793005ull + 1442695040888963407ull;
                    unsigned k = (unsigned)((order_state >> 33) % (t + 1)), swap = order[t];
                    order[t] = order[k];
                    order[k] = swap;
                }
                for (unsigned i = 0; i < threads; i++) {
                    if (fibers[order[i]].state == 0) resume(order[i]);
                }
                unsigned waiting = 0, returned = 0;
                for (unsigned t = 0; t < threads; t++) { waiting += fibers[t].state == 1; returned += fibers[t].state == 2; }
                if (!waiting) break;
                if (returned) {
                    fprintf(stderr, "emulated GPU: %s block %u: %u threads wait at __syncthreads while %u returned\\n", name, blockIdx.x, waiting, returned);
                    abort();
                }
                for (unsigned t = 0; t < threads; t++) fibers[t].state = 0;
            }
            in_block = 0;
        }
        \(source)
        \(adapters)
        struct entry { const char *name; void (*run)(void **); int count; int cooperative; };
        static const entry kernels[] = {
        \(table)    {0, 0, 0, 0}};
        // Graphs: nodes — a kernel with its arguments' 8-byte values, a host function (a
        // stand-in cuBLAS product or cuDNN convolution captured from a stream, with the memory it
        // reads and writes), or a child graph (copied when added) — and the nodes each waits for. A graph captured from a stream is a chain; one built
        // node by node runs its nodes in an order its dependencies allow but the order they were
        // added in rarely is (EMULATOR_GRAPH_ORDER: `last` — the latest ready node first, the
        // default —, `first` — the order added —, or `random:SEED`), so a node that lacks a
        // dependency it needs reads or overwrites memory out of turn. An instantiated graph is
        // the graph itself.
        struct graph;
        enum { max_dependencies = 256 };
        struct node {
            const entry *e; unsigned grid, block, shared; unsigned long long args[32]; void (*host)(void *); void *data; graph *child;
            int dependencies[max_dependencies]; int dependency_count;
            unsigned long long access[3 * 8]; int access_count;  // a host node's memory: (begin, end, written) triples
        };
        struct graph { node *nodes; int count; int allocates; int built; };
        struct stream { int capturing; graph *g; };
        static node *add_node(graph *g) {
            g->nodes = (node *)realloc(g->nodes, sizeof(node) * (g->count + 1));
            node *n = &g->nodes[g->count++];
            memset(n, 0, sizeof *n);
            return n;
        }
        static graph *copy_graph(const graph *g) {
            graph *c = (graph *)calloc(1, sizeof(graph));
            c->built = g->built;
            for (int i = 0; i < g->count; i++) {
                node *n = add_node(c);
                *n = g->nodes[i];
                if (n->child) n->child = copy_graph(n->child);
            }
            return c;
        }
        // A launch's blocks run in a shuffled order (a GPU promises none: a block that reads what
        // another block of the same launch writes shows), and so do the threads of a block that
        // has no barrier.
        static void shuffle(unsigned *order, unsigned n) {
            for (unsigned i = 0; i < n; i++) order[i] = i;
            for (unsigned i = n; i > 1; i--) {
                order_state = order_state * 6364136223846793005ull + 1442695040888963407ull;
                unsigned k = (unsigned)((order_state >> 33) % i), swap = order[i - 1];
                order[i - 1] = order[k];
                order[k] = swap;
            }
        }
        static void run_kernel(const entry *e, unsigned grid, unsigned block, unsigned sharedBytes, void **args) {
            static FILE *names;  // EMULATOR_KERNEL_LOG=FILE: each kernel run, by name
            if (!names && getenv("EMULATOR_KERNEL_LOG")) names = fopen(getenv("EMULATOR_KERNEL_LOG"), "a");
            if (names) fprintf(names, "%s\\n", e->name);
            gridDim.x = grid; blockDim.x = block;
            unsigned *blocks = (unsigned *)malloc(sizeof(unsigned) * grid), threads[max_threads];
            shuffle(blocks, grid);
            for (unsigned i = 0; i < grid; i++) {
                blockIdx.x = blocks[i];
                set_shared(sharedBytes);
                if (e->cooperative && block > 1) {
                    run_cooperative_block(e->name, e->run, block, args);
                } else {
                    shuffle(threads, block);
                    for (unsigned t = 0; t < block; t++) { threadIdx.x = threads[t]; e->run(args); }
                }
            }
            free(blocks);
        }
        static void run_graph(const graph *g);
        static void run_node(const node *n) {
            if (n->e) {
                void *pointers[32];
                for (int k = 0; k < n->e->count; k++) pointers[k] = (void *)&n->args[k];
                run_kernel(n->e, n->grid, n->block, n->shared, pointers);
            } else if (n->host) {
                n->host(n->data);
            } else if (n->child) {
                run_graph(n->child);
            }
        }
        static unsigned long long graph_order_state;
        static void run_graph(const graph *g) {
            if (!g->built) {
                for (int i = 0; i < g->count; i++) run_node(&g->nodes[i]);
                return;
            }
            const char *order = getenv("EMULATOR_GRAPH_ORDER");
            int first = order && !strcmp(order, "first"), random = order && !strncmp(order, "random:", 7);
            if (random && !graph_order_state) graph_order_state = strtoull(order + 7, 0, 10) * 2654435761ull + 1;
            char *done = (char *)calloc(g->count, 1);
            int *ready = (int *)malloc(sizeof(int) * g->count);
            for (int ran = 0; ran < g->count; ran++) {
                int count = 0;
                for (int i = 0; i < g->count; i++) {
                    if (done[i]) continue;
                    int waits = 0;
                    for (int d = 0; d < g->nodes[i].dependency_count; d++) waits |= !done[g->nodes[i].dependencies[d]];
                    if (!waits) ready[count++] = i;
                }
                int pick = ready[count - 1];
                if (first) pick = ready[0];
                if (random) {
                    graph_order_state = graph_order_state * 6364136223846793005ull + 1442695040888963407ull;
                    pick = ready[(graph_order_state >> 33) % count];
                }
                run_node(&g->nodes[pick]);
                done[pick] = 1;
            }
            free(ready);
            free(done);
        }
        // What a node's library work touches: a host node's own memory, a child graph's nodes'.
        static void node_access(const node *n, std::vector<unsigned long long> &out) {
            if (n->host) out.insert(out.end(), n->access, n->access + 3 * n->access_count);
            if (n->child) for (int i = 0; i < n->child->count; i++) node_access(&n->child->nodes[i], out);
        }
        // On a GPU, two nodes of a built graph of which neither waits (directly or not) for the
        // other may run at the same time. Of the library calls (cuBLAS's products, cuDNN's
        // convolutions) the memory is known here exactly — operands, outputs, epilogue vectors and
        // masks, and the workspace each runs in —, so two such calls that may run at once and
        // share memory one of them writes are a race, caught as the graph is instantiated. (The
        // kernels' memory is not known here: running the nodes out of their recorded order is what
        // checks theirs.)
        static void check_races(const graph *g) {
            int n = g->count;
            std::vector<std::vector<char>> reach(n, std::vector<char>(n, 0));  // reach[j][i]: j waits for i
            std::vector<std::vector<unsigned long long>> access(n);
            for (int j = 0; j < n; j++) {
                for (int d = 0; d < g->nodes[j].dependency_count; d++) {
                    int i = g->nodes[j].dependencies[d];
                    reach[j][i] = 1;
                    for (int k = 0; k < i; k++) reach[j][k] |= reach[i][k];
                }
                node_access(&g->nodes[j], access[j]);
            }
            for (int j = 0; j < n; j++)
                for (int i = 0; i < j; i++) {
                    if (reach[j][i]) continue;
                    const std::vector<unsigned long long> &a = access[i], &b = access[j];
                    for (size_t x = 0; x < a.size(); x += 3)
                        for (size_t y = 0; y < b.size(); y += 3)
                            if ((a[x + 2] || b[y + 2]) && a[x] < b[y + 1] && b[y] < a[x + 1]) {
                                fprintf(stderr, "emulated GPU: graph nodes %d and %d may run at once, and [%#llx, %#llx), which %s, overlaps [%#llx, %#llx), which %s\\n",
                                        i, j, a[x], a[x + 1], a[x + 2] ? "the first writes" : "the first reads", b[y], b[y + 1], b[y + 2] ? "the second writes" : "the second reads");
                                abort();
                            }
                }
        }
        // A built graph's node `n` waits for the `count` nodes at `deps` (handles of its graph's
        // earlier nodes); anything else is CUDA_ERROR_INVALID_VALUE.
        static int add_dependencies(graph *g, node *n, void **deps, size_t count) {
            g->built = 1;
            if (count > max_dependencies || (count && !deps)) return 1;
            for (size_t d = 0; d < count; d++) {
                long k = (long)deps[d] - 1;
                if (k < 0 || k >= g->count - 1) return 1;
                n->dependencies[n->dependency_count++] = (int)k;
            }
            return 0;
        }
        static void set_kernel(node *n, const void *f, unsigned grid, unsigned block, unsigned sharedBytes, void **args) {
            n->e = (const entry *)f; n->grid = grid; n->block = block; n->shared = sharedBytes;
            for (int k = 0; k < n->e->count; k++) memcpy(&n->args[k], args[k], 8);
        }
        extern "C" {
        // As the real driver: CUDA_VISIBLE_DEVICES set but empty hides every GPU.
        int cuInit(unsigned int flags) { const char *v = getenv("CUDA_VISIBLE_DEVICES"); return v && !*v ? 100 : 0; }
        int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
        int cuDeviceGetCount(int *n) { *n = 1; return 0; }
        int cuDeviceGet(int *d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return 0; }
        int cuDeviceGetName(char *name, int length, int d) { snprintf(name, (size_t)length, "Emulated GPU"); return 0; }
        int cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = (size_t)1 << 30; return 0; }
        int cuDeviceGetAttribute(int *v, int attribute, int d) {
            switch (attribute) { case 75: *v = 9; return 0; case 76: *v = 0; return 0; case 16: *v = 1; return 0; case 13: *v = 1500000; return 0; default: return 1; }
        }
        int cuGetErrorString(int status, const char **text) { *text = "emulated error"; return 0; }
        int cuGetExportTable(const void **table, const void *id) { *table = 0; return 500; }
        int cuDevicePrimaryCtxRetain(void **context, int device) { *context = (void *)16; return 0; }
        int cuCtxSetCurrent(void *context) { return 0; }
        int cuCtxSynchronize(void) { return 0; }
        // The declared 1 GiB is enforced (out of memory: CUDA error 2); blocks start on 256-byte
        // boundaries, as cuMemAlloc's do, each one's size in the 256 bytes before it; new memory
        // is NaNs, so that reading what was never written shows.
        static size_t allocated;
        int cuMemAlloc_v2(unsigned long long *p, size_t n) {
            if (allocated + n > ((size_t)1 << 30)) return 2;
            char *block = (char *)aligned_alloc(256, 256 + (n + 255) / 256 * 256);
            if (!block) return 2;
            memset(block + 256, 0xff, n);  // a GPU's new memory holds whatever was there: NaNs here
            *(size_t *)block = n;
            allocated += n;
            *p = (unsigned long long)(block + 256);
            return 0;
        }
        // Freed memory is filled with NaNs first, so that work still naming it shows.
        int cuMemFree_v2(unsigned long long p) {
            char *block = (char *)p - 256;
            allocated -= *(size_t *)block;
            memset(block + 256, 0xff, *(size_t *)block);
            free(block);
            return 0;
        }
        int cuMemcpyHtoD_v2(unsigned long long d, const void *h, size_t n) { memcpy((void *)d, h, n); return 0; }
        int cuMemcpyDtoH_v2(void *h, unsigned long long d, size_t n) { memcpy(h, (void *)d, n); return 0; }
        // Events hold the host's time when recorded (a launch here finishes before it returns).
        int cuEventCreate(void **event, unsigned flags) { *event = calloc(1, sizeof(double)); return *event ? 0 : 2; }
        int cuEventRecord(void *event, void *stream) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            *(double *)event = t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
            return 0;
        }
        int cuEventSynchronize(void *event) { return 0; }
        int cuEventElapsedTime_v2(float *ms, void *start, void *end) { *ms = (float)(*(double *)end - *(double *)start); return 0; }
        int cuEventDestroy_v2(void *event) { free(event); return 0; }
        int cuMemGetInfo_v2(size_t *free, size_t *total) { *total = (size_t)1 << 30; *free = *total - allocated; return 0; }
        // EMULATOR_DRIVER_PTX=X.Y: the newest PTX this driver takes; newer PTX is refused as a
        // driver older than the toolchain refuses it (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), while
        // machine code (an ELF image) loads.
        int cuModuleLoadData(void **module, const void *image) {
            const char *limit = getenv("EMULATOR_DRIVER_PTX");
            if (limit && memcmp(image, "\\177ELF", 4) != 0) {
                double version = 0;
                if (sscanf((const char *)image, ".version %lf", &version) != 1 || version > atof(limit)) return 222;
            }
            *module = (void *)32;
            return 0;
        }
        int cuModuleGetFunction(void **f, void *module, const char *name) {
            for (const entry *e = kernels; e->name; e++) if (!strcmp(e->name, name)) { *f = (void *)e; return 0; }
            return 500;
        }
        int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sharedBytes,
                           void *stream, void **args, void **extra) {
            if (sharedBytes > shared_limit || bx < 1 || bx > max_threads || gy != 1 || gz != 1 || by != 1 || bz != 1) return 1;
            if (stream && ((struct stream *)stream)->capturing) {
                set_kernel(add_node(((struct stream *)stream)->g), f, gx, bx, sharedBytes, args);
                return 0;
            }
            run_kernel((const entry *)f, gx, bx, sharedBytes, args);
            return 0;
        }
        int cuStreamCreate(void **s, unsigned flags) { *s = calloc(1, sizeof(struct stream)); return 0; }
        int cuStreamBeginCapture_v2(void *s, int mode) {
            struct stream *st = (struct stream *)s;
            if (!st || st->capturing) return 900;  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
            st->capturing = 1;
            st->g = (graph *)calloc(1, sizeof(graph));
            return 0;
        }
        int cuStreamEndCapture(void *s, void **g) {
            struct stream *st = (struct stream *)s;
            if (!st || !st->capturing) return 901;
            st->capturing = 0;
            *g = st->g;
            st->g = 0;
            return 0;
        }
        // Called by the stand-in cuBLAS for a product captured while the handle has no workspace of
        // its own: cuBLAS then takes one from stream-ordered allocations, allocation nodes in the
        // captured graph, which makes it unfit to be a child graph.
        int emulator_capture_allocation(void *s) {
            struct stream *st = (struct stream *)s;
            if (!st || !st->capturing) return 0;
            st->g->allocates = 1;
            return 1;
        }
        // Called by the stand-in cuBLAS and cuDNN: records fn(data), which touches the `count`
        // (begin, end, written) triples at `access`, if `s` is capturing (returns 1).
        int emulator_capture_host(void *s, void (*fn)(void *), void *data, const unsigned long long *access, int count) {
            struct stream *st = (struct stream *)s;
            if (!st || !st->capturing) return 0;
            if (count > 8) {
                fprintf(stderr, "emulated GPU: a library call with %d ranges of memory\\n", count);
                abort();
            }
            node *n = add_node(st->g);
            n->host = fn;
            n->data = data;
            memcpy(n->access, access, sizeof(unsigned long long) * 3 * count);
            n->access_count = count;
            return 1;
        }
        struct kernel_params { void *func; unsigned gx, gy, gz, bx, by, bz, shared; void **params; void **extra; void *kern; void *ctx; };
        // Nodes are named by their index + 1 (the array moves as it grows).
        int cuGraphCreate(void **g, unsigned flags) { *g = calloc(1, sizeof(graph)); return 0; }
        int cuGraphAddKernelNode_v2(void **n, void *g, void **deps, size_t count, const struct kernel_params *p) {
            if (p->shared > shared_limit || !p->func || p->bx < 1 || p->bx > max_threads) return 1;
            node *added = add_node((graph *)g);
            set_kernel(added, p->func, p->gx, p->bx, p->shared, p->params);
            if (add_dependencies((graph *)g, added, deps, count)) return 1;
            *n = (void *)(long)((graph *)g)->count;
            return 0;
        }
        int cuGraphAddChildGraphNode(void **n, void *g, void **deps, size_t count, void *child) {
            if (((graph *)child)->allocates) return 1;  // CUDA_ERROR_INVALID_VALUE: a child graph with allocation nodes
            node *added = add_node((graph *)g);
            added->child = copy_graph((const graph *)child);
            if (add_dependencies((graph *)g, added, deps, count)) return 1;
            *n = (void *)(long)((graph *)g)->count;
            return 0;
        }
        // EMULATOR_NO_GRAPHS: a driver that refuses to instantiate graphs (CUDA_ERROR_NOT_SUPPORTED).
        int cuGraphInstantiateWithFlags(void **exec, void *g, unsigned long long flags) {
            if (getenv("EMULATOR_NO_GRAPHS")) return 801;
            if (((graph *)g)->built) check_races((const graph *)g);
            *exec = g;
            return 0;
        }
        int cuGraphExecKernelNodeSetParams_v2(void *exec, void *n, const struct kernel_params *p) {
            graph *g = (graph *)exec;
            long i = (long)n - 1;
            if (i < 0 || i >= g->count || !g->nodes[i].e || (const entry *)p->func != g->nodes[i].e) return 1;
            set_kernel(&g->nodes[i], p->func, p->gx, p->bx, p->shared, p->params);
            return 0;
        }
        int cuGraphLaunch(void *exec, void *stream) { run_graph((const graph *)exec); return 0; }
        int cuGraphExecDestroy(void *exec) { return 0; }  // the graph itself, freed by cuGraphDestroy
        int cuGraphDestroy(void *g) {
            graph *gr = (graph *)g;
            for (int i = 0; i < gr->count; i++) if (gr->nodes[i].child) cuGraphDestroy(gr->nodes[i].child);
            free(gr->nodes);
            free(gr);
            return 0;
        }
        }
        """
    try driver.write(toFile: dir + "/driver.cpp", atomically: true, encoding: .utf8)
    // -Bsymbolic: the kernels' calls bind to the library's own definitions, not to the same-named
    // CPU twins a vae binary that exports its symbols (the release build) also has.
    // NVRTC contracts a · b + c into one fused multiply-add wherever it can (--fmad=true, its
    // default, which the project keeps): so does the host's compiler here, on a CPU with FMA (GCC
    // forms them in a pass -O1 leaves out: -fexpensive-optimizations), so that the kernels'
    // results differ from their CPU twins by that rounding as on a GPU.
    let contraction = hostHasFMA ? ["-mfma", "-ffp-contract=fast", "-fexpensive-optimizations"] : []
    let built = try run(cxxCompiler!, ["-shared", "-fPIC", "-O1", "-w", "-U_FORTIFY_SOURCE", "-Wl,-Bsymbolic"] + contraction + ["-o", dir + "/libcuda.so.1", dir + "/driver.cpp"])
    #expect(built.status == 0, "\(built.stderr)")

    var ptx = ".version 9.0\\n.target sm_90\\n.address_size 64\\n"
    for (name, types) in signatures {
        ptx += ".visible .entry \(name)(\\n"
        ptx += types.enumerated().map { "\\t.param .\(ptxType($1)) \(name)_param_\($0)" }.joined(separator: ",\\n")
        ptx += "\\n)\\n{\\n}\\n"
    }
    let nvrtc = """
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        static const char *ptx = "\(ptx)";
        int nvrtcVersion(int *major, int *minor) { *major = 13; *minor = 0; return 0; }
        int nvrtcCreateProgram(void **p, const char *src, const char *name, int n, const char **h, const char **i) { *p = (void *)8; return 0; }
        // EMULATOR_NVRTC_LOG=FILE: a line for each compile, naming the architecture. A compile for
        // a real one (sm_XY) gives machine code: an ELF image whose body is the PTX.
        static int machine_code;
        int nvrtcCompileProgram(void *p, int n, const char **options) {
            machine_code = 0;
            for (int i = 0; i < n; i++) if (!strncmp(options[i], "--gpu-architecture=sm_", 22)) machine_code = 1;
            const char *name = getenv("EMULATOR_NVRTC_LOG");
            FILE *log = name ? fopen(name, "a") : 0;
            if (log) { fputs(machine_code ? "compiled machine code\\n" : "compiled PTX\\n", log); fclose(log); }
            return 0;
        }
        int nvrtcGetCUBINSize(void *p, size_t *n) { if (!machine_code) return 1; *n = 4 + strlen(ptx); return 0; }
        int nvrtcGetCUBIN(void *p, char *out) { if (!machine_code) return 1; memcpy(out, "\\177ELF", 4); memcpy(out + 4, ptx, strlen(ptx)); return 0; }
        int nvrtcDestroyProgram(void **p) { return 0; }
        int nvrtcGetProgramLogSize(void *p, size_t *n) { *n = 1; return 0; }
        int nvrtcGetProgramLog(void *p, char *log) { log[0] = 0; return 0; }
        int nvrtcGetPTXSize(void *p, size_t *n) { *n = strlen(ptx) + 1; return 0; }
        int nvrtcGetPTX(void *p, char *out) { strcpy(out, ptx); return 0; }
        const char *nvrtcGetErrorString(int status) { return "emulated"; }
        """
    try FileManager.default.createDirectory(atPath: dir + "/toolkit/lib64", withIntermediateDirectories: true)
    try compileLibrary(nvrtc, to: dir + "/toolkit/lib64/libnvrtc.so.13")
    // cuBLAS's documented column-major product, written out as loops.
    let cublas = """
        #include <dlfcn.h>
        #include <stdlib.h>
        #include <string.h>
        static void *stream_;
        static unsigned long long workspace_;
        static size_t workspace_bytes_;
        // As cuBLAS: a stream change puts the handle back on cuBLAS's own workspace pool.
        int cublasSetStream_v2(void *h, void *s) { stream_ = s; workspace_ = 0; workspace_bytes_ = 0; return 0; }
        int cublasSetWorkspace_v2(void *h, unsigned long long w, size_t bytes) {
            workspace_ = bytes >= ((size_t)4 << 20) ? w : 0;
            workspace_bytes_ = workspace_ ? bytes : 0;
            return 0;
        }
        // The product, plus (cuBLASLt's bias epilogue) bias[i] for row i of the column-major
        // result and then ReLU; with a mask (RELU_AUX_BIAS), bit i + j·ld of it set where the
        // result is positive; with drelu (DRELU_BGRAD), each result times its bit of the mask and
        // the sums of the result's rows into rowsum.
        struct product {
            int ta, tb, m, n, k, lda, ldb, ldc, bf16; float alpha, beta; const float *A, *B; float *C; const float *bias; int relu; float *bgrad;
            unsigned char *mask; long long mask_ld; int drelu; float *rowsum;
        };
        static void run_product(void *p);
        // The bytes of a column-major rows × cols matrix of floats with leading dimension ld.
        static unsigned long long matrix_end(const float *base, long rows, long cols, long ld) {
            return (unsigned long long)base + (rows && cols ? ((cols - 1) * ld + rows) * 4 : 0);
        }
        // What a product touches, as the driver's (begin, end, written) triples: op(A), op(B), C,
        // the epilogue's bias or bias gradient, row sums and bit mask, and the workspace.
        static int product_access(const struct product *p, unsigned long long workspace, size_t bytes, unsigned long long *a) {
            int n = 0;
            #define ACCESS(begin, end, written) do { a[3 * n] = (unsigned long long)(begin); a[3 * n + 1] = (end); a[3 * n + 2] = (written); n++; } while (0)
            ACCESS(p->A, matrix_end(p->A, p->ta ? p->k : p->m, p->ta ? p->m : p->k, p->lda), 0);
            ACCESS(p->B, matrix_end(p->B, p->tb ? p->n : p->k, p->tb ? p->k : p->n, p->ldb), 0);
            ACCESS(p->C, matrix_end(p->C, p->m, p->n, p->ldc), 1);
            if (p->bias) ACCESS(p->bias, (unsigned long long)(p->bias + p->m), 0);
            if (p->bgrad) ACCESS(p->bgrad, (unsigned long long)(p->bgrad + p->n), 1);
            if (p->rowsum) ACCESS(p->rowsum, (unsigned long long)(p->rowsum + p->m), 1);
            if (p->mask) ACCESS(p->mask, (unsigned long long)(p->mask + ((p->n - 1) * p->mask_ld + p->m + 7) / 8), !p->drelu);
            if (workspace) ACCESS(workspace, workspace + bytes, 1);
            #undef ACCESS
            return n;
        }
        // A product captured from a capturing stream runs when its graph does (the driver's
        // emulator_capture_host records it, with the memory it touches); without a workspace of
        // the handle's own it also allocates one in the capture (emulator_capture_allocation).
        typedef int (*capture_t)(void *, void (*)(void *), void *, const unsigned long long *, int);
        typedef int (*allocation_t)(void *);
        static int captured_on(void *stream, unsigned long long workspace, size_t bytes, struct product *p) {
            if (!stream) return 0;
            void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
            capture_t capture = driver ? (capture_t)dlsym(driver, "emulator_capture_host") : 0;
            allocation_t allocation = driver ? (allocation_t)dlsym(driver, "emulator_capture_allocation") : 0;
            if (!workspace && allocation) allocation(stream);
            unsigned long long access[3 * 8];
            int count = product_access(p, workspace, bytes, access);
            return capture && capture(stream, run_product, p, access, count);
        }
        static int captured(struct product *p) { return captured_on(stream_, workspace_, workspace_bytes_, p); }
        static int product(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc, int bf16) {
            struct product *p = (struct product *)malloc(sizeof *p);
            struct product v = {ta, tb, m, n, k, lda, ldb, ldc, bf16, alpha, beta, A, B, C, 0, 0, 0, 0, 0, 0, 0};
            *p = v;
            if (!captured(p)) { run_product(p); free(p); }
            return 0;
        }
        // cuBLASLt (the same library, loaded again as libcublasLt.so.13): descriptors as structs,
        // a heuristic that checks the shapes and offers one algorithm (id 42), and cublasLtMatmul
        // running the product above with the descriptor's epilogue (BIAS = 4, RELU_BIAS = 6; BGRADB
        // = 512: the sums of op(B)'s columns over k into the bias pointer; RELU_AUX_BIAS = 134 and
        // DRELU_BGRAD = 152 with the bit mask at the aux pointer, aux ld bits per column).
        struct lt_desc { int compute, transa, transb; unsigned epilogue; unsigned long long bias, aux; long long aux_ld; };
        struct lt_layout { int type; unsigned long long rows, cols; long long ld; };
        int cublasLtGetProperty(int p, int *v) { *v = p == 0 ? 13 : 0; return 0; }
        int cublasLtCreate(void **h) { *h = (void *)128; return 0; }
        int cublasLtDestroy(void *h) { return 0; }
        int cublasLtMatmulDescCreate(void **d, int compute, int scale) {
            if (scale != 0 || (compute != 68 && compute != 75)) return 7;
            struct lt_desc *x = (struct lt_desc *)calloc(1, sizeof *x);
            x->compute = compute;
            x->epilogue = 1;
            *d = x;
            return 0;
        }
        int cublasLtMatmulDescDestroy(void *d) { free(d); return 0; }
        int cublasLtMatmulDescSetAttribute(void *d, int attribute, const void *buf, size_t n) {
            struct lt_desc *x = (struct lt_desc *)d;
            switch (attribute) {
            case 3: if (n != 4) return 7; x->transa = *(const int *)buf; return 0;
            case 4: if (n != 4) return 7; x->transb = *(const int *)buf; return 0;
            case 7: if (n != 4) return 7; x->epilogue = *(const unsigned *)buf; return 0;
            case 8: if (n != 8) return 7; x->bias = *(const unsigned long long *)buf; return 0;
            case 11: if (n != 8) return 7; x->aux = *(const unsigned long long *)buf; return 0;
            case 12: if (n != 8) return 7; x->aux_ld = *(const long long *)buf; return 0;
            default: return 7;
            }
        }
        int cublasLtMatrixLayoutCreate(void **l, int type, unsigned long long rows, unsigned long long cols, long long ld) {
            if (type != 0 || ld < (long long)rows) return 7;
            struct lt_layout *x = (struct lt_layout *)malloc(sizeof *x);
            struct lt_layout v = {type, rows, cols, ld};
            *x = v;
            *l = x;
            return 0;
        }
        int cublasLtMatrixLayoutDestroy(void *l) { free(l); return 0; }
        int cublasLtMatmulPreferenceCreate(void **p) { *p = calloc(1, 64); return 0; }
        int cublasLtMatmulPreferenceDestroy(void *p) { free(p); return 0; }
        int cublasLtMatmulPreferenceSetAttribute(void *p, int attribute, const void *buf, size_t n) {
            if (attribute == 1 && n == 8) return 0;
            if (attribute >= 5 && attribute <= 8 && n == 4) { unsigned a = *(const unsigned *)buf; return a >= 4 && a <= 256 && !(a & (a - 1)) ? 0 : 7; }
            return 7;
        }
        static int shapes_fit(const struct lt_desc *d, const struct lt_layout *a, const struct lt_layout *b, const struct lt_layout *c) {
            unsigned long long am = d->transa ? a->cols : a->rows, ak = d->transa ? a->rows : a->cols;
            unsigned long long bk = d->transb ? b->cols : b->rows, bn = d->transb ? b->rows : b->cols;
            int masked = d->epilogue == 134 || d->epilogue == 152;
            if (masked && (!d->aux || d->aux % 16 || d->aux_ld % 128 || d->aux_ld < (long long)c->rows)) return 0;
            return am == c->rows && bn == c->cols && ak == bk && (d->epilogue == 4 || d->epilogue == 6 || d->epilogue == 512 || masked);
        }
        int cublasLtMatmulAlgoGetHeuristic(void *h, void *d, void *a, void *b, void *c, void *dd, void *preference, int requested, void *results, int *count) {
            if (c != dd || requested < 1 || !shapes_fit((const struct lt_desc *)d, (const struct lt_layout *)a, (const struct lt_layout *)b, (const struct lt_layout *)c)) {
                *count = 0;
                return 15;  // CUBLAS_STATUS_NOT_SUPPORTED
            }
            memset(results, 0, 96);
            *(unsigned long long *)results = 42;
            *count = 1;
            return 0;
        }
        int cublasLtMatmul(void *h, void *d, const void *alpha, const void *A, void *ad, const void *B, void *bd, const void *beta, const void *C, void *cd,
                           void *D, void *dd, const void *algo, void *workspace, size_t workspaceBytes, void *stream) {
            const struct lt_desc *x = (const struct lt_desc *)d;
            const struct lt_layout *la = (const struct lt_layout *)ad, *lb = (const struct lt_layout *)bd, *lc = (const struct lt_layout *)dd;
            if (!algo || *(const unsigned long long *)algo != 42 || C != D || cd != dd || !x->bias || !shapes_fit(x, la, lb, lc)) return 7;
            if (*(const float *)alpha != 1 || *(const float *)beta != 0) return 7;
            struct product *p = (struct product *)malloc(sizeof *p);
            struct product v = {x->transa, x->transb, (int)lc->rows, (int)lc->cols, (int)(x->transa ? la->rows : la->cols), (int)la->ld, (int)lb->ld,
                                (int)lc->ld, x->compute == 75, 1, 0, (const float *)A, (const float *)B, (float *)D,
                                x->epilogue == 4 || x->epilogue == 6 || x->epilogue == 134 ? (const float *)x->bias : 0, x->epilogue == 6 || x->epilogue == 134,
                                x->epilogue == 512 ? (float *)x->bias : 0, x->epilogue == 134 || x->epilogue == 152 ? (unsigned char *)x->aux : 0, x->aux_ld,
                                x->epilogue == 152, x->epilogue == 152 ? (float *)x->bias : 0};
            *p = v;
            if (!captured_on(stream, (unsigned long long)workspace, workspaceBytes, p)) { run_product(p); free(p); }
            return 0;
        }
        int cublasGetProperty(int p, int *v) { *v = p == 0 ? 13 : 0; return 0; }
        int cublasCreate_v2(void **handle) { *handle = (void *)64; return 0; }
        int cublasDestroy_v2(void *handle) { return 0; }
        int cublasSetMathMode(void *handle, int mode) { return mode == 0 ? 0 : 7; }
        // cublasGemmEx for the bf16 products: FP32 buffers (CUDA_R_32F = 0), the compute type
        // CUBLAS_COMPUTE_32F_FAST_16BF (75): each operand rounded to bf16 (to nearest, ties to
        // even), the sums in FP32.
        static float bf16(float x) {
            unsigned u;
            memcpy(&u, &x, 4);
            u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
            memcpy(&x, &u, 4);
            return x;
        }
        static void run_product(void *pointer) {
            const struct product *p = (const struct product *)pointer;
            if (p->rowsum) for (int i = 0; i < p->m; i++) p->rowsum[i] = 0;
            for (int j = 0; j < p->n; j++) {
                if (p->bgrad) {
                    float s = 0;
                    for (int l = 0; l < p->k; l++) s += p->tb ? p->B[j + (long)l * p->ldb] : p->B[l + (long)j * p->ldb];
                    p->bgrad[j] = s;
                }
                for (int i = 0; i < p->m; i++) {
                    float s = 0;
                    for (int l = 0; l < p->k; l++) {
                        float a = p->ta ? p->A[l + (long)i * p->lda] : p->A[i + (long)l * p->lda];
                        float b = p->tb ? p->B[j + (long)l * p->ldb] : p->B[l + (long)j * p->ldb];
                        s += p->bf16 ? bf16(a) * bf16(b) : a * b;
                    }
                    long c = i + (long)j * p->ldc;
                    float value = p->alpha * s + (p->beta == 0 ? 0 : p->beta * p->C[c]);
                    if (p->bias) value += p->bias[i];
                    if (p->relu && value < 0) value = 0;
                    long long bit = i + j * p->mask_ld;
                    if (p->mask && !p->drelu) p->mask[bit >> 3] = (unsigned char)((p->mask[bit >> 3] & ~(1u << (bit & 7))) | ((value > 0) << (bit & 7)));
                    if (p->drelu && !((p->mask[bit >> 3] >> (bit & 7)) & 1)) value = 0;
                    if (p->rowsum) p->rowsum[i] += value;
                    p->C[c] = value;
                }
            }
        }
        int cublasSgemm_v2(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
            return product(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc, 0);
        }
        int cublasSgemmStridedBatched(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda, long long sa,
                                      const float *B, int ldb, long long sb, const float *beta, float *C, int ldc, long long sc, int count) {
            for (int i = 0; i < count; i++) product(ta, tb, m, n, k, *alpha, A + i * sa, lda, B + i * sb, ldb, *beta, C + i * sc, ldc, 0);
            return 0;
        }
        int cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at, int lda, long long sa,
                                       const void *B, int bt, int ldb, long long sb, const void *beta, void *C, int ct, int ldc, long long sc, int count,
                                       int compute, int algo) {
            if (at != 0 || bt != 0 || ct != 0 || compute != 75) return 7;
            for (int i = 0; i < count; i++)
                product(ta, tb, m, n, k, *(const float *)alpha, (const float *)A + i * sa, lda, (const float *)B + i * sb, ldb, *(const float *)beta,
                        (float *)C + i * sc, ldc, 1);
            return 0;
        }
        int cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at, int lda, const void *B,
                         int bt, int ldb, const void *beta, void *C, int ct, int ldc, int compute, int algo) {
            if (at != 0 || bt != 0 || ct != 0 || compute != 75) return 7;
            return product(ta, tb, m, n, k, *(const float *)alpha, (const float *)A, lda, (const float *)B, ldb, *(const float *)beta, (float *)C, ldc, 1);
        }
        """
    try compileLibrary(cublas, to: dir + "/toolkit/lib64/libcublas.so.13")
    try compileLibrary(cublas, to: dir + "/toolkit/lib64/libcublasLt.so.13")
    // cuDNN 9's legacy convolutions written out from their definitions (cross-correlation,
    // NCHW or NHWC tensors, KCRS or KRSC filters, α and β), captured like cuBLAS's products. Its
    // heuristics rank three algorithms: a non-deterministic one, a tensor-core one and the one a
    // caller must take (deterministic, FMA math: algorithm 2, which needs 2,048 bytes of
    // workspace); the convolutions refuse any other algorithm or too little workspace.
    let cudnn = """
        #include <dlfcn.h>
        #include <stdlib.h>
        #include <string.h>
        static void *stream_;
        typedef int (*capture_t)(void *, void (*)(void *), void *, const unsigned long long *, int);
        // Records fn(data), which touches the (begin, end, written) triples at `access`, if the
        // handle's stream is capturing.
        static int captured(void (*fn)(void *), void *data, const unsigned long long *access, int count) {
            if (!stream_) return 0;
            void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
            capture_t capture = driver ? (capture_t)dlsym(driver, "emulator_capture_host") : 0;
            return capture && capture(stream_, fn, data, access, count);
        }
        size_t cudnnGetVersion(void) { return 91002; }
        int cudnnCreate(void **h) { *h = (void *)256; return 0; }
        int cudnnDestroy(void *h) { return 0; }
        int cudnnSetStream(void *h, void *s) { stream_ = s; return 0; }
        struct tensor { int format, n, c, h, w; };
        struct filter { int format, k, c, r, s; };
        struct conv { int ph, pw, u, v, mode, math; };
        static int create(void **d, size_t n) { *d = calloc(1, n); return *d ? 0 : 1; }
        int cudnnCreateTensorDescriptor(void **d) { return create(d, sizeof(struct tensor)); }
        int cudnnCreateFilterDescriptor(void **d) { return create(d, sizeof(struct filter)); }
        int cudnnCreateConvolutionDescriptor(void **d) { return create(d, sizeof(struct conv)); }
        int cudnnDestroyTensorDescriptor(void *d) { free(d); return 0; }
        int cudnnDestroyFilterDescriptor(void *d) { free(d); return 0; }
        int cudnnDestroyConvolutionDescriptor(void *d) { free(d); return 0; }
        int cudnnSetTensor4dDescriptor(void *d, int format, int type, int n, int c, int h, int w) {
            if (type != 0 || format < 0 || format > 1 || n < 1 || c < 1 || h < 1 || w < 1) return 3;  // CUDNN_STATUS_BAD_PARAM
            struct tensor t = {format, n, c, h, w};
            *(struct tensor *)d = t;
            return 0;
        }
        int cudnnSetFilter4dDescriptor(void *d, int type, int format, int k, int c, int r, int s) {
            if (type != 0 || format < 0 || format > 1 || k < 1 || c < 1 || r < 1 || s < 1) return 3;
            struct filter f = {format, k, c, r, s};
            *(struct filter *)d = f;
            return 0;
        }
        int cudnnSetConvolution2dDescriptor(void *d, int ph, int pw, int u, int v, int dh, int dw, int mode, int type) {
            if (dh != 1 || dw != 1 || type != 0 || mode != 1 || u < 1 || v < 1) return 9;  // CUDNN_STATUS_NOT_SUPPORTED
            struct conv c = {ph, pw, u, v, mode, 0};
            *(struct conv *)d = c;
            return 0;
        }
        int cudnnSetConvolutionMathType(void *d, int math) { ((struct conv *)d)->math = math; return 0; }
        static long at(const struct tensor *t, int n, int c, int h, int w) {
            return t->format == 1 ? (((long)n * t->h + h) * t->w + w) * t->c + c : (((long)n * t->c + c) * t->h + h) * t->w + w;
        }
        static long fat(const struct filter *f, int k, int c, int r, int s) {
            return f->format == 1 ? (((long)k * f->r + r) * f->s + s) * f->c + c : (((long)k * f->c + c) * f->r + r) * f->s + s;
        }
        static int fits(const struct tensor *x, const struct filter *w, const struct conv *c, const struct tensor *y) {
            return y->n == x->n && y->c == w->k && x->c == w->c && y->h == (x->h + 2 * c->ph - w->r) / c->u + 1
                && y->w == (x->w + 2 * c->pw - w->s) / c->v + 1;
        }
        // The three ranked results (48 bytes each: algo, status, time, memory at 16, determinism, math).
        static int heuristic(int ok, int requested, int *count, void *results) {
            if (!ok) return 3;
            int n = requested < 3 ? requested : 3;
            memset(results, 0, 48 * n);
            for (int i = 0; i < n; i++) {
                char *r = (char *)results + 48 * i;
                *(int *)r = i;
                *(size_t *)(r + 16) = i == 0 ? 0 : i == 1 ? 4096 : 2048;
                *(int *)(r + 24) = i == 0 ? 0 : 1;
                *(int *)(r + 28) = i == 1 ? 1 : 3;
            }
            *count = n;
            return 0;
        }
        int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int requested, int *count, void *results) {
            return heuristic(fits(x, w, c, y), requested, count, results);
        }
        int cudnnGetConvolutionBackwardDataAlgorithm_v7(void *h, void *w, void *dy, void *c, void *dx, int requested, int *count, void *results) {
            return heuristic(fits(dx, w, c, dy), requested, count, results);
        }
        int cudnnGetConvolutionBackwardFilterAlgorithm_v7(void *h, void *x, void *dy, void *c, void *dw, int requested, int *count, void *results) {
            return heuristic(fits(x, dw, c, dy), requested, count, results);
        }
        // One convolution's work, run now or when its graph runs.
        struct work { int kind; struct tensor x, y; struct filter w; struct conv c; float alpha, beta; const float *a, *b; float *out; };
        static void run(void *pointer) {
            const struct work *p = (const struct work *)pointer;
            const struct tensor *x = &p->x, *y = &p->y;
            const struct filter *w = &p->w;
            long count = p->kind == 0 ? (long)y->n * y->c * y->h * y->w : p->kind == 1 ? (long)x->n * x->c * x->h * x->w : (long)w->k * w->c * w->r * w->s;
            float *sum = (float *)calloc(count, sizeof(float));
            for (int n = 0; n < x->n; n++)
                for (int k = 0; k < w->k; k++)
                    for (int oh = 0; oh < y->h; oh++)
                        for (int ow = 0; ow < y->w; ow++)
                            for (int c = 0; c < w->c; c++)
                                for (int r = 0; r < w->r; r++)
                                    for (int s = 0; s < w->s; s++) {
                                        int ih = oh * p->c.u - p->c.ph + r, iw = ow * p->c.v - p->c.pw + s;
                                        if (ih < 0 || ih >= x->h || iw < 0 || iw >= x->w) continue;
                                        long xi = at(x, n, c, ih, iw), yi = at(y, n, k, oh, ow), wi = fat(w, k, c, r, s);
                                        if (p->kind == 0) sum[yi] += p->a[xi] * p->b[wi];       // forward: a = x, b = w
                                        else if (p->kind == 1) sum[xi] += p->a[yi] * p->b[wi];  // backward data: a = dy, b = w
                                        else sum[wi] += p->a[xi] * p->b[yi];                    // backward filter: a = x, b = dy
                                    }
            for (long i = 0; i < count; i++) p->out[i] = p->alpha * sum[i] + (p->beta == 0 ? 0 : p->beta * p->out[i]);
            free(sum);
        }
        static int convolve(int kind, const float *alpha, const void *x, const void *w, const void *c, int algo, void *space, size_t bytes,
                            const float *beta, const void *y, const float *a, const float *b, float *out) {
            if (!fits((const struct tensor *)x, (const struct filter *)w, (const struct conv *)c, (const struct tensor *)y)) return 3;
            if (algo != 2 || !space || bytes < 2048 || ((const struct conv *)c)->math == 1) return 3;
            struct work *p = (struct work *)malloc(sizeof *p);
            p->kind = kind;
            p->x = *(const struct tensor *)x;
            p->y = *(const struct tensor *)y;
            p->w = *(const struct filter *)w;
            p->c = *(const struct conv *)c;
            p->alpha = *alpha;
            p->beta = *beta;
            p->a = a;
            p->b = b;
            p->out = out;
            // What it touches: its two operands, its output and the workspace (x and y are
            // tensors of floats, w a filter).
            unsigned long long xs = 4ull * p->x.n * p->x.c * p->x.h * p->x.w, ys = 4ull * p->y.n * p->y.c * p->y.h * p->y.w;
            unsigned long long ws = 4ull * p->w.k * p->w.c * p->w.r * p->w.s;
            unsigned long long as = kind == 1 ? ys : xs, bs = kind == 2 ? ys : ws, outs = kind == 0 ? ys : kind == 1 ? xs : ws;
            unsigned long long access[] = {(unsigned long long)a, (unsigned long long)a + as, 0, (unsigned long long)b, (unsigned long long)b + bs, 0,
                                           (unsigned long long)out, (unsigned long long)out + outs, 1,
                                           (unsigned long long)space, (unsigned long long)space + bytes, 1};
            if (!captured(run, p, access, 4)) { run(p); free(p); }
            return 0;
        }
        int cudnnConvolutionForward(void *h, const float *alpha, void *xd, const float *x, void *wd, const float *w, void *c, int algo, void *space,
                                    size_t bytes, const float *beta, void *yd, float *y) {
            return convolve(0, alpha, xd, wd, c, algo, space, bytes, beta, yd, x, w, y);
        }
        int cudnnConvolutionBackwardData(void *h, const float *alpha, void *wd, const float *w, void *dyd, const float *dy, void *c, int algo,
                                         void *space, size_t bytes, const float *beta, void *dxd, float *dx) {
            return convolve(1, alpha, dxd, wd, c, algo, space, bytes, beta, dyd, dy, w, dx);
        }
        int cudnnConvolutionBackwardFilter(void *h, const float *alpha, void *xd, const float *x, void *dyd, const float *dy, void *c, int algo,
                                           void *space, size_t bytes, const float *beta, void *dwd, float *dw) {
            return convolve(2, alpha, xd, dwd, c, algo, space, bytes, beta, dyd, x, dy, dw);
        }
        """
    try compileLibrary(cudnn, to: dir + "/toolkit/lib64/libcudnn.so.9")
}

/// The emulated environment for `vae`: the stand-in driver first on the loader's path, the
/// stand-in NVRTC under CUDA_HOME.
func emulatedGPUEnvironment(_ dir: String) -> [String: String] {
    ["LD_LIBRARY_PATH": dir, "CUDA_HOME": dir + "/toolkit"]
}

/// `vae devices --check-kernels` on the emulated GPU: every kernel, run by the host from the
/// same source, agrees with its CPU twin — the kernels' formulas, the arguments each launch
/// passes, and the check's own bookkeeping, all without a GPU — and three training steps of a
/// small MLP VAE through `CUDAStep` (the kernels and a stand-in cuBLAS written from its
/// column-major definition) give the CPU trainer's losses and weights.
///
/// The steps' CUDA graphs run their pieces in an order their dependencies allow but the recorded
/// order rarely is (the latest ready piece first, and a random order): a piece that lacks a
/// dependency reads memory before it is written, or overwrites it before it is read, and its
/// step's numbers differ. Two library calls (products, convolutions) that may run at once and
/// share memory one of them writes — a workspace, an operand — stop the driver as it
/// instantiates their graph.
@Test(.enabled(if: cxxCompiler != nil && cCompiler != nil, "needs C and C++ compilers for the emulated GPU"), arguments: ["last", "random:7"])
func everyKernelAgreesWithItsCPUTwinOnTheEmulatedGPU(graphOrder: String) throws {
    let dir = temporaryDirectory()
    try writeEmulatedGPU(dir)
    let result = try vae(["devices", "--check-kernels", "cuda:0"], environment: emulatedGPUEnvironment(dir).merging(["EMULATOR_GRAPH_ORDER": graphOrder]) { $1 },
                         removing: ["CUDA_PATH", "VIRTUAL_ENV"])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("cuda:0: Emulated GPU"), "\(result.stdout)")
    // The cache is off in the tests: NVRTC compiled the kernels, and the line says how long it took.
    #expect(result.stdout.contains(try Regex(#"kernels compiled by \S+libnvrtc\.so\.13 in \d+\.\d\d s\n"#)), "\(result.stdout)")
    #expect(result.stdout.contains("all 127 kernel checks agree with the CPU"), "\(result.stdout)")
    #expect(result.stdout.contains("| training step ×3 (weights) | Trainer.trainStep | 4616 |"), "\(result.stdout)")
    #expect(!result.stdout.contains("DIFFERS"), "\(result.stdout)")
}

/// `vae train --device cuda:0` on the emulated GPU: the run folder of a CPU run (weights within
/// 10⁻⁴ of `--threads 1`'s after 2 epochs of 6 steps, Adam's state in the checkpoint brought back
/// from the device); stopped after epoch 1 and resumed on the GPU it ends bit for bit where the
/// uninterrupted GPU run ended, resumed on the CPU within rounding of the CPU run; what the GPU
/// cannot do yet, a bad --device and missing CUDA libraries are refused in one line before
/// anything is written.
@Test(.enabled(if: cxxCompiler != nil && cCompiler != nil, "needs C and C++ compilers for the emulated GPU"))
func trainingOnTheEmulatedGPUMatchesTheCPU() throws {
    let dir = temporaryDirectory()
    try writeEmulatedGPU(dir)
    try writeTinyDataset(dir)
    let environment = emulatedGPUEnvironment(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                     "--progress", "none", "--no-tensorboard", "--no-report"]
    let gpu = try vae(arguments + ["--out", dir + "/gpu", "--device", "cuda:0"], environment: environment, removing: ["CUDA_PATH", "VIRTUAL_ENV"])
    #expect(gpu.status == 0, "\(gpu.stdout)\(gpu.stderr)")
    #expect(gpu.stdout.contains("vae train: training steps on cuda:0: Emulated GPU"), "\(gpu.stdout)")
    #expect(gpu.stdout.contains("each one CUDA graph") && !gpu.stderr.contains("refused CUDA graphs"), "\(gpu.stdout)\(gpu.stderr)")
    #expect(try vae(arguments + ["--out", dir + "/cpu", "--threads", "1"]).status == 0)
    let a = try tensors(dir + "/gpu/model.safetensors"), b = try tensors(dir + "/cpu/model.safetensors")
    #expect(a.keys.sorted() == b.keys.sorted())
    var largest: Float = 0
    for (name, values) in a { for (x, y) in zip(values, b[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-4, "the GPU run differs from the CPU run by \(largest)")
    // Adam's state in the checkpoint is the device's, brought back.
    let stateGPU = try tensors(dir + "/gpu/checkpoint.safetensors"), stateCPU = try tensors(dir + "/cpu/checkpoint.safetensors")
    for (name, values) in stateCPU where name.hasPrefix("optimizer.") {
        let worst = zip(values, stateGPU[name] ?? []).map { abs($0 - $1) / max(abs($0), 1e-6) }.max() ?? 1
        #expect(worst < 1e-2, "\(name): the GPU's state differs from the CPU's by \(worst) (relative)")
    }

    // A run stopped after epoch 1 (its folder as it was then: a 1-epoch run, its config then
    // raised to 2 epochs), resumed on the GPU: the uninterrupted GPU run's weights, bit for bit;
    // resumed on the CPU: the CPU run's, up to rounding.
    var oneEpoch = arguments
    oneEpoch[oneEpoch.firstIndex(of: "--epochs")! + 1] = "1"
    for (name, resumeDevice) in [("on-gpu", ["--device", "cuda:0"]), ("on-cpu", ["--threads", "1"])] {
        let folder = dir + "/" + name
        let first = try vae(oneEpoch + ["--out", folder, "--device", "cuda:0"], environment: environment)
        #expect(first.status == 0, "\(first.stderr)")
        let configPath = folder + "/config.json"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        #expect(config.contains("\"epochs\" : 1,"))
        try config.replacingOccurrences(of: "\"epochs\" : 1,", with: "\"epochs\" : 2,").write(toFile: configPath, atomically: true, encoding: .utf8)
        let resumed = try vae(["train", "--resume", folder, "--progress", "none", "--no-tensorboard", "--no-report"] + resumeDevice, environment: environment)
        #expect(resumed.status == 0 && resumed.stdout.contains("resuming \(folder) at epoch 2"), "\(resumed.stdout)\(resumed.stderr)")
        // Resuming on the other device says that the numbers will differ by rounding.
        #expect((resumed.stdout + resumed.stderr).contains("trained on cuda:0 and this resume uses the CPU") == (name == "on-cpu"), "\(resumed.stdout)\(resumed.stderr)")
        let final = try tensors(folder + "/model.safetensors")
        if name == "on-gpu" {
            #expect(final.keys.sorted() == a.keys.sorted() && final.allSatisfy { a[$0.key] == $0.value }, "resumed on the GPU, the weights differ from the uninterrupted GPU run's")
        } else {
            largest = 0
            for (key, values) in final { for (x, y) in zip(values, b[key]!) { largest = max(largest, abs(x - y)) } }
            #expect(largest < 1e-4, "resumed on the CPU, the run differs from the CPU run by \(largest)")
        }
    }
    // vae bench --device cuda:0 times the same steps on the GPU.
    let bench = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--batch-size", "16", "--hidden", "16", "--latent", "2", "--repeats", "1",
                         "--device", "cuda:0", "--json"], environment: environment)
    #expect(bench.status == 0, "\(bench.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data((bench.stdout.split(separator: "\n").last { $0.hasPrefix("{") } ?? "{}").utf8)) as? [String: Any]
    #expect((json?["device"] as? String)?.hasPrefix("cuda:0: Emulated GPU") == true, "\(bench.stdout)")
    #expect((json?["train_seconds_per_epoch"] as? Double).map { $0 > 0 } == true, "\(bench.stdout)")
    // The step's device time split by events, the memory in use and the fraction of the peak.
    let (stepTime, products, update) = (json?["device_step_ms"] as? Double, json?["products_ms_per_step"] as? Double, json?["update_ms_per_step"] as? Double)
    #expect(stepTime != nil && products != nil && update != nil && products! > 0 && update! > 0 && products! + update! <= stepTime!, "\(bench.stdout)")
    #expect((json?["gpu_memory_used_mib"] as? Int).map { $0 >= 0 } == true && (json?["fraction_of_fp32_peak"] as? Double).map { $0 > 0 } == true, "\(bench.stdout)")
    // The host's time to queue a step: some, and within the wall-clock step (the emulated graph
    // runs as it is launched, so here it holds the device's work too).
    let (hostTime, wallStep) = (json?["host_ms_per_step"] as? Double, json?["step_ms"] as? Double)
    #expect(hostTime != nil && wallStep != nil && hostTime! > 0 && hostTime! <= wallStep!, "\(bench.stdout)")
    // Its steps went as CUDA graphs (96 images in batches of 16: one graph, built once).
    #expect((json?["cuda_graphs"] as? String)?.hasPrefix("each step one graph (1 built") == true, "\(bench.stdout)")
    // Its nodes: 6 kernels (the batch, ε with z, the likelihood with its gradient, the loss record
    // with the KL rows, the posterior's gradient, Adam) and 11 products (4 forward, 4 weight
    // gradients, 3 input gradients: the encoder's first layer needs none).
    #expect(json?["step_pieces"] as? String == "6 + 11", "\(bench.stdout)")
    // The model's four layers (two in each network) each add their bias in cuBLASLt's epilogue,
    // the two without an activation (the heads) sum their bias gradient there too, and the two
    // after a ReLU layer apply its mask and sum its bias gradient in their ∂h products.
    #expect((json?["bias_epilogues"] as? String)?.hasPrefix("cuBLASLt, 8.0 products per step") == true, "\(bench.stdout)")
    // The test −ELBO after the last epoch was computed on the GPU: the CPU's figure for the same
    // weights (vae eval), within rounding.
    let metricsLines = try String(contentsOfFile: dir + "/gpu/metrics.csv", encoding: .utf8).split(separator: "\n")
    let testColumn = metricsLines[0].split(separator: ",").firstIndex(of: "test_neg_elbo")!
    let gpuTestELBO = Double(metricsLines.last!.split(separator: ",", omittingEmptySubsequences: false)[testColumn])!
    let cpuTestELBO = try vae(["eval", dir + "/gpu", "--json", "--threads", "1"])
    let cpuFigure = (try JSONSerialization.jsonObject(with: Data((cpuTestELBO.stdout.split(separator: "\n").last { $0.hasPrefix("{") } ?? "{}").utf8)) as? [String: Any])?["elbo"] as? Double
    #expect(cpuFigure != nil && abs(gpuTestELBO - cpuFigure!) < 1e-4 * abs(cpuFigure!), "GPU \(gpuTestELBO) vs CPU \(String(describing: cpuFigure))")

    // vae eval --device cuda:0: log p(x) from the same samples as the CPU's, within rounding.
    let evalArguments = ["eval", dir + "/gpu", "--iw-samples", "30", "--limit", "40", "--json"]
    let gpuEval = try vae(evalArguments + ["--device", "cuda:0"], environment: environment)
    let cpuEval = try vae(evalArguments + ["--threads", "1"])
    #expect(gpuEval.status == 0 && cpuEval.status == 0, "\(gpuEval.stderr)\(cpuEval.stderr)")
    let logPX = { (output: String) throws -> Double? in
        let line = output.split(separator: "\n").last { $0.hasPrefix("{") } ?? "{}"
        return (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["log_px"] as? Double
    }
    let (gpuLogPX, cpuLogPX) = (try logPX(gpuEval.stdout), try logPX(cpuEval.stdout))
    #expect(gpuLogPX != nil && cpuLogPX != nil && abs(gpuLogPX! - cpuLogPX!) < 1e-4, "\(gpuEval.stdout) vs \(cpuEval.stdout)")
    #expect(gpuEval.stdout.contains("\"device\":\"cuda:0: Emulated GPU"), "\(gpuEval.stdout)")
    // Without --iw-samples the −ELBO and the latent statistics are the GPU's (its kernels ran),
    // and the CPU's figures within rounding; with no driver, --device cuda is refused, not ignored.
    let kernelLog = dir + "/eval-kernels.txt"
    let gpuELBO = try vae(["eval", dir + "/gpu", "--json", "--device", "cuda:0"], environment: environment.merging(["EMULATOR_KERNEL_LOG": kernelLog]) { $1 })
    let ran = Set(((try? String(contentsOfFile: kernelLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init))
    #expect(gpuELBO.status == 0 && ran.contains("vae_record_terms") && ran.contains("vae_latent_sums"), "\(gpuELBO.stderr) \(ran.sorted())")
    let figures = { (output: String) throws -> [String: Any] in
        try JSONSerialization.jsonObject(with: Data((output.split(separator: "\n").last { $0.hasPrefix("{") } ?? "{}").utf8)) as? [String: Any] ?? [:]
    }
    let (onGPU, onCPU) = (try figures(gpuELBO.stdout), try figures(cpuTestELBO.stdout))
    for key in ["elbo", "reconstruction", "kl"] {
        let (g, c) = (onGPU[key] as? Double, onCPU[key] as? Double)
        #expect(g != nil && c != nil && abs(g! - c!) < 1e-4 * max(abs(c!), 1), "\(key): GPU \(String(describing: g)) vs CPU \(String(describing: c))")
    }
    let (klGPU, klCPU) = (onGPU["kl_per_dimension"] as? [Double] ?? [], onCPU["kl_per_dimension"] as? [Double] ?? [])
    #expect(!klCPU.isEmpty && klGPU.count == klCPU.count && zip(klGPU, klCPU).allSatisfy { abs($0 - $1) < 1e-4 * max(abs($1), 1) }, "\(klGPU) vs \(klCPU)")
    #expect(onGPU["active_units"] as? Int == onCPU["active_units"] as? Int, "\(onGPU) vs \(onCPU)")
    if dlopen("libcuda.so.1", RTLD_NOW) == nil {
        let noDriver = try vae(["eval", dir + "/gpu", "--device", "cuda:0"], removing: ["CUDA_HOME", "CUDA_PATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH"])
        #expect(noDriver.status != 0 && noDriver.stderr.contains("--device cuda:0: the NVIDIA driver's libcuda.so.1 cannot be loaded"), "\(noDriver.stderr)")
    }

    // vae score --device cuda:0: each example's log p(x) as the CPU scores it.
    let scoreArguments = ["score", dir + "/gpu", "--iw-samples", "20", "--limit", "30"]
    #expect(try vae(scoreArguments + ["--out", dir + "/gpu-scores.csv", "--device", "cuda:0"], environment: environment).status == 0)
    #expect(try vae(scoreArguments + ["--out", dir + "/cpu-scores.csv", "--threads", "1"]).status == 0)
    // Every column — log p(x), −ELBO, its two terms and μ — computed on the GPU (the −ELBO's
    // terms and μ by its evaluation pass), within rounding of the CPU's.
    let scoreColumns = { (path: String) throws -> [[Double]] in
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: ",").dropFirst(2).map { Double($0)! } }
    }
    let (gpuScores, cpuScores) = (try scoreColumns(dir + "/gpu-scores.csv"), try scoreColumns(dir + "/cpu-scores.csv"))
    #expect(gpuScores.count == 30 && cpuScores.count == 30 && gpuScores.first?.count == 4 + 2)
    for (g, c) in zip(gpuScores, cpuScores) {
        #expect(g.count == c.count && zip(g, c).allSatisfy { abs($0 - $1) < 1e-4 * max(abs($1), 1) }, "\(g) vs \(c)")
    }

    // Dynamic binarisation by counters: the GPU binarises the batches it makes from the data set
    // it holds as the CPU's loader does (weights and the training −ELBO of both epochs agree).
    let binarized = arguments + ["--binarize"]
    #expect(try vae(binarized + ["--out", dir + "/bin-gpu", "--device", "cuda:0"], environment: environment).status == 0)
    #expect(try vae(binarized + ["--out", dir + "/bin-cpu", "--threads", "1"]).status == 0)
    let binGPU = try tensors(dir + "/bin-gpu/model.safetensors"), binCPU = try tensors(dir + "/bin-cpu/model.safetensors")
    largest = 0
    for (name, values) in binGPU { for (x, y) in zip(values, binCPU[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-4, "binarised, the GPU run differs from the CPU run by \(largest)")
    let trainLoss = { (run: String) throws -> [Double] in
        let lines = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        let column = lines[0].split(separator: ",").firstIndex(of: "train_neg_elbo")!
        return lines.dropFirst().map { Double($0.split(separator: ",")[column])! }
    }
    let (lossGPU, lossCPU) = (try trainLoss(dir + "/bin-gpu"), try trainLoss(dir + "/bin-cpu"))
    #expect(lossGPU.count == 2 && zip(lossGPU, lossCPU).allSatisfy { abs($0 - $1) < 1e-4 * abs($1) }, "\(lossGPU) vs \(lossCPU)")
    // A loss that becomes non-finite on the device is found when the losses are read back, and
    // named by its step, as on the CPU; nothing is saved from the diverged weights.
    let diverged = try vae(arguments + ["--out", dir + "/nan", "--device", "cuda:0", "--lr", "1e30"], environment: environment)
    #expect(diverged.status != 0 && diverged.stderr.contains("epoch 1, step 2: the loss became non-finite"), "\(diverged.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir + "/nan/model.safetensors"))
    // A model that does not fit in the (emulated) GPU's 1 GiB: one line that says what did not fit.
    var wide = arguments
    wide[wide.firstIndex(of: "--hidden")! + 1] = "65536,1024"  // 143 M weights: 573 MB per buffer of them
    let tooBig = try vae(wide + ["--out", dir + "/big", "--device", "cuda:0"], environment: environment)
    #expect(tooBig.status != 0 && tooBig.stderr.contains("while allocating") && tooBig.stderr.contains("MB on the GPU"), "\(tooBig.stderr)")
    #expect(tooBig.stderr.split(separator: "\n").filter { !$0.isEmpty }.count == 1, "\(tooBig.stderr)")
    // The IWAE bound (K = 3), the sampled KL, SGD with momentum and clipping, the three Gaussian
    // likelihoods, free bits, a conditional model, both convolutional decoders (through cuDNN,
    // and through patch matrices with VAE_CUDA_CUDNN=0), the other activations and two
    // stochastic layers on the GPU: the CPU's weights within rounding.
    for (name, flags) in [
        ("iwae", ["--iwae", "3"]), ("mc", ["--kl", "mc", "--activation", "tanh"]),
        ("sgd", ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--clip-norm", "0.5"]),
        ("gaussian", ["--likelihood", "gaussian", "--sigma", "0.3"]), ("free-bits", ["--free-bits", "0.05"]), ("conditional", ["--conditional"]),
        ("gaussian-pixel", ["--likelihood", "gaussian-pixel"]), ("gaussian-shared", ["--likelihood", "gaussian-shared", "--sigma", "0.3"]),
        ("conv", ["--arch", "conv", "--channels", "2,3"]), ("conv-patches", ["--arch", "conv", "--channels", "2,3"]),
        ("conv-nearest", ["--arch", "conv", "--channels", "3,2", "--upsampling", "nearest", "--activation", "leaky-relu", "--likelihood", "gaussian-pixel"]),
        ("softplus", ["--activation", "softplus", "--hidden", "16,8"]), ("sigmoid", ["--activation", "sigmoid"]),
        ("two-layers", ["--stochastic-layers", "2", "--latent2", "2", "--hidden2", "8", "--activation", "tanh"]),
        ("two-layers-iwae", ["--stochastic-layers", "2", "--iwae", "2"]),
    ] {
        var settings = environment
        if name == "conv-patches" { settings["VAE_CUDA_CUDNN"] = "0" }
        let run = try vae(arguments + flags + ["--out", dir + "/\(name)-gpu", "--device", "cuda:0"], environment: settings)
        #expect(run.status == 0, "\(run.stderr)")
        if name.hasPrefix("conv") {
            let expected = name == "conv-patches" ? "convolutions through patch matrices (VAE_CUDA_CUDNN=0)" : "convolutions by cuDNN 9.10.2"
            #expect(run.stdout.contains(expected), "\(run.stdout)")
        }
        #expect(try vae(arguments + flags + ["--out", dir + "/\(name)-cpu", "--threads", "1"]).status == 0)
        let (g, c) = (try tensors(dir + "/\(name)-gpu/model.safetensors"), try tensors(dir + "/\(name)-cpu/model.safetensors"))
        largest = 0
        for (key, values) in g { for (x, y) in zip(values, c[key]!) { largest = max(largest, abs(x - y)) } }
        #expect(largest < 1e-4, "\(name): the GPU run differs from the CPU run by \(largest)")
    }
    // A driver that refuses CUDA graphs: the steps go kernel by kernel, with a warning, and give
    // the graph run's weights bit for bit.
    var refusing = environment
    refusing["EMULATOR_NO_GRAPHS"] = "1"
    let plain = try vae(arguments + ["--out", dir + "/plain", "--device", "cuda:0"], environment: refusing)
    #expect(plain.status == 0 && plain.stderr.contains("the GPU refused CUDA graphs (cuGraphInstantiate failed"), "\(plain.stderr)")
    if plain.status == 0 {
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/plain/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/gpu/model.safetensors")))
    }

    // The bias work done by kernels of their own instead of cuBLASLt's epilogues (VAE_CUDA_LT=0),
    // or the bias epilogues without the ReLU masks (VAE_CUDA_LT=bias): the same weights up to the
    // order of the bias gradients' sums; the default run said that it fused them.
    #expect(gpu.stdout.contains("biases fused into products by cuBLASLt"), "\(gpu.stdout)")
    for variant in ["0", "bias"] {
        var unfused = environment
        unfused["VAE_CUDA_LT"] = variant
        let separate = try vae(arguments + ["--out", dir + "/unfused-\(variant)", "--device", "cuda:0"], environment: unfused)
        #expect(separate.status == 0 && separate.stdout.contains("cuBLASLt") == (variant == "bias"), "\(separate.stdout)\(separate.stderr)")
        if separate.status == 0 {
            let unfusedWeights = try tensors(dir + "/unfused-\(variant)/model.safetensors")
            largest = 0
            for (key, values) in unfusedWeights { for (x, y) in zip(values, a[key]!) { largest = max(largest, abs(x - y)) } }
            #expect(largest < 1e-5, "the run with VAE_CUDA_LT=\(variant) differs from the fused one by \(largest)")
        }
    }

    // bf16 products on the GPU (cuBLAS's bf16 compute type, whatever this CPU does, and no
    // warning about it): 12 steps of Adam at 10⁻³ move a weight by at most about 0.012, so within
    // 0.02 of the FP32 CPU run's weights.
    let bf16 = try vae(arguments + ["--out", dir + "/bf16", "--device", "cuda:0", "--precision", "bf16"], environment: environment)
    #expect(bf16.status == 0 && bf16.stdout.contains("bf16 products") && !bf16.stderr.contains("running in FP32"), "\(bf16.stdout)\(bf16.stderr)")
    if bf16.status == 0 {
        let reduced = try tensors(dir + "/bf16/model.safetensors")
        largest = 0
        for (key, values) in reduced { for (x, y) in zip(values, b[key]!) { largest = max(largest, abs(x - y)) } }
        #expect(largest < 0.02, "bf16 on the GPU differs from the FP32 CPU run by \(largest)")
    }
    let bad = try vae(arguments + ["--out", dir + "/bad", "--device", "gpu"])
    #expect(bad.status != 0 && bad.stderr.contains("--device takes cpu, cuda or cuda:N, not gpu"), "\(bad.stderr)")
    // What is missing is named in order: the driver, the GPU, then the libraries.
    let none = try vae(arguments + ["--out", dir + "/none", "--device", "cuda:0"], removing: ["CUDA_HOME", "CUDA_PATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH"])
    if dlopen("libcuda.so.1", RTLD_NOW) == nil {
        #expect(none.status != 0 && none.stderr.contains("--device cuda:0: the NVIDIA driver's libcuda.so.1 cannot be loaded"), "\(none.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/none/checkpoint.safetensors"))
    }
    let invisible = try vae(arguments + ["--out", dir + "/invisible", "--device", "cuda:0"], environment: ["LD_LIBRARY_PATH": dir, "CUDA_VISIBLE_DEVICES": ""])
    #expect(invisible.status != 0 && invisible.stderr.contains("--device cuda:0: cuInit failed: ") && invisible.stderr.contains("(CUDA error 100)"), "\(invisible.stderr)")
    let absent = try vae(arguments + ["--out", dir + "/absent", "--device", "cuda:3"], environment: ["LD_LIBRARY_PATH": dir], removing: ["CUDA_HOME", "CUDA_PATH", "VIRTUAL_ENV"])
    #expect(absent.status != 0 && absent.stderr.contains("--device cuda:3: this machine has 1 CUDA device (cuda:0)"), "\(absent.stderr)")
    let noCompiler = try vae(arguments + ["--out", dir + "/no-nvrtc", "--device", "cuda:0"], environment: ["LD_LIBRARY_PATH": dir], removing: ["CUDA_HOME", "CUDA_PATH", "VIRTUAL_ENV"])
    if dlopen("libnvrtc.so.13", RTLD_NOW) == nil {
        #expect(noCompiler.status != 0 && noCompiler.stderr.contains("--device cuda:0 needs nvrtc: not found"), "\(noCompiler.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/no-nvrtc/checkpoint.safetensors"))
    }
}

/// One epoch of the tiny model on the emulated GPU under `dir` (its tiny data set there too),
/// into dir/`name`, with `environment` added: what it printed and its weights.
func trainAnEpochOnTheEmulatedGPU(_ dir: String, _ name: String, environment: [String: String]) throws -> (output: String, weights: [String: [Float]]) {
    let result = try vae(["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "1", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                          "--progress", "none", "--no-tensorboard", "--no-report", "--device", "cuda:0", "--out", dir + "/" + name],
                         environment: emulatedGPUEnvironment(dir).merging(environment) { $1 }, removing: ["CUDA_PATH", "VIRTUAL_ENV"])
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    return (result.stdout, try tensors(dir + "/" + name + "/model.safetensors"))
}

/// The lines of the emulated NVRTC's log (EMULATOR_NVRTC_LOG): one per compile.
func nvrtcCompiles(_ log: String) -> [String] {
    ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

/// The kernels' PTX is compiled once and then read from the kernel cache: a second GPU run
/// compiles nothing and trains to the same weights; an entry that is not the kernels' PTX is
/// compiled again and replaced; `VAE_CACHE=off` compiles every time and leaves the cache
/// alone; a cache folder that cannot be made costs only the compile.
@Test(.enabled(if: cxxCompiler != nil && cCompiler != nil, "needs C and C++ compilers for the emulated GPU"))
func theKernelsPTXIsCompiledOnceAndThenReadFromTheCache() throws {
    let dir = temporaryDirectory()
    try writeEmulatedGPU(dir)
    try writeTinyDataset(dir)
    let log = dir + "/nvrtc.log", cache = dir + "/cache"
    func compiles() -> Int { nvrtcCompiles(log).count }
    func train(_ name: String, cache: String) throws -> [String: [Float]] {
        try trainAnEpochOnTheEmulatedGPU(dir, name, environment: ["VAE_CACHE": cache, "EMULATOR_NVRTC_LOG": log]).weights
    }
    let first = try train("first", cache: cache)
    #expect(compiles() == 1)
    let kernels = cache + "/kernels"
    let entries = try FileManager.default.contentsOfDirectory(atPath: kernels)
    #expect(entries.count == 1 && entries[0].hasSuffix(".ptx"), "\(entries)")
    let entry = kernels + "/" + entries[0]
    let ptx = try String(contentsOfFile: entry, encoding: .utf8)
    #expect(ptx.contains(".entry vae_adam("))

    #expect(try train("second", cache: cache) == first)
    #expect(compiles() == 1, "the second run compiled the kernels again")

    try "not PTX".write(toFile: entry, atomically: true, encoding: .utf8)
    #expect(try train("third", cache: cache) == first)
    #expect(compiles() == 2)
    #expect(try String(contentsOfFile: entry, encoding: .utf8) == ptx, "the bad entry was not replaced")

    _ = try train("off", cache: "off")
    #expect(compiles() == 3)
    #expect(try FileManager.default.contentsOfDirectory(atPath: kernels) == entries)

    try "a file".write(toFile: dir + "/file", atomically: true, encoding: .utf8)
    #expect(try train("unwritable", cache: dir + "/file/cache") == first)
    #expect(compiles() == 4)
}

/// A driver older than NVRTC refuses its PTX (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, as a CUDA 12.4
/// driver refuses NVRTC 12.8's): the kernels are then compiled to this GPU's machine code, which
/// it loads, and both are cached — the run trains to the weights of a driver that takes the PTX,
/// says so, and a second run compiles nothing.
@Test(.enabled(if: cxxCompiler != nil && cCompiler != nil, "needs C and C++ compilers for the emulated GPU"))
func aDriverOlderThanNVRTCRunsTheKernelsMachineCode() throws {
    let dir = temporaryDirectory()
    try writeEmulatedGPU(dir)
    try writeTinyDataset(dir)
    let log = dir + "/nvrtc.log", cache = dir + "/cache"
    func compiles() -> [String] { nvrtcCompiles(log) }
    func train(_ name: String, driverPTX: String) throws -> (output: String, weights: [String: [Float]]) {
        try trainAnEpochOnTheEmulatedGPU(dir, name, environment: ["VAE_CACHE": cache, "EMULATOR_NVRTC_LOG": log, "EMULATOR_DRIVER_PTX": driverPTX])
    }
    let old = try train("old-driver", driverPTX: "8.8")
    #expect(compiles() == ["compiled PTX", "compiled machine code"])
    #expect(old.output.contains("kernels as machine code (the driver is older than NVRTC)"), "\(old.output)")
    let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/kernels").sorted()
    #expect(entries.count == 2 && entries.contains { $0.hasSuffix(".cubin") } && entries.contains { $0.hasSuffix(".ptx") }, "\(entries)")

    let again = try train("old-driver-again", driverPTX: "8.8")
    #expect(compiles().count == 2, "the second run compiled again: \(compiles())")
    #expect(again.weights == old.weights)

    let current = try train("current-driver", driverPTX: "9.0")
    #expect(compiles().count == 2)
    #expect(!current.output.contains("machine code"), "\(current.output)")
    #expect(current.weights == old.weights)
}
