# liburing-dev has a .pc file but no CMake package config.
find_path(LibURing_INCLUDE_DIR liburing.h)
find_library(LibURing_LIBRARY NAMES uring)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LibURing
  REQUIRED_VARS LibURing_LIBRARY LibURing_INCLUDE_DIR)
if(LibURing_FOUND AND NOT TARGET LibURing::uring)
  add_library(LibURing::uring UNKNOWN IMPORTED)
  set_target_properties(LibURing::uring PROPERTIES
    IMPORTED_LOCATION "${LibURing_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LibURing_INCLUDE_DIR}")
endif()
mark_as_advanced(LibURing_INCLUDE_DIR LibURing_LIBRARY)
