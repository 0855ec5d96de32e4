// The CUDA driver API, loaded at run time: the few entry points a device query needs, declared
// here with the driver's documented signatures (CUresult and CUdevice are ints), so that the
// build needs neither CUDA's headers nor its libraries.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "CCUDA.h"

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
#define LOAD(field, symbol) \
    if (!(cuda.field = (void *)dlsym(cuda.library, symbol))) { \
        snprintf(message, capacity, "libcuda.so.1 lacks %s: the NVIDIA driver is too old", symbol); \
        return -1; \
    }
    LOAD(init, "cuInit")
    LOAD(driver_get_version, "cuDriverGetVersion")
    LOAD(device_get_count, "cuDeviceGetCount")
    LOAD(device_get, "cuDeviceGet")
    LOAD(device_get_name, "cuDeviceGetName")
    LOAD(device_total_mem, "cuDeviceTotalMem_v2")
    LOAD(device_get_attribute, "cuDeviceGetAttribute")
    LOAD(get_error_string, "cuGetErrorString")
#undef LOAD
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
