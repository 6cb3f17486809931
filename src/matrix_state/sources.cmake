# Sources of the matrix-state recurrences (src/matrix_state/), added to libseqpar by
# src/CMakeLists.txt.
set(SEQPAR_MATRIX_STATE_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/chunking.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_gla.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_kda.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_prefix_maps.cpp
  ${CMAKE_CURRENT_LIST_DIR}/decayed_scores.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_gated_delta_rule.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_gated_delta_product.cpp
  ${CMAKE_CURRENT_LIST_DIR}/householder_steps.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chunk_params.cpp
  ${CMAKE_CURRENT_LIST_DIR}/fused_chunks.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops.cpp)
