# Sources of the prefix-scannable-model scans (src/psm/), added to libseqpar by
# src/CMakeLists.txt. The sequence-parallel scan is src/sp/sp_psm.cpp.
set(SEQPAR_PSM_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/static_scan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/binary_counter.cpp)
