# CUDA sources of seqpar_kernels (included by kernels/CMakeLists.txt when SEQPAR_HAVE_CUDA).
# One translation unit per element type so that nvcc compiles the dtypes in parallel.
set(SEQPAR_CUDA_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cuda_scan.cu
  ${CMAKE_CURRENT_LIST_DIR}/scan_f32.cu
  ${CMAKE_CURRENT_LIST_DIR}/scan_f64.cu
  ${CMAKE_CURRENT_LIST_DIR}/scan_bf16.cu
  ${CMAKE_CURRENT_LIST_DIR}/scan_f16.cu
  ${CMAKE_CURRENT_LIST_DIR}/scan_c64.cu
  # The fused chunk kernels of the matrix-state recurrences (cuda_matrix_state.h).
  ${CMAKE_CURRENT_LIST_DIR}/cuda_matrix_state.cu
  ${CMAKE_CURRENT_LIST_DIR}/chunk_delta_rule.cu
  ${CMAKE_CURRENT_LIST_DIR}/chunk_gla.cu
  # The 2x2 block scan (cuda_block_scan.h): all dtypes in one small file.
  ${CMAKE_CURRENT_LIST_DIR}/block_scan.cu)
