# Finds LibTorch through the installed PyTorch wheel (torch.utils.cmake_prefix_path), unless
# Torch_DIR or CMAKE_PREFIX_PATH already point at one.
if(NOT Torch_DIR)
  execute_process(
    COMMAND ${SEQPAR_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _seqpar_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _seqpar_torch_rc ERROR_QUIET)
  if(_seqpar_torch_rc EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH "${_seqpar_torch_prefix}")
  endif()
endif()
# Caffe2's config looks for CUDA itself when the wheel is a CUDA build; give it the toolkit.
# seqpar_cuda_torch_workarounds.cmake handles what a CUDA wheel's config needs on a machine
# without a GPU driver (see the notes there); it does nothing unless nvcc was found.
include(${CMAKE_CURRENT_LIST_DIR}/seqpar_cuda_torch_workarounds.cmake)
seqpar_before_find_torch()
find_package(Torch REQUIRED)
seqpar_after_find_torch()
# LibTorch 2.14's headers use C++20 (requires-clauses in ATen/core/TensorBase.h); its config
# sets CXX_STANDARD 20 only on the imported target, which does not propagate. Raise the
# standard for every target when the found LibTorch needs it (2.11 and 2.13 build as C++17).
if(Torch_VERSION VERSION_GREATER_EQUAL 2.14 AND CMAKE_CXX_STANDARD LESS 20)
  set(CMAKE_CXX_STANDARD 20)
endif()
# TORCH_CXX_FLAGS carries -D_GLIBCXX_USE_CXX11_ABI=...; every target must agree with it.
string(REGEX MATCH "-D_GLIBCXX_USE_CXX11_ABI=[01]" _seqpar_abi "${TORCH_CXX_FLAGS}")
if(_seqpar_abi)
  add_compile_definitions(${_seqpar_abi})
  string(REPLACE "-D" "" _seqpar_abi_def "${_seqpar_abi}")
endif()
find_library(TORCH_PYTHON_LIBRARY torch_python PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH)
