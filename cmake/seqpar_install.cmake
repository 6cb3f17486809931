# Installs libseqpar, its public headers and a CMake package: a downstream LibTorch program
# does find_package(seqpar) and links seqpar::seqpar (see tests/consumer).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
# Under pip (scikit-build-core, pyproject.toml) only the library is installed, into the Python
# package (seqpar/lib), where python/seqpar finds it.
if(SKBUILD)
  install(TARGETS seqpar LIBRARY DESTINATION seqpar/lib)
  return()
endif()
install(TARGETS seqpar EXPORT seqparTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/include/seqpar DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The communicator headers: programs that build their own groups (seqpar::sp::scan over a
# comm::Communicator) include them; their symbols live in libseqpar.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/comm/include/seqpar DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT seqparTargets NAMESPACE seqpar:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqpar)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/seqparConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/seqparConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqpar)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/seqparConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/seqparConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/seqparConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/seqpar)
