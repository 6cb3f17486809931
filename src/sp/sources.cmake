# Sources of the sequence-parallel op (src/sp/), added to libseqpar by src/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/sp/sources.cmake)
#   target_sources(seqpar PRIVATE ${SEQPAR_SP_SOURCES})
set(SEQPAR_SP_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/sp_scan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_block_scan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/slice_header.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_matrix_state.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_delta_product.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_previous_steps.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_psm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/packed_slice.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sp_packed_scan.cpp)
