// One copy of a function per instruction set; the dynamic loader picks the best at start-up.
#define CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
