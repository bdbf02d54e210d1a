#!/usr/bin/env bash
# The install test (CTest `install`, label "install"): installs the build in BUILD_DIR into a
# temporary prefix and builds programs against that tree alone, the ways README "Using petal in
# your program" gives: every installed header on its own as C11 -pedantic; the examples and a C++17
# program with a plain Makefile and pkg-config; a CMake project with find_package(petal). The
# programs run and must succeed. Needs no network; takes about half a minute.
#     bash tests/install/install_test.sh BUILD_DIR
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

fail() {
    echo "install test: $*" >&2
    exit 1
}

cmake --install "$build" --prefix "$prefix" >"$work/install.log"

# What the tree holds: both libraries, the SONAME of the project version, the headers in their
# folders (not the kernels'), the package files, the command, configs and docs.
version=$(sed -n 's/^project(petal VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
soversion=$(echo "$version" | awk -F. '$1 == 0 { print $1 "." $2; next } { print $1 }')
shared=$(find "$prefix" -name "libpetal.so.$version")
[ -n "$shared" ] || fail "no libpetal.so.$version under $prefix"
libdir=$(dirname "$shared")
soname=$(readelf -d "$shared" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libpetal.so.$soversion" ] || fail "SONAME is '$soname', expected libpetal.so.$soversion"
for f in "$libdir/libpetal.a" "$libdir/pkgconfig/petal.pc" "$libdir/cmake/petal/petalConfig.cmake" \
    "$prefix/include/petal/petal.h" "$prefix/include/petal/tensor/tensor.h" \
    "$prefix/include/petal/models/blip/blip.h" "$prefix/share/petal/configs/retrieval_coco.yaml" \
    "$prefix/share/doc/petal/reference.md" "$prefix/bin/petal"; do
    [ -f "$f" ] || fail "$f is not installed"
done
for f in tensor/cpu tensor/cuda ops/internal.h petl/internal.h; do
    [ ! -e "$prefix/include/petal/$f" ] || fail "include/petal/$f is private but installed"
done
# The shared library exports petal's API alone (cmake/exports.cmake): every defined dynamic
# symbol carries a prefix of cmake/petal-exports.txt, so none of the internal helpers (zip_open,
# json_parse, cpu_*, stb's) can collide with another library's names.
allowed=$(grep -E '^[A-Za-z_]' "$src/cmake/petal-exports.txt" | paste -sd'|')
nm -D --defined-only "$shared" | awk '{ print $NF }' >"$work/exports.txt"
[ -s "$work/exports.txt" ] || fail "nm -D lists no symbols in $shared"
if grep -Ev "^($allowed)(_.*)?\$" "$work/exports.txt" >"$work/foreign.txt"; then
    fail "libpetal.so exports $(wc -l <"$work/foreign.txt") names outside cmake/petal-exports.txt's" \
        "prefixes: $(head -20 "$work/foreign.txt" | paste -sd' ')"
fi
# cuBLAS and NCCL are opened on first use (docs/cuda.md "Libraries loaded on first use"): neither
# the library nor the command needs them at start.
for f in "$shared" "$prefix/bin/petal"; do
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    grep -q '^libc\.so' <<<"$needed" || fail "readelf -d lists no libc among $f's NEEDED entries"
    if lazy=$(grep -E '^lib(cublas|nccl)' <<<"$needed"); then
        fail "$f needs $(paste -sd' ' <<<"$lazy") at start"
    fi
done
"$prefix/bin/petal" help >"$work/help.txt" || fail "the installed petal command failed"
grep -q gradcheck "$work/help.txt" || fail "petal help does not list gradcheck"

# Each installed header compiles alone as strict C11 with nothing but petal.pc's flags, and all
# of them as C++17 -pedantic inside the extern "C" a C++ caller of single headers writes (petal.h
# has its own). One C++ unit for all: the C++ library headers cost more to parse than petal's.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags petal)
(cd "$prefix/include/petal" && find . -name '*.h' | sed 's|^\./||' | sort) >"$work/headers.txt"
printf '#include <math.h>\n#include <pthread.h>\nextern "C" {\n' >"$work/headers.cpp"
while read -r h; do
    echo "#include \"$h\"" >"$work/header.c"
    echo "#include \"$h\"" >>"$work/headers.cpp"
    # shellcheck disable=SC2086
    cc -std=c11 -Wall -Wextra -pedantic -Werror $cflags -fsyntax-only "$work/header.c" ||
        fail "installed header $h does not compile on its own (C11, -pedantic)"
done <"$work/headers.txt"
echo "}" >>"$work/headers.cpp"
# shellcheck disable=SC2086
c++ -std=c++17 -Wall -Wextra -pedantic -Werror $cflags -fsyntax-only "$work/headers.cpp" ||
    fail "the installed headers do not compile as C++17"

cd "$work"
# A plain Makefile with pkg-config: the examples and the C++17 consumer on libpetal.so.
mkdir make
make -s -C "$src/tests/install/consumer" OUT="$work/make" \
    EXAMPLES="$(echo "$src"/examples/*.c)" >make.log 2>&1 || {
    cat make.log
    fail "the Makefile build against the installed tree failed"
}
./make/01_autodiff >autodiff.txt || fail "01_autodiff built with pkg-config failed"
./make/consumer_cpp || fail "the C++ consumer built with pkg-config failed"
# ldd's output is read whole first: `ldd | grep -q` under pipefail fails whenever grep's early
# exit makes ldd die of SIGPIPE, a match or not.
libs="$(ldd make/consumer_cpp)"
grep -q "libpetal.so.$soversion => $libdir/" <<<"$libs" ||
    fail "the C++ consumer does not load the installed libpetal.so.$soversion"

# A CMake project with find_package(petal): petal::petal and petal::petal_static.
cmake -S "$src/tests/install/consumer" -B cmake-build -DCMAKE_PREFIX_PATH="$prefix" \
    -DPETAL_EXAMPLE="$src/examples/01_autodiff.c" >cmake.log 2>&1 || {
    cat cmake.log
    fail "configuring a project with find_package(petal) failed"
}
cmake --build cmake-build -j2 >>cmake.log 2>&1 || {
    cat cmake.log
    fail "building against petal::petal failed"
}
./cmake-build/consumer_cpp || fail "the C++ consumer built with CMake failed"
./cmake-build/example_static >autodiff.txt || fail "01_autodiff on petal::petal_static failed"
libs="$(ldd cmake-build/example_static)"
if grep -q libpetal <<<"$libs"; then
    fail "example_static links libpetal.so, not libpetal.a"
fi
echo "install test: passed ($(wc -l <headers.txt) headers; pkg-config and CMake consumers ran)"
