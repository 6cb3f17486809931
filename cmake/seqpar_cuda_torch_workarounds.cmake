# Workarounds for configuring against the CUDA build of the PyTorch wheel (torch 2.14.1+cu130)
# with the CUDA toolkit from NVIDIA's installer, on a machine that may have no GPU driver.
# Used by cmake/seqpar_find_torch.cmake around find_package(Torch); no-ops when no CUDA
# compiler was found (CPU wheels never look at any of this).
#
# What Caffe2Config.cmake / public/cuda.cmake of the wheel does, and what we do about it:
#  1. It calls the legacy FindCUDA, which locates the toolkit from the first `nvcc` on PATH.
#     A wrapper script such as /usr/local/bin/nvcc makes it guess /usr/local as the toolkit
#     root and fail with "Your installed Caffe2 version uses CUDA but I cannot find the CUDA
#     libraries". We set CUDA_TOOLKIT_ROOT_DIR and CUDA_NVCC_EXECUTABLE from the CUDA
#     compiler CMake already found (CMAKE_CUDA_COMPILER).
#  2. It needs libnvrtc (CUDA_nvrtc_LIBRARY) for torch::nvrtc / caffe2::nvrtc. A toolkit
#     installed without nvrtc does not have it; the wheel's own copy lives in the pip package
#     nvidia-cuda-nvrtc (site-packages/nvidia/cu13/lib/libnvrtc.so.13), which we use.
#  3. It overwrites CMAKE_CUDA_ARCHITECTURES with OFF ("pytorch is not compatible with
#     CMAKE_CUDA_ARCHITECTURES") and appends -gencode flags for every arch in
#     TORCH_CUDA_ARCH_LIST (by default a list that includes sm_50, which nvcc 13 rejects) to
#     CMAKE_CUDA_FLAGS. Our kernels include no torch header and need none of those flags, so
#     we save CMAKE_CUDA_ARCHITECTURES and CMAKE_CUDA_FLAGS before and restore them after,
#     and pass TORCH_CUDA_ARCH_LIST matching our architectures so that its log is truthful.
#  4. Linking: libtorch_cuda.so finds the nvidia-* pip libraries through its own RUNPATH
#     ($ORIGIN/../../nvidia/*/lib) and does not link libcuda.so.1 (the driver is dlopen'ed by
#     cudart at run time), so executables link without a driver and without extra flags
#     (checked for torch 2.14.1+cu130 by scripts/cuda_build_check.sh). Should a future wheel
#     need it, -Wl,--allow-shlib-undefined and -Wl,-rpath-link,<site-packages>/nvidia/*/lib
#     are the flags to add; SEQPAR_NVIDIA_PIP_LIB_DIRS holds those directories.
#  5. ATen/cuda/CUDAContext.h includes cublas_v2.h, cusparse.h and cusolverDn.h. A toolkit
#     installed without the math libraries (CI's) lacks them; the wheel's pip packages ship
#     them in site-packages/nvidia/*/include. We symlink only the headers the toolkit lacks
#     into <build>/cuda_math_headers and add that directory to the torch target's include
#     path, so toolkit headers keep precedence and nothing is copied.
# cuDNN, cuSPARSELt, cuDSS, cuFile, kineto and nvToolsExt are optional in 2.14's config:
# missing ones only print a warning ("library kineto not found") and are not linked.

macro(seqpar_before_find_torch)
  set(_seqpar_have_nvcc FALSE)
  if(CMAKE_CUDA_COMPILER AND NOT "${SEQPAR_WITH_CUDA}" MATCHES "^(OFF|off|0|FALSE|false)$")
    set(_seqpar_have_nvcc TRUE)
  endif()
  if(_seqpar_have_nvcc)
    get_filename_component(_seqpar_cuda_bin "${CMAKE_CUDA_COMPILER}" DIRECTORY)
    get_filename_component(_seqpar_cuda_root "${_seqpar_cuda_bin}" DIRECTORY)
    if(NOT CUDA_TOOLKIT_ROOT_DIR)
      set(CUDA_TOOLKIT_ROOT_DIR "${_seqpar_cuda_root}" CACHE PATH "CUDA toolkit for Caffe2's FindCUDA")
    endif()
    if(NOT CUDA_NVCC_EXECUTABLE)
      set(CUDA_NVCC_EXECUTABLE "${CMAKE_CUDA_COMPILER}" CACHE FILEPATH "nvcc for Caffe2's FindCUDA")
    endif()
    # The pip CUDA libraries next to the wheel (nvidia/cu13/lib, nvidia/*/lib).
    execute_process(
      COMMAND ${SEQPAR_PYTHON} -c
        "import glob, os, site; d=[p for s in site.getsitepackages() for p in glob.glob(os.path.join(s, 'nvidia', '*', 'lib'))]; print(';'.join(d))"
      OUTPUT_VARIABLE SEQPAR_NVIDIA_PIP_LIB_DIRS OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(NOT CUDA_nvrtc_LIBRARY OR CUDA_nvrtc_LIBRARY MATCHES "NOTFOUND")
      unset(CUDA_nvrtc_LIBRARY CACHE)
      find_library(CUDA_nvrtc_LIBRARY NAMES nvrtc libnvrtc.so.13 libnvrtc.so.12
        HINTS "${_seqpar_cuda_root}/lib64" "${_seqpar_cuda_root}/lib" ${SEQPAR_NVIDIA_PIP_LIB_DIRS})
    endif()
    if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
      set(_seqpar_torch_archs "")
      foreach(_arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
        string(REGEX REPLACE "^([0-9]+)([0-9])(-.*)?$" "\\1.\\2" _arch_dot "${_arch}")
        list(APPEND _seqpar_torch_archs "${_arch_dot}")
      endforeach()
      set(TORCH_CUDA_ARCH_LIST "${_seqpar_torch_archs}")
    endif()
    set(_seqpar_saved_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
    set(_seqpar_saved_cuda_flags "${CMAKE_CUDA_FLAGS}")
    unset(CMAKE_CUDA_ARCHITECTURES)  # silences "pytorch is not compatible with CMAKE_CUDA_ARCHITECTURES"
  endif()
endmacro()

macro(seqpar_after_find_torch)
  if(_seqpar_have_nvcc)
    set(CMAKE_CUDA_ARCHITECTURES "${_seqpar_saved_cuda_archs}")
    set(CMAKE_CUDA_FLAGS "${_seqpar_saved_cuda_flags}")
    if(TARGET torch AND NOT EXISTS "${CUDAToolkit_INCLUDE_DIRS}/cusparse.h")
      execute_process(
        COMMAND ${SEQPAR_PYTHON} -c
          "import glob, os, site; d=[p for s in site.getsitepackages() for p in glob.glob(os.path.join(s, 'nvidia', '*', 'include'))]; print(';'.join(d))"
        OUTPUT_VARIABLE _seqpar_pip_include_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      set(_seqpar_math_headers "${CMAKE_BINARY_DIR}/cuda_math_headers")
      file(MAKE_DIRECTORY "${_seqpar_math_headers}")
      foreach(_dir IN LISTS _seqpar_pip_include_dirs)
        file(GLOB _headers RELATIVE "${_dir}" "${_dir}/*.h")
        foreach(_h IN LISTS _headers)
          if(NOT EXISTS "${CUDAToolkit_INCLUDE_DIRS}/${_h}" AND NOT EXISTS "${_seqpar_math_headers}/${_h}")
            file(CREATE_LINK "${_dir}/${_h}" "${_seqpar_math_headers}/${_h}" SYMBOLIC)
          endif()
        endforeach()
      endforeach()
      set_property(TARGET torch APPEND PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_seqpar_math_headers}")
      set_property(TARGET torch APPEND PROPERTY INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_seqpar_math_headers}")
    endif()
  endif()
endmacro()
