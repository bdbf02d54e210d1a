#include "io/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/buffer.h"

// The directory part of path ("." when it has none), malloc'd.
static char *dir_of(const char *path) {
    char *dir = buffer_strndup(path, strlen(path));
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    return dir;
}

// Removes path.tmp-<pid>-<n> files whose writer's pid runs no more (a live writer's is left).
static void remove_stale_temps(const char *path, const char *what) {
    char *dir = dir_of(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(base);
    DIR *d = opendir(dir);
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
                    "petal: %s '%s': removed '%s', left by a writer (pid %ld) that stopped "
                    "mid-save\n",
                    what, path, stale.data, pid);
        strbuf_free(&stale);
    }
    if (d) closedir(d);
    free(dir);
}

// A new empty file next to `path`, created with the permissions a plain create would give.
static int create_temp(const char *path, char **tmp) {
    size_t n = strlen(path) + 48;
    *tmp = buffer_alloc(n, "file_write_atomic");
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(*tmp, n, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

static petal_status write_all(int fd, const char *path, const char *what, const char *tmp,
                              const uint8_t *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return petal_error(PETAL_ERR_IO, "%s '%s': cannot write '%s': %s", what, path, tmp,
                               n < 0 ? strerror(errno) : "no progress");
        data += n;
        size -= (size_t)n;
    }
    return fsync(fd) == 0 ? PETAL_OK
                          : petal_error(PETAL_ERR_IO, "%s '%s': cannot sync '%s': %s", what, path,
                                        tmp, strerror(errno));
}

static petal_status sync_directory_of(const char *path, const char *what) {
    char *dir = dir_of(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    petal_status st = PETAL_OK;
    if (fd < 0 || fsync(fd) != 0)
        st = petal_error(PETAL_ERR_IO, "%s '%s': cannot sync directory '%s': %s", what, path, dir,
                         strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

petal_status file_write_atomic(const char *path, const void *data, size_t size, const char *what) {
    remove_stale_temps(path, what);
    char *tmp;
    int fd = create_temp(path, &tmp);
    if (fd < 0) {
        petal_status st = petal_error(
            PETAL_ERR_IO, "%s '%s': cannot create a temporary file in its directory: %s", what,
            path, strerror(errno));
        free(tmp);
        return st;
    }
    petal_status st = write_all(fd, path, what, tmp, data, size);
    close(fd);
    if (st == PETAL_OK && rename(tmp, path) != 0)
        st = petal_error(PETAL_ERR_IO, "%s '%s': cannot rename '%s' over it: %s", what, path, tmp,
                         strerror(errno));
    if (st != PETAL_OK)
        unlink(tmp);
    else
        st = sync_directory_of(path, what);
    free(tmp);
    return st;
}

static petal_status make_dir(const char *path) {
    if (mkdir(path, 0777) == 0) return PETAL_OK;
    int err = errno;
    struct stat sb;
    if (err == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return PETAL_OK;
    return petal_error(PETAL_ERR_IO, "cannot create the directory '%s': %s", path,
                       err == EEXIST ? "a file has that name" : strerror(err));
}

petal_status file_make_dirs(const char *path) {
    size_t n = strlen(path);
    char *p = buffer_strndup(path, n);
    petal_status st = PETAL_OK;
    for (size_t i = 1; i <= n && !st; i++) {
        char was = p[i];
        if (was != '/' && was != '\0') continue;
        p[i] = '\0';
        st = make_dir(p);
        p[i] = was;
    }
    free(p);
    return st;
}

petal_status file_dir_writable(const char *dir, bool force, const char *option) {
    if (!*dir) return petal_error(PETAL_ERR_ARG, "expected a directory to write into, found ''");
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? PETAL_OK
                               : petal_error(PETAL_ERR_IO, "cannot write the set into '%s': %s",
                                             dir, strerror(errno));
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(d));)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (empty || force) return PETAL_OK;
    return petal_error(PETAL_ERR_ARG,
                       "'%s' exists and is not empty; --force (%s) writes the set into it, "
                       "replacing only the set's own files",
                       dir, option);
}
