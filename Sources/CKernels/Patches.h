// What the channels-last convolution kernels (Im2Col.c, DirectConvolution.c) share.
#ifndef SWIFT_VAE_PATCHES_H
#define SWIFT_VAE_PATCHES_H

// Runs are short (one channel: k values; 32 channels: 4·32), where a call to memcpy/memset
// costs more than the copy, so the loops stay loops (the attribute also goes on every inlined
// helper: it does not carry over).
#define INLINE_COPIES __attribute__((no_builtin("memcpy", "memmove", "memset")))

// Four floats at any alignment: a one-channel image's kernel row (k = 4), one move.
typedef float float4_unaligned __attribute__((vector_size(16), aligned(4)));
// Sixteen floats (one AVX-512 register; two or four narrower ones on other clones).
typedef float float16_unaligned __attribute__((vector_size(64), aligned(4)));

// The kernel columns kw in [*lo, *hi) whose source column first + kw lies in [0, width).
static inline void valid_columns(long first, long kernel, long width, long *lo, long *hi) {
    long l = first < 0 ? -first : 0;
    long h = width - first < kernel ? width - first : kernel;
    if (l > kernel) l = kernel;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

#endif
