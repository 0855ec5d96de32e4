// oneDNN's C interface (Debian: libdnnl-dev): its row-major sgemm and version queries, and the
// names of its enumerations (dnnl_debug.h).
#include <dnnl.h>
#include <dnnl_debug.h>

// Debian's oneDNN runs its own threads with OpenMP (libgomp): a product uses as many threads as
// the calling thread's OpenMP setting says. Declared here because clang does not ship GCC's omp.h.
int omp_get_max_threads(void);
void omp_set_num_threads(int n);
