// oneDNN's C interface (Debian: libdnnl-dev): its row-major sgemm and version queries, and the
// names of its enumerations (dnnl_debug.h).
#include <dnnl.h>
#include <dnnl_debug.h>

// Debian's oneDNN runs its own threads with OpenMP (libgomp): a product uses as many threads as
// the calling thread's OpenMP setting says. Declared here because clang does not ship GCC's omp.h.
int omp_get_max_threads(void);
void omp_set_num_threads(int n);
int omp_get_thread_num(void);
int omp_get_num_threads(void);

// libgomp's entry for a parallel region (what GCC emits for `#pragma omp parallel`, documented in
// libgomp's manual, "The libgomp ABI"): runs fn(data) on a team of num_threads threads, the
// caller among them, and returns when all have; flags 0.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
