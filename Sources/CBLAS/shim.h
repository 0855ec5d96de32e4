// OpenBLAS's CBLAS interface (Debian: libopenblas-dev), plus its thread and kernel queries.
#include <cblas.h>
