#!/usr/bin/env bash
# Builds the op library and _native with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option FUSEDLAYERS_SANITIZE, into build/asan) and runs the op tests against it.
#
#   tools/run_sanitized_tests.sh                      # the default op test set below
#   tools/run_sanitized_tests.sh tests/test_fuzz.py   # or any pytest arguments
#
# The sanitized package is staged in build/asan/stage (the dev build in python/ is left
# alone). Python itself is not instrumented, so the ASan runtime must be the first library
# loaded: it is LD_PRELOADed (with UBSan's) into python and every child it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=build/asan
stage=$build_dir/stage
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUSEDLAYERS_SANITIZE=ON \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)"
fi
cmake --build "$build_dir"
rm -rf "$stage"
mkdir -p "$stage"
cp -r python/fusedlayers "$stage/"
rm -f "$stage"/fusedlayers/*.so
cp "$build_dir"/_fused_ops.so "$build_dir"/_native*.so "$build_dir"/_build_config.py "$stage/fusedlayers/"

LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD
# detect_leaks=0: CPython and TensorFlow keep interned objects, registries and thread
#   pools alive until exit by design; LeakSanitizer reports thousands of those, none ours
#   (memory growth of our ops is covered by tests/test_endurance.py instead).
# allocator_may_return_null=1, max_allocation_size_mb: the fuzz cases ask for huge (but
#   representable) outputs; the allocator must refuse them (TF then raises
#   ResourceExhaustedError) rather than ASan aborting the process.
# halt_on_error / abort_on_error: any report fails the run.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=4096:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
export TF_CPP_MIN_LOG_LEVEL=3

if [ $# -eq 0 ]; then
  set -- tests/test_dense_op.py tests/test_conv2d.py tests/test_conv2d_transpose.py \
    tests/test_conv_native.py tests/test_engine.py tests/test_error_messages.py \
    tests/test_concurrency.py tests/test_fuzz.py
fi
PYTHONPATH="$stage" python -m pytest -q -p no:cacheprovider "$@"
