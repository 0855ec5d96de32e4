// The eleven matrix products of one training step of the default MLP VAE (784-400-20, Bernoulli),
// timed through oneDNN's sgemm on one thread in two ways:
//
//   hot   each product alone, repeated, its operands in cache: what the kernel can do;
//   step  the eleven in the step's order, each on its own operands (as in the step, where the
//         weights, their gradients and Adam's state — about 13 MB — pass through a 1–2 MB L2
//         between two uses of any one matrix): what the products get inside a training step.
//
// Each is given as the best and the median of 280 timed calls: on a shared machine the two differ
// a lot (the best is what the kernel does when nothing else disturbs the core; the median is what
// a run gets). `vae bench` prints the step's own figure ("matrix products GFLOP/s within the
// step"), a mean. Build and run (after scripts/setup.sh, which installs libdnnl-dev):
//
//   cc -O2 scripts/step_products.c -o /tmp/step_products -ldnnl && OMP_NUM_THREADS=1 /tmp/step_products [rows]
//
// rows: the batch rows one core multiplies (128 for one core at the default batch, 64 for each
// of two workers). Not part of the build or the tests.
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct { const char *name; char ta, tb; int m, n, k; } Product;

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void multiply(const Product *p, const float *a, const float *b, float *c) {
    int lda = p->ta == 'N' ? p->k : p->m, ldb = p->tb == 'N' ? p->n : p->k;
    dnnl_sgemm(p->ta, p->tb, p->m, p->n, p->k, 1.0f, a, lda, b, ldb, 0.0f, c, p->n);
}

int main(int argc, char **argv) {
    int rows = argc > 1 ? atoi(argv[1]) : 128;
    if (rows < 1 || rows > 4096) { fprintf(stderr, "rows must be between 1 and 4096\n"); return 2; }
    // Row-major, weights as stored ([out, in]); X the images, H hidden activations, O = [μ | log σ²].
    const Product products[] = {
        {"X·W1ᵀ", 'N', 'T', rows, 400, 784},   {"H·W2ᵀ", 'N', 'T', rows, 40, 400},
        {"Z·W3ᵀ", 'N', 'T', rows, 400, 20},    {"H·W4ᵀ", 'N', 'T', rows, 784, 400},
        {"∂W4 = ∂Yᵀ·H", 'T', 'N', 784, 400, rows}, {"∂H = ∂Y·W4", 'N', 'N', rows, 400, 784},
        {"∂W3 = ∂Hᵀ·Z", 'T', 'N', 400, 20, rows},  {"∂Z = ∂H·W3", 'N', 'N', rows, 20, 400},
        {"∂W2 = ∂Oᵀ·H", 'T', 'N', 40, 400, rows},  {"∂H = ∂O·W2", 'N', 'N', rows, 400, 40},
        {"∂W1 = ∂Hᵀ·X", 'T', 'N', 400, 784, rows},
    };
    enum { count = sizeof products / sizeof products[0], repeats = 300 };
    size_t elements = (size_t)4096 * 784;
    float *operands[count][3];
    for (int i = 0; i < count; i++)
        for (int j = 0; j < 3; j++) {
            operands[i][j] = aligned_alloc(64, elements * sizeof(float));
            if (!operands[i][j]) { fprintf(stderr, "out of memory\n"); return 1; }
            for (size_t q = 0; q < elements; q++) operands[i][j][q] = (float)(q % 7) * 0.1f - 0.3f;
        }
    enum { warmUp = 20, timed = repeats - warmUp };
    static double hot[count][timed], step[count][timed];
    for (int i = 0; i < count; i++)
        for (int r = 0; r < repeats; r++) {
            double t = now();
            multiply(&products[i], operands[i][0], operands[i][1], operands[i][2]);
            if (r >= warmUp) hot[i][r - warmUp] = now() - t;
        }
    for (int r = 0; r < repeats; r++)
        for (int i = 0; i < count; i++) {
            double t = now();
            multiply(&products[i], operands[i][0], operands[i][1], operands[i][2]);
            if (r >= warmUp) step[i][r - warmUp] = now() - t;
        }
    printf("GFLOP/s        %16s %10s %10s %10s %10s\n", "m×n×k", "hot best", "hot median", "step best", "step median");
    double flops = 0, sums[4] = {0};
    for (int i = 0; i < count; i++) {
        const Product *p = &products[i];
        qsort(hot[i], timed, sizeof(double), ascending);
        qsort(step[i], timed, sizeof(double), ascending);
        double f = 2.0 * p->m * p->n * p->k;
        double t[4] = {hot[i][0], hot[i][timed / 2], step[i][0], step[i][timed / 2]};
        char shape[32];
        snprintf(shape, sizeof shape, "%d×%d×%d", p->m, p->n, p->k);
        printf("%-14s %16s %10.1f %10.1f %10.1f %10.1f\n", p->name, shape, f / t[0] / 1e9, f / t[1] / 1e9, f / t[2] / 1e9, f / t[3] / 1e9);
        flops += f;
        for (int j = 0; j < 4; j++) sums[j] += t[j];
    }
    printf("all eleven (%.1f MFLOP), GFLOP/s: hot best %.1f, hot median %.1f, step best %.1f, step median %.1f\n", flops / 1e6,
           flops / sums[0] / 1e9, flops / sums[1] / 1e9, flops / sums[2] / 1e9, flops / sums[3] / 1e9);
    return 0;
}
