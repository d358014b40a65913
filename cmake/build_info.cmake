# Writes build_info.hpp with the commit being built and its time; run at
# every build so the values follow new commits. The file changes only when
# they do, so nothing recompiles otherwise.
execute_process(
  COMMAND git rev-parse HEAD
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
execute_process(
  COMMAND git log -1 --format=%ct
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE epoch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT epoch)
  set(epoch 0)
endif()
file(WRITE ${OUTPUT}.tmp
  "#pragma once\n#define BERTH_GIT_COMMIT \"${commit}\"\n"
  "#define BERTH_BUILD_EPOCH ${epoch}\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different
  ${OUTPUT}.tmp ${OUTPUT})
