#!/usr/bin/env bash
# Fast development build: compiles into build/dev (incremental, no pip, no isolation)
# and drops the libraries next to the sources, so `PYTHONPATH=python pytest` runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${FUSEDLAYERS_BUILD_DIR:-build/dev}
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "$@"
fi
cmake --build "$build_dir"
# Each library is copied beside its destination and renamed over it: a process that has
# the old one loaded keeps its (unlinked) file instead of reading a half-written one.
for f in "$build_dir"/_fused_ops.so "$build_dir"/_native*.so "$build_dir"/_build_config.py; do
  cp "$f" "python/fusedlayers/.$(basename "$f").tmp"
  mv -f "python/fusedlayers/.$(basename "$f").tmp" "python/fusedlayers/$(basename "$f")"
done
