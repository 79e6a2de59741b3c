#!/usr/bin/env bash
# Builds fusedlayers._native_cuda alone, with nvcc and pybind11 but no TensorFlow (the
# top-level CMake build needs TensorFlow), for GPU machines that have none:
#   tests/gpu/build_native_cuda.sh [architecture, default 90]
# The module lands in python/fusedlayers (or $OUT_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:-90}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
out_dir=${OUT_DIR:-python/fusedlayers}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in activation_grad dense conv; do
  nvcc -O3 -std=c++17 -I. -gencode "arch=compute_${arch},code=sm_${arch}" -Xcompiler -fPIC \
    -c "csrc/kernels/cuda/$f.cu" -o "$work/$f.o" &
done
wait
c++ -O2 -std=c++17 -fPIC -shared -fvisibility=hidden -I. -I"$cuda_home/include" \
  $(python -m pybind11 --includes) -DFUSEDLAYERS_CUDA_ARCHITECTURES="\"$arch\"" \
  csrc/kernels/cuda/dtype.cc csrc/kernels/cuda/checks.cc csrc/kernels/conv_geometry.cc \
  csrc/python/cuda_module.cc csrc/python/cuda_dense_bindings.cc csrc/python/cuda_conv_bindings.cc \
  "$work"/*.o -L"$cuda_home/lib64" -lcudart_static -ldl -lrt -lpthread \
  -o "$out_dir/_native_cuda$(python3-config --extension-suffix)"
echo "built $out_dir/_native_cuda$(python3-config --extension-suffix) for sm_$arch"
