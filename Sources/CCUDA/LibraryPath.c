#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include "CCUDA.h"

int vae_library_path(void *handle, char *path, size_t capacity) {
    struct link_map *map = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || !map || !map->l_name || !map->l_name[0]) return -1;
    snprintf(path, capacity, "%s", map->l_name);
    return 0;
}
