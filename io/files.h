// Writing files so that a reader never sees half of one, and making directories.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "tensor/error.h"

// Writes size bytes to a temporary file next to path (path.tmp-<pid>-<n>), fsyncs it, renames it
// over path and fsyncs the directory: a reader sees the old file or the whole new one, and a kill
// at any moment leaves path as it was. Temporary files of writers that were killed mid-write
// (their pid runs no more) are removed first, with a line on stderr. Messages start with
// "<what> '<path>'" (what: "checkpoint", "results file", ...). On failure the temporary is removed.
petal_status file_write_atomic(const char *path, const void *data, size_t size, const char *what);

// mkdir -p: path and every missing parent. An existing directory is fine; a file in the way is an
// error naming it.
petal_status file_make_dirs(const char *path);

// Where a generator writes a set of files: dir must be missing or empty, unless force (then the
// set's own files are replaced and others left). The refusal names dir and `option`, the field
// that forces (e.g. "synth_options.force").
petal_status file_dir_writable(const char *dir, bool force, const char *option);
