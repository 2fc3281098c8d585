# cmake -P StageShare.cmake -DSOURCE_DIR=... -DSTAGE_DIR=...
# Stages what `cmake --install` puts under share/dispatch into <build>/share/dispatch, so
# that a program in the build tree finds the same layout as an installed one (its
# ../share/dispatch): the console (web/, without node_modules, which ConsolePackages.cmake
# stages), the shipped data (assets/, with their licences and READMEs) and the example
# configuration (config/). Files gone from the source are removed from the stage.
cmake_policy(SET CMP0057 NEW)  # if(... IN_LIST ...) in script mode (-P), where no cmake_minimum_required sets it
foreach(pair "web;web" "assets;assets" "config;config")
  list(GET pair 0 from)
  list(GET pair 1 to)
  file(GLOB_RECURSE files RELATIVE "${SOURCE_DIR}/${from}" "${SOURCE_DIR}/${from}/*")
  list(FILTER files EXCLUDE REGEX "^node_modules/")
  file(GLOB_RECURSE staged RELATIVE "${STAGE_DIR}/${to}" "${STAGE_DIR}/${to}/*")
  list(FILTER staged EXCLUDE REGEX "^node_modules/")
  foreach(f IN LISTS staged)
    if(NOT f IN_LIST files)
      file(REMOVE "${STAGE_DIR}/${to}/${f}")
    endif()
  endforeach()
  foreach(f IN LISTS files)
    get_filename_component(dir "${STAGE_DIR}/${to}/${f}" DIRECTORY)
    file(MAKE_DIRECTORY "${dir}")
    file(COPY_FILE "${SOURCE_DIR}/${from}/${f}" "${STAGE_DIR}/${to}/${f}" ONLY_IF_DIFFERENT)
  endforeach()
endforeach()
file(TOUCH "${STAMP}")
