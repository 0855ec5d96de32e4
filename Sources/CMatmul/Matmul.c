// Matrix products through oneDNN's matmul primitive with the bf16 floating-point math mode: on
// a Xeon with AMX this is where bf16 products run at hundreds of GFLOP/s per core (oneDNN's
// brgemm kernels on the tile unit), the operands staying FP32 in memory (oneDNN converts them
// as it packs them). Where that mode does not reach an AMX kernel on a CPU with AMX, the
// operands are rounded to bf16 here and the primitive takes bf16. Each shape's primitive is
// made once per thread (oneDNN primitives are cheap to run, costly to make) and kept in a
// small per-thread table.
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include "CMatmul.h"

int vae_cpu_has_amx_bf16(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int tile = (edx >> 24) & 1, bf16 = (edx >> 22) & 1;
    if (!tile || !bf16) return 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return 0;  // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((lo >> 17) & 3) == 3;  // XTILECFG and XTILEDATA enabled by the OS
}

enum { CACHE = 32 };

typedef struct {
    int transposeA, transposeB, accumulate;
    long m, n, k, lda, ldb, ldc;
    /// Whether the primitive takes bf16 operands (converted here, densely) because oneDNN's
    /// FP32 matmul in the bf16 math mode did not pick an AMX kernel on a CPU that has AMX.
    int explicitBF16;
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t src, weights, dst;
} entry;

static __thread entry cache[CACHE];
static __thread int cached, next;
static __thread dnnl_engine_t engine;
static __thread dnnl_stream_t stream;
static __thread char implementation[128];
static __thread unsigned short *scratch;
static __thread long scratchCount;

/// Rounds `count` floats to bf16 (nearest, ties to even) into `out`.
static void to_bf16(const float *in, long rows, long cols, long stride, unsigned short *out) {
    for (long r = 0; r < rows; r++) {
        const unsigned *row = (const unsigned *)(in + r * stride);
        unsigned short *o = out + r * cols;
        for (long c = 0; c < cols; c++) {
            unsigned u = row[c];
            o[c] = (unsigned short)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
        }
    }
}

static int make(entry *e) {
    dnnl_dims_t srcDims = {e->m, e->k}, weightDims = {e->k, e->n}, dstDims = {e->m, e->n};
    // Explicit bf16 operands are stored densely (row stride = their stored row's length).
    long lda = e->explicitBF16 ? (e->transposeA ? e->m : e->k) : e->lda, ldb = e->explicitBF16 ? (e->transposeB ? e->k : e->n) : e->ldb;
    dnnl_dims_t srcStrides = {e->transposeA ? 1 : lda, e->transposeA ? lda : 1};
    dnnl_dims_t weightStrides = {e->transposeB ? 1 : ldb, e->transposeB ? ldb : 1};
    dnnl_dims_t dstStrides = {e->ldc, 1};
    dnnl_data_type_t operands = e->explicitBF16 ? dnnl_bf16 : dnnl_f32;
    if (dnnl_memory_desc_init_by_strides(&e->src, 2, srcDims, operands, srcStrides) != dnnl_success) return -1;
    if (dnnl_memory_desc_init_by_strides(&e->weights, 2, weightDims, operands, weightStrides) != dnnl_success) return -1;
    if (dnnl_memory_desc_init_by_strides(&e->dst, 2, dstDims, dnnl_f32, dstStrides) != dnnl_success) return -1;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &e->src, &e->weights, NULL, &e->dst) != dnnl_success) return -1;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return -1;
    int ok = dnnl_primitive_attr_set_fpmath_mode(attr, dnnl_fpmath_mode_bf16) == dnnl_success;
    if (ok && e->accumulate) {
        dnnl_post_ops_t post;
        ok = dnnl_post_ops_create(&post) == dnnl_success;
        if (ok) {
            ok = dnnl_post_ops_append_sum(post, 1.0f) == dnnl_success && dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
            dnnl_post_ops_destroy(post);
        }
    }
    dnnl_primitive_desc_t pd = NULL;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) == dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    if (!ok) return -1;
    const char *info = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success && info) {
        snprintf(implementation, sizeof implementation, "%s", info);
    }
    ok = dnnl_primitive_create(&e->primitive, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    return ok ? 0 : -1;
}

int vae_matmul_bf16(int transposeA, int transposeB, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                    int accumulate, float *c, long ldc) {
    if (!engine) {
        if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return -1;
        if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) return -1;
    }
    entry *e = NULL;
    for (int i = 0; i < cached; i++) {
        entry *x = &cache[i];
        if (x->transposeA == transposeA && x->transposeB == transposeB && x->accumulate == (accumulate != 0) && x->m == m && x->n == n &&
            x->k == k && x->lda == lda && x->ldb == ldb && x->ldc == ldc) {
            e = x;
            break;
        }
    }
    if (!e) {
        // A new shape: a free slot, or the oldest one's (round robin) after destroying it.
        e = &cache[cached < CACHE ? cached : next];
        if (cached == CACHE) {
            dnnl_primitive_destroy(e->primitive);
            next = (next + 1) % CACHE;
        }
        memset(e, 0, sizeof *e);
        e->transposeA = transposeA;
        e->transposeB = transposeB;
        e->accumulate = accumulate != 0;
        e->m = m; e->n = n; e->k = k; e->lda = lda; e->ldb = ldb; e->ldc = ldc;
        if (make(e) != 0) return -1;
        if (vae_cpu_has_amx_bf16() && !strstr(implementation, "amx")) {
            // The bf16 math mode did not reach the tile unit: bf16 operands, converted here.
            dnnl_primitive_destroy(e->primitive);
            e->explicitBF16 = 1;
            if (make(e) != 0) return -1;
        }
        if (cached < CACHE) cached++;
    }
    const void *aData = a, *bData = b;
    if (e->explicitBF16) {
        long aCount = m * k, need = aCount + k * n;
        if (scratchCount < need) {
            free(scratch);
            scratch = malloc(sizeof *scratch * (size_t)need);
            scratchCount = scratch ? need : 0;
            if (!scratch) return -1;
        }
        to_bf16(a, transposeA ? k : m, transposeA ? m : k, lda, scratch);
        to_bf16(b, transposeB ? n : k, transposeB ? k : n, ldb, scratch + aCount);
        aData = scratch;
        bData = scratch + aCount;
    }
    dnnl_memory_t src, weights, dst;
    if (dnnl_memory_create(&src, &e->src, engine, (void *)aData) != dnnl_success) return -1;
    if (dnnl_memory_create(&weights, &e->weights, engine, (void *)bData) != dnnl_success) { dnnl_memory_destroy(src); return -1; }
    if (dnnl_memory_create(&dst, &e->dst, engine, c) != dnnl_success) { dnnl_memory_destroy(src); dnnl_memory_destroy(weights); return -1; }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
    int status = dnnl_primitive_execute(e->primitive, stream, 3, args) == dnnl_success && dnnl_stream_wait(stream) == dnnl_success ? 0 : -1;
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(weights);
    dnnl_memory_destroy(dst);
    return status;
}

const char *vae_matmul_bf16_implementation(void) { return implementation; }
