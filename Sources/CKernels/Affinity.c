#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include "CKernels.h"

// The cores this process may run on: its CPU affinity mask (what taskset, cgroup cpusets and
// mpirun's --bind-to set), not every core the machine has online.
int vae_affinity_cores(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
