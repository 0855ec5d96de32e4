#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
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

// The CPUs in this process's affinity mask, in ascending order, into cpus[0 …]; returns how many
// (at most capacity; 0 if the mask cannot be read).
int vae_affinity_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0) return 0;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < capacity; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    return n;
}

// The CPUs the calling thread may run on (its own mask), as vae_affinity_cpus.
int vae_thread_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < capacity; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    return n;
}

// 1 if `cpu` is the first hardware thread of its core (the lowest number in its
// thread_siblings_list, or the sysfs file is missing), 0 if it is a second SMT sibling.
int vae_cpu_is_first_sibling(int cpu) {
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
    FILE *file = fopen(path, "r");
    if (!file) return 1;
    int first = -1;
    int read = fscanf(file, "%d", &first);
    fclose(file);
    return read != 1 || first < 0 || first >= cpu;
}

// Binds the calling thread to the `count` CPUs `cpus` (the threads it starts later inherit
// them); 0 on success.
int vae_pin_thread_to(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof set, &set);
}

// The CPU the calling thread runs on now (−1 if unknown).
int vae_current_cpu(void) { return sched_getcpu(); }
