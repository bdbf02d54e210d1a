#include "io/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

petal_status file_map_open(const char *path, file_map *m) {
    *m = (file_map){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    petal_status st = PETAL_OK;
    if (fstat(fd, &sb) != 0) {
        st = petal_error(PETAL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = petal_error(PETAL_ERR_IO, "cannot read '%s': not a regular file", path);
    } else if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            st = petal_error(PETAL_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        else
            *m = (file_map){p, (size_t)sb.st_size};
    }
    close(fd);
    return st;
}

void file_map_close(file_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    *m = (file_map){0};
}

petal_status file_map_read_tensors(const char *path, tensor_list *out,
                                   petal_status (*read_memory)(const char *path,
                                                               const uint8_t *data, size_t size,
                                                               tensor_list *out)) {
    file_map m;
    tensor_list_init(out);
    petal_status st = file_map_open(path, &m);
    if (st != PETAL_OK) return st;
    st = read_memory(path, m.data, m.size, out);
    file_map_close(&m);
    return st;
}
