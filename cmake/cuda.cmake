# The CUDA kernels (csrc/kernels/cuda) and their device-pointer Python module
# fusedlayers._native_cuda. FUSEDLAYERS_CUDA: AUTO builds them when a working CUDA
# compiler is found, ON requires one, OFF skips them; the CPU build is the same
# either way. Sets FUSEDLAYERS_HAVE_CUDA (ON/OFF) for _build_config.py.
set(FUSEDLAYERS_CUDA AUTO CACHE STRING "Build the CUDA kernels and _native_cuda: AUTO, ON or OFF")
set_property(CACHE FUSEDLAYERS_CUDA PROPERTY STRINGS AUTO ON OFF)

set(FUSEDLAYERS_HAVE_CUDA OFF)
if(NOT FUSEDLAYERS_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(FUSEDLAYERS_HAVE_CUDA ON)
  elseif(FUSEDLAYERS_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FUSEDLAYERS_CUDA=ON but no working CUDA compiler was found: "
                        "put nvcc on PATH or set CMAKE_CUDA_COMPILER")
  else()
    message(STATUS "fusedlayers: no CUDA compiler found, CPU-only build")
  endif()
endif()

if(FUSEDLAYERS_HAVE_CUDA)
  # sm_80 (A100) and sm_90 (H100/H200) machine code, plus compute_90 PTX that newer
  # GPUs JIT; WMMA bfloat16 and TF32 need sm_80, so nothing older.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90)
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "fusedlayers: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

  add_library(fusedlayers_cuda_kernels STATIC
    csrc/kernels/cuda/dtype.cc
    csrc/kernels/cuda/checks.cc
    csrc/kernels/cuda/activation_grad.cu
    csrc/kernels/cuda/dense.cu
    csrc/kernels/cuda/conv.cu)
  # The directory's host flags (-Wall, sanitizers) are not nvcc's; keep them for the
  # .cc files only.
  get_target_property(fl_host_options fusedlayers_cuda_kernels COMPILE_OPTIONS)
  set_target_properties(fusedlayers_cuda_kernels PROPERTIES
    COMPILE_OPTIONS "$<$<COMPILE_LANGUAGE:CXX>:${fl_host_options}>")
  target_compile_options(fusedlayers_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3>)
  target_link_libraries(fusedlayers_cuda_kernels PUBLIC fusedlayers_kernels CUDA::cudart_static)

  # cuBLASLt's BIAS / RELU_BIAS epilogues for the dense forward, when its header and
  # library are in the toolkit or in the nvidia-cublas Python wheel (never required).
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))"
    OUTPUT_VARIABLE fl_cublas_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  find_path(FUSEDLAYERS_CUBLASLT_INCLUDE cublasLt.h
    HINTS ${CUDAToolkit_INCLUDE_DIRS} "${fl_cublas_wheel}/include")
  find_library(FUSEDLAYERS_CUBLASLT_LIBRARY NAMES cublasLt libcublasLt.so.13 libcublasLt.so.12
    HINTS ${CUDAToolkit_LIBRARY_DIR} "${fl_cublas_wheel}/lib")
  if(FUSEDLAYERS_CUBLASLT_INCLUDE AND FUSEDLAYERS_CUBLASLT_LIBRARY)
    message(STATUS "fusedlayers: cuBLASLt ${FUSEDLAYERS_CUBLASLT_LIBRARY}")
    target_sources(fusedlayers_cuda_kernels PRIVATE csrc/kernels/cuda/cublaslt_dense.cc)
    target_include_directories(fusedlayers_cuda_kernels SYSTEM PUBLIC ${FUSEDLAYERS_CUBLASLT_INCLUDE})
    target_compile_definitions(fusedlayers_cuda_kernels PUBLIC FUSEDLAYERS_HAVE_CUBLASLT)
    target_link_libraries(fusedlayers_cuda_kernels PUBLIC ${FUSEDLAYERS_CUBLASLT_LIBRARY})
  else()
    message(STATUS "fusedlayers: cuBLASLt not found, dense forward uses our kernels only")
  endif()

  pybind11_add_module(_native_cuda
    csrc/python/cuda_module.cc
    csrc/python/cuda_dense_bindings.cc
    csrc/python/cuda_conv_bindings.cc)
  string(REPLACE ";" " " fl_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(_native_cuda PRIVATE FUSEDLAYERS_CUDA_ARCHITECTURES="${fl_cuda_archs}")
  target_link_libraries(_native_cuda PRIVATE fusedlayers_cuda_kernels)
  install(TARGETS _native_cuda LIBRARY DESTINATION fusedlayers)
endif()
