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
cp "$build_dir"/_fused_ops.so "$build_dir"/_native*.so "$build_dir"/_build_config.py python/fusedlayers/
