# libuv1-dev has a .pc file but no CMake package config.
find_path(LibUV_INCLUDE_DIR uv.h)
find_library(LibUV_LIBRARY NAMES uv)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LibUV
  REQUIRED_VARS LibUV_LIBRARY LibUV_INCLUDE_DIR)
if(LibUV_FOUND AND NOT TARGET LibUV::uv)
  add_library(LibUV::uv UNKNOWN IMPORTED)
  set_target_properties(LibUV::uv PROPERTIES
    IMPORTED_LOCATION "${LibUV_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LibUV_INCLUDE_DIR}")
endif()
mark_as_advanced(LibUV_INCLUDE_DIR LibUV_LIBRARY)
