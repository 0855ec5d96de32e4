#ifndef CCUDA_H
#define CCUDA_H

#include <stddef.h>

/// One NVIDIA GPU as the CUDA driver describes it.
struct vae_cuda_device {
    char name[256];
    size_t memory;          // bytes of device memory
    int major, minor;       // compute capability
    int multiprocessors;
};

/// Loads the NVIDIA driver's CUDA library (libcuda.so.1, found by the loader as the driver
/// installs it) with dlopen and calls cuInit(0). Nothing of CUDA is linked at build time.
/// Returns 0, or -1 with one line in `message` naming what is missing or what failed.
int vae_cuda_open(char *message, size_t capacity);

/// The driver's CUDA version as 1000 × major + 10 × minor (13000 for 13.0), after a
/// successful vae_cuda_open; 0 if unknown.
int vae_cuda_driver_version(void);

/// How many devices the driver sees (0 is possible). Returns 0, or -1 with a message.
int vae_cuda_device_count(int *count, char *message, size_t capacity);

/// Device `ordinal`'s name, memory, compute capability and multiprocessors. Returns 0, or -1
/// with a message.
int vae_cuda_device(int ordinal, struct vae_cuda_device *device, char *message, size_t capacity);

/// Makes device `ordinal`'s primary context current on the calling thread (loading what
/// computing needs from the driver). Returns 0, or -1 with a message, as every call below.
int vae_cuda_use_device(int ordinal, char *message, size_t capacity);
/// `bytes` of device memory (cuMemAlloc); its address in `pointer`.
int vae_cuda_alloc(size_t bytes, unsigned long long *pointer, char *message, size_t capacity);
void vae_cuda_free(unsigned long long pointer);
/// Copies between host and device memory (synchronous).
int vae_cuda_upload(unsigned long long device, const void *host, size_t bytes, char *message, size_t capacity);
int vae_cuda_download(void *host, unsigned long long device, size_t bytes, char *message, size_t capacity);
/// Loads a module from PTX text (the driver compiles it for the device) or from a CUBIN (the
/// device's machine code), and finds a kernel in it. A failed load returns the driver's status
/// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, 222: PTX from an NVRTC newer than the driver).
int vae_cuda_load_module(const void *image, void **module, char *message, size_t capacity);
int vae_cuda_function(void *module, const char *name, void **function, char *message, size_t capacity);
/// Launches `function` on a 1-D grid of `grid` blocks of `block` threads on the default
/// stream; `arguments` points at each argument's value, in order (cuLaunchKernel's convention).
int vae_cuda_launch(void *function, unsigned grid, unsigned block, unsigned shared_bytes, void **arguments, char *message,
                    size_t capacity);
/// Waits for the device's work to finish; reports the first error a kernel met.
int vae_cuda_synchronize(char *message, size_t capacity);

/// Events on the default stream for timing the device's work (vae bench): create, record after
/// the work queued so far, and the milliseconds between two recorded events (waiting for the
/// second). Memory: free and total bytes of the current device. Attribute: cuDeviceGetAttribute.
int vae_cuda_event_create(void **event, char *message, size_t capacity);
int vae_cuda_event_record(void *event, char *message, size_t capacity);
int vae_cuda_event_elapsed(float *milliseconds, void *start, void *end, char *message, size_t capacity);
void vae_cuda_event_destroy(void *event);
int vae_cuda_memory(size_t *free, size_t *total, char *message, size_t capacity);
int vae_cuda_attribute(int ordinal, int attribute, int *value, char *message, size_t capacity);

/// CUDA graphs: create one; add a kernel node after the `count` nodes at `after` (none: a root),
/// its arguments as for vae_cuda_launch (copied by the driver); a stream (made once) to capture
/// cuBLAS calls into a child graph between capture_begin and capture_end, added after the nodes
/// at `after`; instantiate;
/// set an instantiated kernel node's arguments; launch on the default stream; destroy.
int vae_cuda_graph_create(void **graph, char *message, size_t capacity);
int vae_cuda_graph_add_kernel(void *graph, void **node, void **after, size_t count, void *function, unsigned grid, unsigned block,
                              unsigned shared_bytes, void **arguments, char *message, size_t capacity);
int vae_cuda_capture_stream(void **stream, char *message, size_t capacity);
int vae_cuda_capture_begin(void *stream, char *message, size_t capacity);
int vae_cuda_capture_end(void *stream, void **graph, char *message, size_t capacity);
int vae_cuda_graph_add_child(void *graph, void **node, void **after, size_t count, void *child, char *message, size_t capacity);
int vae_cuda_graph_instantiate(void *graph, void **executable, char *message, size_t capacity);
int vae_cuda_graph_set_kernel(void *executable, void *node, void *function, unsigned grid, unsigned block, unsigned shared_bytes,
                              void **arguments, char *message, size_t capacity);
int vae_cuda_graph_launch(void *executable, char *message, size_t capacity);
void vae_cuda_graph_destroy(void *graph, void *executable);

/// The file the loader opened for `handle` (a dlopen result), through dlinfo's link map.
/// Returns 0, or -1.
int vae_library_path(void *handle, char *path, size_t capacity);

#endif
