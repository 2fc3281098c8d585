# cmake -P ConsolePackages.cmake -DWEB_DIR=<source>/web -DWORK_DIR=... -DDEST=... -DNPM=... -DSTAMP=...
# The console's runtime packages (today Leaflet) as web/package-lock.json pins them,
# into DEST (<stage>/web/node_modules). First `npm ci --omit=dev` in a work folder of the
# build tree (npm checks each package against the lock's integrity hash; npm's cache
# makes it work offline once fetched); when npm is missing or fails, the same packages
# from web/node_modules if an `npm ci` there installed exactly the locked versions.
file(READ "${WEB_DIR}/package-lock.json" lock)
string(JSON count LENGTH "${lock}" packages)
set(runtime "")
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON key MEMBER "${lock}" packages ${i})
  if(key STREQUAL "")
    continue()
  endif()
  string(JSON dev ERROR_VARIABLE no_dev GET "${lock}" packages "${key}" dev)
  if(NOT no_dev AND dev)
    continue()
  endif()
  string(JSON version GET "${lock}" packages "${key}" version)
  list(APPEND runtime "${key}=${version}")
endforeach()

function(version_of dir out)
  set(${out} "" PARENT_SCOPE)
  if(EXISTS "${dir}/package.json")
    file(READ "${dir}/package.json" pj)
    string(JSON v ERROR_VARIABLE err GET "${pj}" version)
    if(NOT err)
      set(${out} "${v}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

set(from "")
if(NPM)
  file(MAKE_DIRECTORY "${WORK_DIR}")
  file(COPY_FILE "${WEB_DIR}/package.json" "${WORK_DIR}/package.json" ONLY_IF_DIFFERENT)
  file(COPY_FILE "${WEB_DIR}/package-lock.json" "${WORK_DIR}/package-lock.json" ONLY_IF_DIFFERENT)
  execute_process(
    COMMAND "${NPM}" ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error
    WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    set(from "${WORK_DIR}")
  else()
    message(WARNING "console packages: npm ci failed (${rc}): ${err}; trying ${WEB_DIR}/node_modules")
  endif()
endif()
if(NOT from)
  set(from "${WEB_DIR}")
endif()

set(problems "")
foreach(entry IN LISTS runtime)
  string(REPLACE "=" ";" kv "${entry}")
  list(GET kv 0 key)
  list(GET kv 1 want)
  version_of("${from}/${key}" have)
  if(NOT have STREQUAL want)
    string(APPEND problems "\n  ${key} ${want}: found '${have}' in ${from}/${key}")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "console packages: web/package-lock.json's runtime packages are not available:${problems}\n"
    "Install npm (scripts/install-deps.sh) with access to the npm registry or its cache, or run "
    "`npm ci` in web/; or configure with -DDISPATCH_CONSOLE_PACKAGES=OFF to build without them "
    "(the console then needs --web-root pointing at a web/ folder with node_modules).")
endif()

file(REMOVE_RECURSE "${DEST}")
foreach(entry IN LISTS runtime)
  string(REPLACE "=" ";" kv "${entry}")
  list(GET kv 0 key)
  get_filename_component(parent "${DEST}/../${key}" DIRECTORY)  # key: node_modules/NAME
  file(MAKE_DIRECTORY "${parent}")
  file(COPY "${from}/${key}" DESTINATION "${parent}")
endforeach()
file(TOUCH "${STAMP}")
