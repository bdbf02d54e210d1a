#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/fingerprint.h"
#include "io/h5_file.h"

const char *checkpoint_kind_name(checkpoint_kind kind) {
    return kind == CHECKPOINT_PETL ? "petl" : "full";
}

// "a.b.c" -> "/a/b/c" (malloc'd), or NULL when a component is empty or holds a '/'.
static char *name_to_path(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || name[0] == '.' || name[n - 1] == '.' || strstr(name, "..") || strchr(name, '/'))
        return NULL;
    char *path = buffer_alloc(n + 2, "checkpoint");
    path[0] = '/';
    for (size_t i = 0; i <= n; i++) path[i + 1] = name[i] == '.' ? '/' : name[i];
    return path;
}

// The header covers every byte after the user block, so a damaged file is refused before libhdf5
// parses any of it (io/checkpoint_read.c).
void checkpoint_seal(uint8_t *image, size_t size) {
    fingerprint_state s;
    fingerprint_init(&s);
    fingerprint_bytes(&s, image + CHECKPOINT_HEADER_SIZE, size - CHECKPOINT_HEADER_SIZE);
    memset(image, 0, CHECKPOINT_HEADER_SIZE);
    snprintf((char *)image, CHECKPOINT_HEADER_SIZE,
             CHECKPOINT_MAGIC "size %zu\nhash %016" PRIx64 "\n", size, fingerprint_final(&s));
}

// ---- writing ----

typedef struct {
    int n;
    const param_entry **items; // in ascending name order
} entry_set;

// The entries a file of `kind` holds, sorted by name.
static entry_set select_entries(const param_registry *r, checkpoint_kind kind) {
    entry_set set = {0, buffer_alloc((size_t)r->n * sizeof(param_entry *), "checkpoint")};
    const char **names = buffer_alloc((size_t)r->n * sizeof *names, "checkpoint");
    const param_entry **unsorted = buffer_alloc((size_t)r->n * sizeof *unsorted, "checkpoint");
    for (int i = 0; i < r->n; i++) {
        if (kind == CHECKPOINT_PETL && !r->items[i].trainable) continue;
        names[set.n] = r->items[i].name;
        unsorted[set.n++] = &r->items[i];
    }
    int *order = fingerprint_order(set.n, names);
    for (int i = 0; i < set.n; i++) set.items[i] = unsorted[order[i]];
    free(order);
    free(unsorted);
    free(names);
    return set;
}

static petal_status write_dataset(hid_t file, hid_t lcpl, hid_t dcpl, const char *path,
                                  const param_entry *e) {
    char *h5path = name_to_path(e->name);
    tensor *host = tensor_host_contiguous(e->value);
    hsize_t dims[PETAL_MAX_DIMS];
    for (int d = 0; d < host->ndim; d++) dims[d] = (hsize_t)host->shape[d];
    hid_t space = host->ndim ? H5Screate_simple(host->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ftype = h5_type(host->dtype, true), mtype = h5_type(host->dtype, false);
    hid_t dset = H5Dcreate2(file, h5path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    int one = 1;
    petal_status st = PETAL_OK;
    if (dset < 0)
        st = petal_error(PETAL_ERR_KEY,
                         "checkpoint '%s': cannot create dataset '%s' for '%s' (is a prefix of "
                         "this name also a tensor?): %s",
                         path, h5path, e->name, h5_reason());
    else if (H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor_data(host)) < 0 ||
             (e->buffer && !h5_write_scalar_attr(dset, "buffer", H5T_STD_I32LE, &one)))
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot write '%s': %s", path, e->name,
                         h5_reason());
    if (dset >= 0) H5Dclose(dset);
    H5Tclose(ftype);
    H5Tclose(mtype);
    H5Sclose(space);
    tensor_free(host);
    free(h5path);
    return st;
}

typedef struct {
    checkpoint_kind kind;
    const char *config, *vocab;
    uint64_t fingerprint;
} file_attrs;

static petal_status write_attrs(hid_t file, const char *path, const file_attrs *a) {
    int version = CHECKPOINT_FORMAT_VERSION;
    bool ok = h5_write_scalar_attr(file, "petal_format_version", H5T_STD_I32LE, &version) &&
              h5_write_string_attr(file, "kind", checkpoint_kind_name(a->kind)) &&
              h5_write_string_attr(file, "config", a->config) &&
              (!a->vocab || h5_write_string_attr(file, "vocab", a->vocab)) &&
              h5_write_scalar_attr(file, "fingerprint", H5T_STD_U64LE, &a->fingerprint);
    return ok ? PETAL_OK
              : petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot write the root attributes: %s",
                            path, h5_reason());
}

// Writes the datasets (in name order, so the file does not depend on registration order) and
// the attributes; a FULL file's fingerprint is computed on the way.
static petal_status write_contents(hid_t file, const char *path, const entry_set *set,
                                   file_attrs *a) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    H5Pset_obj_track_times(dcpl, 0); // no timestamps: the same tensors give the same bytes
    fingerprint_state own;
    fingerprint_init(&own);
    petal_status st = PETAL_OK;
    for (int i = 0; i < set->n && st == PETAL_OK; i++) {
        const param_entry *e = set->items[i];
        st = write_dataset(file, lcpl, dcpl, path, e);
        if (a->kind == CHECKPOINT_FULL && !e->buffer) fingerprint_tensor(&own, e->name, e->value);
    }
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (a->kind == CHECKPOINT_FULL) a->fingerprint = fingerprint_final(&own);
    return st == PETAL_OK ? write_attrs(file, path, a) : st;
}

// Builds the sealed file in memory: *image (malloc'd, *size bytes) on success. Building it there
// and writing it out with plain write() means a failing disk never leaves HDF5 holding a file it
// cannot close. The copy out of HDF5 briefly doubles the file's memory.
static petal_status build_image(const char *path, const entry_set *set, file_attrs *a,
                                uint8_t **image, size_t *size) {
    hid_t file = h5_create_in_memory(path, CHECKPOINT_HEADER_SIZE);
    if (file < 0)
        return petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot create an HDF5 file: %s", path,
                           h5_reason());
    petal_status st = write_contents(file, path, set, a);
    // The image HDF5 hands out starts after the user block (its addresses count from there).
    ssize_t n = st == PETAL_OK && H5Fflush(file, H5F_SCOPE_LOCAL) >= 0
                    ? H5Fget_file_image(file, NULL, 0)
                    : -1;
    if (n > 0) {
        *size = CHECKPOINT_HEADER_SIZE + (size_t)n;
        *image = buffer_alloc(*size, "checkpoint_save");
        if (H5Fget_file_image(file, *image + CHECKPOINT_HEADER_SIZE, (size_t)n) != n) n = -1;
    }
    if (st == PETAL_OK && n <= 0)
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot finish the HDF5 file: %s", path,
                         h5_reason());
    H5Fclose(file);
    if (st == PETAL_OK) checkpoint_seal(*image, *size);
    return st;
}

// Removes `path.tmp-<pid>-<n>` files that a writer killed mid-save left behind: those whose pid
// runs no more (a live writer's file is left alone). Each removal is reported on stderr.
static void remove_stale_temps(const char *path) {
    char *dir = buffer_strndup(path, strlen(path));
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        strcpy(dir, ".");
    DIR *d = opendir(dir);
    size_t n = strlen(base);
    for (struct dirent *e; d && (e = readdir(d));) {
        long pid;
        int attempt, used = 0;
        if (strncmp(e->d_name, base, n) != 0 ||
            sscanf(e->d_name + n, ".tmp-%ld-%d%n", &pid, &attempt, &used) != 2 ||
            e->d_name[n + (size_t)used] != '\0' || pid <= 0 || pid == (long)getpid() ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        strbuf stale = {0};
        strbuf_printf(&stale, "%s/%s", dir, e->d_name);
        if (unlink(stale.data) == 0)
            fprintf(stderr,
                    "petal: checkpoint '%s': removed '%s', left by a writer (pid %ld) that "
                    "stopped mid-save\n",
                    path, stale.data, pid);
        strbuf_free(&stale);
    }
    if (d) closedir(d);
    free(dir);
}

// A new empty file next to `path`, created with the permissions a plain create would give.
static int create_temp(const char *path, char **tmp) {
    remove_stale_temps(path);
    size_t n = strlen(path) + 48;
    *tmp = buffer_alloc(n, "checkpoint_save");
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(*tmp, n, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

static petal_status write_all(int fd, const char *path, const char *tmp, const uint8_t *data,
                              size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot write '%s': %s", path, tmp,
                               n < 0 ? strerror(errno) : "no progress");
        data += n;
        size -= (size_t)n;
    }
    return fsync(fd) == 0 ? PETAL_OK
                          : petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot sync '%s': %s", path,
                                        tmp, strerror(errno));
}

static petal_status sync_directory_of(const char *path) {
    char *dir = buffer_strndup(path, strlen(path));
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    petal_status st = PETAL_OK;
    if (fd < 0 || fsync(fd) != 0)
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot sync directory '%s': %s", path, dir,
                         strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

// Temporary file in the same directory, write, fsync, rename over path, fsync the directory.
static petal_status save_atomically(const char *path, const uint8_t *image, size_t size) {
    char *tmp;
    int fd = create_temp(path, &tmp);
    if (fd < 0) {
        petal_status st = petal_error(
            PETAL_ERR_IO, "checkpoint '%s': cannot create a temporary file in its directory: %s",
            path, strerror(errno));
        free(tmp);
        return st;
    }
    petal_status st = write_all(fd, path, tmp, image, size);
    close(fd);
    if (st == PETAL_OK && rename(tmp, path) != 0)
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot rename '%s' over it: %s", path, tmp,
                         strerror(errno));
    if (st != PETAL_OK)
        unlink(tmp);
    else
        st = sync_directory_of(path);
    free(tmp);
    return st;
}

petal_status checkpoint_save(const char *path, const param_registry *r, checkpoint_kind kind,
                             const checkpoint_meta *meta) {
    for (int i = 0; i < r->n; i++) {
        char *h5path = name_to_path(r->items[i].name);
        if (!h5path)
            return petal_error(PETAL_ERR_KEY,
                               "checkpoint '%s': cannot store '%s': names are dot-separated "
                               "non-empty components without '/'",
                               path, r->items[i].name);
        free(h5path);
    }
    file_attrs a = {.kind = kind,
                    .config = meta && meta->config ? meta->config : "{}",
                    .vocab = meta ? meta->vocab : NULL};
    if (kind == CHECKPOINT_PETL) a.fingerprint = checkpoint_fingerprint(r);
    entry_set set = select_entries(r, kind);
    uint8_t *image = NULL;
    size_t size = 0;
    h5_quiet q = h5_quiet_begin();
    petal_status st = build_image(path, &set, &a, &image, &size);
    h5_quiet_end(q);
    free(set.items);
    if (st != PETAL_OK) return st;
    st = save_atomically(path, image, size);
    free(image);
    return st;
}
