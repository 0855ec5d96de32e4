// The CUDA driver API, loaded at run time: the few entry points a device query needs, declared
// here with the driver's documented signatures (CUresult and CUdevice are ints), so that the
// build needs neither CUDA's headers nor its libraries.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "CCUDA.h"

// Looks `symbol` up in the driver into `table.field`, or fails naming it.
#define LOAD(table, field, symbol) \
    if (!(table.field = (void *)dlsym(cuda.library, symbol))) { \
        snprintf(message, capacity, "libcuda.so.1 lacks %s: the NVIDIA driver is too old", symbol); \
        return -1; \
    }

typedef int (*cu_init_t)(unsigned int);
typedef int (*cu_driver_get_version_t)(int *);
typedef int (*cu_device_get_count_t)(int *);
typedef int (*cu_device_get_t)(int *, int);
typedef int (*cu_device_get_name_t)(char *, int, int);
typedef int (*cu_device_total_mem_t)(size_t *, int);
typedef int (*cu_device_get_attribute_t)(int *, int, int);
typedef int (*cu_get_error_string_t)(int, const char **);

enum { MULTIPROCESSOR_COUNT = 16, COMPUTE_CAPABILITY_MAJOR = 75, COMPUTE_CAPABILITY_MINOR = 76 };

static struct {
    void *library;
    int initialised;
    cu_init_t init;
    cu_driver_get_version_t driver_get_version;
    cu_device_get_count_t device_get_count;
    cu_device_get_t device_get;
    cu_device_get_name_t device_get_name;
    cu_device_total_mem_t device_total_mem;
    cu_device_get_attribute_t device_get_attribute;
    cu_get_error_string_t get_error_string;
} cuda;

static void describe(int status, const char *call, char *message, size_t capacity) {
    const char *text = NULL;
    if (cuda.get_error_string) cuda.get_error_string(status, &text);
    snprintf(message, capacity, "%s failed: %s (CUDA error %d)", call, text ? text : "unknown error", status);
}

int vae_cuda_open(char *message, size_t capacity) {
    if (cuda.initialised) return 0;
    if (!cuda.library) {
        cuda.library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!cuda.library) {
            snprintf(message, capacity, "the NVIDIA driver's libcuda.so.1 cannot be loaded (%s): no NVIDIA driver is installed here", dlerror());
            return -1;
        }
    }
    LOAD(cuda, init, "cuInit")
    LOAD(cuda, driver_get_version, "cuDriverGetVersion")
    LOAD(cuda, device_get_count, "cuDeviceGetCount")
    LOAD(cuda, device_get, "cuDeviceGet")
    LOAD(cuda, device_get_name, "cuDeviceGetName")
    LOAD(cuda, device_total_mem, "cuDeviceTotalMem_v2")
    LOAD(cuda, device_get_attribute, "cuDeviceGetAttribute")
    LOAD(cuda, get_error_string, "cuGetErrorString")
    int status = cuda.init(0);
    if (status != 0) {
        describe(status, "cuInit", message, capacity);
        return -1;
    }
    cuda.initialised = 1;
    return 0;
}

int vae_cuda_driver_version(void) {
    int version = 0;
    if (!cuda.initialised || cuda.driver_get_version(&version) != 0) return 0;
    return version;
}

int vae_cuda_device_count(int *count, char *message, size_t capacity) {
    if (vae_cuda_open(message, capacity) != 0) return -1;
    int status = cuda.device_get_count(count);
    if (status != 0) {
        describe(status, "cuDeviceGetCount", message, capacity);
        return -1;
    }
    return 0;
}

int vae_cuda_device(int ordinal, struct vae_cuda_device *device, char *message, size_t capacity) {
    if (vae_cuda_open(message, capacity) != 0) return -1;
    int handle = 0, status;
    memset(device, 0, sizeof *device);
    if ((status = cuda.device_get(&handle, ordinal)) != 0) { describe(status, "cuDeviceGet", message, capacity); return -1; }
    if ((status = cuda.device_get_name(device->name, (int)sizeof device->name - 1, handle)) != 0) { describe(status, "cuDeviceGetName", message, capacity); return -1; }
    if ((status = cuda.device_total_mem(&device->memory, handle)) != 0) { describe(status, "cuDeviceTotalMem", message, capacity); return -1; }
    if ((status = cuda.device_get_attribute(&device->major, COMPUTE_CAPABILITY_MAJOR, handle)) != 0 ||
        (status = cuda.device_get_attribute(&device->minor, COMPUTE_CAPABILITY_MINOR, handle)) != 0 ||
        (status = cuda.device_get_attribute(&device->multiprocessors, MULTIPROCESSOR_COUNT, handle)) != 0) {
        describe(status, "cuDeviceGetAttribute", message, capacity);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Computing: a context on one device, memory, modules compiled from PTX, kernel launches.

typedef int (*cu_primary_ctx_retain_t)(void **, int);
typedef int (*cu_ctx_set_current_t)(void *);
typedef int (*cu_ctx_synchronize_t)(void);
typedef int (*cu_mem_alloc_t)(unsigned long long *, size_t);
typedef int (*cu_mem_free_t)(unsigned long long);
typedef int (*cu_memcpy_htod_t)(unsigned long long, const void *, size_t);
typedef int (*cu_memcpy_dtoh_t)(void *, unsigned long long, size_t);
typedef int (*cu_module_load_data_t)(void **, const void *);
typedef int (*cu_module_get_function_t)(void **, void *, const char *);
typedef int (*cu_launch_kernel_t)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);

static struct {
    int loaded;
    cu_primary_ctx_retain_t primary_ctx_retain;
    cu_ctx_set_current_t ctx_set_current;
    cu_ctx_synchronize_t ctx_synchronize;
    cu_mem_alloc_t mem_alloc;
    cu_mem_free_t mem_free;
    cu_memcpy_htod_t memcpy_htod;
    cu_memcpy_dtoh_t memcpy_dtoh;
    cu_module_load_data_t module_load_data;
    cu_module_get_function_t module_get_function;
    cu_launch_kernel_t launch_kernel;
} compute;

static int open_compute(char *message, size_t capacity) {
    if (compute.loaded) return 0;
    if (vae_cuda_open(message, capacity) != 0) return -1;
    LOAD(compute, primary_ctx_retain, "cuDevicePrimaryCtxRetain")
    LOAD(compute, ctx_set_current, "cuCtxSetCurrent")
    LOAD(compute, ctx_synchronize, "cuCtxSynchronize")
    LOAD(compute, mem_alloc, "cuMemAlloc_v2")
    LOAD(compute, mem_free, "cuMemFree_v2")
    LOAD(compute, memcpy_htod, "cuMemcpyHtoD_v2")
    LOAD(compute, memcpy_dtoh, "cuMemcpyDtoH_v2")
    LOAD(compute, module_load_data, "cuModuleLoadData")
    LOAD(compute, module_get_function, "cuModuleGetFunction")
    LOAD(compute, launch_kernel, "cuLaunchKernel")
    compute.loaded = 1;
    return 0;
}

#define CALL(expression, name) \
    do { \
        int status_ = (expression); \
        if (status_ != 0) { describe(status_, name, message, capacity); return -1; } \
    } while (0)

int vae_cuda_use_device(int ordinal, char *message, size_t capacity) {
    if (open_compute(message, capacity) != 0) return -1;
    int device = 0;
    void *context = NULL;
    CALL(cuda.device_get(&device, ordinal), "cuDeviceGet");
    CALL(compute.primary_ctx_retain(&context, device), "cuDevicePrimaryCtxRetain");
    CALL(compute.ctx_set_current(context), "cuCtxSetCurrent");
    return 0;
}

int vae_cuda_alloc(size_t bytes, unsigned long long *pointer, char *message, size_t capacity) {
    if (open_compute(message, capacity) != 0) return -1;
    CALL(compute.mem_alloc(pointer, bytes ? bytes : 1), "cuMemAlloc");
    return 0;
}

void vae_cuda_free(unsigned long long pointer) {
    if (compute.loaded && pointer) compute.mem_free(pointer);
}

int vae_cuda_upload(unsigned long long device, const void *host, size_t bytes, char *message, size_t capacity) {
    if (!bytes) return 0;
    CALL(compute.memcpy_htod(device, host, bytes), "cuMemcpyHtoD");
    return 0;
}

int vae_cuda_download(void *host, unsigned long long device, size_t bytes, char *message, size_t capacity) {
    if (!bytes) return 0;
    CALL(compute.memcpy_dtoh(host, device, bytes), "cuMemcpyDtoH");
    return 0;
}

int vae_cuda_load_module(const void *image, void **module, char *message, size_t capacity) {
    if (open_compute(message, capacity) != 0) return -1;
    int status = compute.module_load_data(module, image);
    if (status != 0) describe(status, "cuModuleLoadData", message, capacity);
    return status;
}

int vae_cuda_function(void *module, const char *name, void **function, char *message, size_t capacity) {
    CALL(compute.module_get_function(function, module, name), name);
    return 0;
}

int vae_cuda_launch(void *function, unsigned grid, unsigned block, unsigned shared_bytes, void **arguments, char *message,
                    size_t capacity) {
    CALL(compute.launch_kernel(function, grid, 1, 1, block, 1, 1, shared_bytes, NULL, arguments, NULL), "cuLaunchKernel");
    return 0;
}

int vae_cuda_synchronize(char *message, size_t capacity) {
    CALL(compute.ctx_synchronize(), "cuCtxSynchronize");
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Measuring (vae bench): events, memory, attributes — loaded on first use, so a driver without
// them still trains.

typedef int (*cu_event_create_t)(void **, unsigned);
typedef int (*cu_event_record_t)(void *, void *);
typedef int (*cu_event_synchronize_t)(void *);
typedef int (*cu_event_elapsed_time_t)(float *, void *, void *);
typedef int (*cu_event_destroy_t)(void *);
typedef int (*cu_mem_get_info_t)(size_t *, size_t *);

static struct {
    int loaded;
    cu_event_create_t event_create;
    cu_event_record_t event_record;
    cu_event_synchronize_t event_synchronize;
    cu_event_elapsed_time_t event_elapsed_time;
    cu_event_destroy_t event_destroy;
    cu_mem_get_info_t mem_get_info;
} measure;

static int open_measure(char *message, size_t capacity) {
    if (measure.loaded) return 0;
    if (open_compute(message, capacity) != 0) return -1;
    LOAD(measure, event_create, "cuEventCreate")
    LOAD(measure, event_record, "cuEventRecord")
    LOAD(measure, event_synchronize, "cuEventSynchronize")
    // CUDA 12.8 added cuEventElapsedTime_v2; older drivers have only the first version.
    measure.event_elapsed_time = (cu_event_elapsed_time_t)dlsym(cuda.library, "cuEventElapsedTime_v2");
    if (!measure.event_elapsed_time) LOAD(measure, event_elapsed_time, "cuEventElapsedTime")
    LOAD(measure, event_destroy, "cuEventDestroy_v2")
    LOAD(measure, mem_get_info, "cuMemGetInfo_v2")
    measure.loaded = 1;
    return 0;
}

int vae_cuda_event_create(void **event, char *message, size_t capacity) {
    if (open_measure(message, capacity) != 0) return -1;
    CALL(measure.event_create(event, 0), "cuEventCreate");
    return 0;
}

int vae_cuda_event_record(void *event, char *message, size_t capacity) {
    CALL(measure.event_record(event, NULL), "cuEventRecord");
    return 0;
}

int vae_cuda_event_elapsed(float *milliseconds, void *start, void *end, char *message, size_t capacity) {
    CALL(measure.event_synchronize(end), "cuEventSynchronize");
    CALL(measure.event_elapsed_time(milliseconds, start, end), "cuEventElapsedTime");
    return 0;
}

void vae_cuda_event_destroy(void *event) {
    if (measure.loaded && event) measure.event_destroy(event);
}

int vae_cuda_memory(size_t *free, size_t *total, char *message, size_t capacity) {
    if (open_measure(message, capacity) != 0) return -1;
    CALL(measure.mem_get_info(free, total), "cuMemGetInfo");
    return 0;
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs (a training step as one launch): built node by node — kernel nodes, and child
// graphs captured from a stream for the cuBLAS products —, instantiated, their kernel nodes'
// arguments updated in place, launched on the default stream. Loaded on first use; a driver
// without them trains with plain launches.

// CUDA_KERNEL_NODE_PARAMS (the _v2 layout of cuda.h, CUDA 12 and 13).
struct kernel_node_params {
    void *func;
    unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes;
    void **kernel_params;
    void **extra;
    void *kern;
    void *ctx;
};

typedef int (*cu_stream_create_t)(void **, unsigned);
typedef int (*cu_stream_begin_capture_t)(void *, int);
typedef int (*cu_stream_end_capture_t)(void *, void **);
typedef int (*cu_graph_create_t)(void **, unsigned);
typedef int (*cu_graph_add_kernel_node_t)(void **, void *, void **, size_t, const struct kernel_node_params *);
typedef int (*cu_graph_add_child_graph_node_t)(void **, void *, void **, size_t, void *);
typedef int (*cu_graph_instantiate_t)(void **, void *, unsigned long long);
typedef int (*cu_graph_exec_kernel_node_set_params_t)(void *, void *, const struct kernel_node_params *);
typedef int (*cu_graph_launch_t)(void *, void *);
typedef int (*cu_graph_destroy_t)(void *);

static struct {
    int loaded;
    cu_stream_create_t stream_create;
    cu_stream_begin_capture_t stream_begin_capture;
    cu_stream_end_capture_t stream_end_capture;
    cu_graph_create_t graph_create;
    cu_graph_add_kernel_node_t add_kernel_node;
    cu_graph_add_child_graph_node_t add_child_graph_node;
    cu_graph_instantiate_t instantiate;
    cu_graph_exec_kernel_node_set_params_t set_kernel_params;
    cu_graph_launch_t launch;
    cu_graph_destroy_t graph_destroy;
    cu_graph_destroy_t exec_destroy;
} graphs;

static int open_graphs(char *message, size_t capacity) {
    if (graphs.loaded) return 0;
    if (open_compute(message, capacity) != 0) return -1;
    LOAD(graphs, stream_create, "cuStreamCreate")
    LOAD(graphs, stream_begin_capture, "cuStreamBeginCapture_v2")
    LOAD(graphs, stream_end_capture, "cuStreamEndCapture")
    LOAD(graphs, graph_create, "cuGraphCreate")
    LOAD(graphs, add_kernel_node, "cuGraphAddKernelNode_v2")
    LOAD(graphs, add_child_graph_node, "cuGraphAddChildGraphNode")
    LOAD(graphs, instantiate, "cuGraphInstantiateWithFlags")
    LOAD(graphs, set_kernel_params, "cuGraphExecKernelNodeSetParams_v2")
    LOAD(graphs, launch, "cuGraphLaunch")
    LOAD(graphs, graph_destroy, "cuGraphDestroy")
    LOAD(graphs, exec_destroy, "cuGraphExecDestroy")
    graphs.loaded = 1;
    return 0;
}

int vae_cuda_graph_create(void **graph, char *message, size_t capacity) {
    if (open_graphs(message, capacity) != 0) return -1;
    CALL(graphs.graph_create(graph, 0), "cuGraphCreate");
    return 0;
}

static struct kernel_node_params kernel_params(void *function, unsigned grid, unsigned block, unsigned shared_bytes, void **arguments) {
    struct kernel_node_params p = {function, grid, 1, 1, block, 1, 1, shared_bytes, arguments, NULL, NULL, NULL};
    return p;
}

int vae_cuda_graph_add_kernel(void *graph, void **node, void **after, size_t count, void *function, unsigned grid, unsigned block,
                              unsigned shared_bytes, void **arguments, char *message, size_t capacity) {
    struct kernel_node_params p = kernel_params(function, grid, block, shared_bytes, arguments);
    CALL(graphs.add_kernel_node(node, graph, count ? after : NULL, count, &p), "cuGraphAddKernelNode");
    return 0;
}

int vae_cuda_capture_stream(void **stream, char *message, size_t capacity) {
    if (open_graphs(message, capacity) != 0) return -1;
    // CU_STREAM_NON_BLOCKING: the default stream's work never waits on it (or breaks its capture).
    CALL(graphs.stream_create(stream, 1), "cuStreamCreate");
    return 0;
}

int vae_cuda_capture_begin(void *stream, char *message, size_t capacity) {
    CALL(graphs.stream_begin_capture(stream, 2 /* CU_STREAM_CAPTURE_MODE_RELAXED */), "cuStreamBeginCapture");
    return 0;
}

int vae_cuda_capture_end(void *stream, void **graph, char *message, size_t capacity) {
    CALL(graphs.stream_end_capture(stream, graph), "cuStreamEndCapture");
    return 0;
}

int vae_cuda_graph_add_child(void *graph, void **node, void **after, size_t count, void *child, char *message, size_t capacity) {
    CALL(graphs.add_child_graph_node(node, graph, count ? after : NULL, count, child), "cuGraphAddChildGraphNode");
    return 0;
}

int vae_cuda_graph_instantiate(void *graph, void **executable, char *message, size_t capacity) {
    CALL(graphs.instantiate(executable, graph, 0), "cuGraphInstantiate");
    return 0;
}

int vae_cuda_graph_set_kernel(void *executable, void *node, void *function, unsigned grid, unsigned block, unsigned shared_bytes,
                              void **arguments, char *message, size_t capacity) {
    struct kernel_node_params p = kernel_params(function, grid, block, shared_bytes, arguments);
    CALL(graphs.set_kernel_params(executable, node, &p), "cuGraphExecKernelNodeSetParams");
    return 0;
}

int vae_cuda_graph_launch(void *executable, char *message, size_t capacity) {
    CALL(graphs.launch(executable, NULL), "cuGraphLaunch");
    return 0;
}

void vae_cuda_graph_destroy(void *graph, void *executable) {
    if (!graphs.loaded) return;
    if (executable) graphs.exec_destroy(executable);
    if (graph) graphs.graph_destroy(graph);
}

int vae_cuda_attribute(int ordinal, int attribute, int *value, char *message, size_t capacity) {
    if (vae_cuda_open(message, capacity) != 0) return -1;
    int device = 0;
    CALL(cuda.device_get(&device, ordinal), "cuDeviceGet");
    CALL(cuda.device_get_attribute(value, attribute, device), "cuDeviceGetAttribute");
    return 0;
}
#undef CALL
