# The sequence-parallel exchange benchmark (needs MPI). Included from benchmarks/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/sp_bench.cmake OPTIONAL)
if(SEQPAR_HAVE_MPI AND NOT TARGET sp_exchange_bench)
  add_executable(sp_exchange_bench ${CMAKE_CURRENT_LIST_DIR}/sp_exchange_bench.cpp)
  target_link_libraries(sp_exchange_bench PRIVATE seqpar seqpar_comm)
  # Matrix-state summaries: tree, all-gather-and-fold and ring, measured and predicted.
  add_executable(matrix_exchange_bench ${CMAKE_CURRENT_LIST_DIR}/matrix_exchange_bench.cpp)
  target_link_libraries(matrix_exchange_bench PRIVATE seqpar seqpar_comm)
endif()
