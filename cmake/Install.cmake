# The share/dispatch tree (staged in the build tree, so that build-tree programs find the
# same layout as installed ones: geo/share_dir.hpp) and `cmake --install`:
#   bin/                         dispatchd, dispatch-sim, dispatch-avl, dispatch-pager
#   share/dispatch/web/          the console, with its runtime npm packages (node_modules)
#   share/dispatch/assets/       districts and places, with their licences and READMEs
#   share/dispatch/config/       example tokens, fleet, insurers
#   share/doc/dispatch/          README and docs
#   lib/systemd/system/dispatchd.service, lib/sysusers.d/dispatch.conf
include(GNUInstallDirs)

option(DISPATCH_CONSOLE_PACKAGES "Stage the console's npm packages (web/package-lock.json) at build time" ON)
set(DISPATCH_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "where the systemd unit goes (relative: under the prefix)")
set(DISPATCH_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "where the sysusers.d file goes (relative: under the prefix)")

set(DISPATCH_STAGE "${PROJECT_BINARY_DIR}/share/dispatch")
file(GLOB_RECURSE share_sources CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/web/*" "${PROJECT_SOURCE_DIR}/assets/*" "${PROJECT_SOURCE_DIR}/config/*")
list(FILTER share_sources EXCLUDE REGEX "/web/node_modules/")
add_custom_command(
  OUTPUT "${PROJECT_BINARY_DIR}/share-staged.stamp"
  COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DSTAGE_DIR=${DISPATCH_STAGE}
          -DSTAMP=${PROJECT_BINARY_DIR}/share-staged.stamp -P ${PROJECT_SOURCE_DIR}/cmake/StageShare.cmake
  DEPENDS ${share_sources} "${PROJECT_SOURCE_DIR}/cmake/StageShare.cmake"
  COMMENT "Staging share/dispatch (console, assets, config examples)"
  VERBATIM)
set(share_outputs "${PROJECT_BINARY_DIR}/share-staged.stamp")
if(DISPATCH_CONSOLE_PACKAGES)
  find_program(NPM_EXECUTABLE npm)
  add_custom_command(
    OUTPUT "${PROJECT_BINARY_DIR}/console-packages.stamp"
    COMMAND ${CMAKE_COMMAND} -DWEB_DIR=${PROJECT_SOURCE_DIR}/web -DWORK_DIR=${PROJECT_BINARY_DIR}/console-packages
            -DDEST=${DISPATCH_STAGE}/web/node_modules -DNPM=${NPM_EXECUTABLE}
            -DSTAMP=${PROJECT_BINARY_DIR}/console-packages.stamp -P ${PROJECT_SOURCE_DIR}/cmake/ConsolePackages.cmake
    DEPENDS "${PROJECT_SOURCE_DIR}/web/package.json" "${PROJECT_SOURCE_DIR}/web/package-lock.json"
            "${PROJECT_SOURCE_DIR}/cmake/ConsolePackages.cmake"
    COMMENT "Staging the console's packages from web/package-lock.json"
    VERBATIM)
  list(APPEND share_outputs "${PROJECT_BINARY_DIR}/console-packages.stamp")
endif()
add_custom_target(share ALL DEPENDS ${share_outputs})
# A program built here finds its files in the stage: build it with them.
foreach(t dispatchd dispatch-sim)
  add_dependencies(${t} share)
endforeach()

# Components: `server` (dispatchd, share/dispatch, docs, systemd) and `tools` (the
# simulator and the gateways); a plain `cmake --install` installs both.
install(TARGETS dispatchd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT server)
install(TARGETS dispatch-sim dispatch-avl dispatch-pager RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
install(DIRECTORY "${DISPATCH_STAGE}/" DESTINATION "${CMAKE_INSTALL_DATADIR}/dispatch" COMPONENT server)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT server)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs COMPONENT server)

# The unit names the installed dispatchd by its absolute path: configured at install time,
# so that `cmake --install --prefix P` gets P (DESTDIR is not part of it).
foreach(d BINDIR DOCDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(unit_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(unit_${d} "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
if(IS_ABSOLUTE "${DISPATCH_SYSUSERS_DIR}")
  set(unit_SYSUSERS "${DISPATCH_SYSUSERS_DIR}")
else()
  set(unit_SYSUSERS "\${CMAKE_INSTALL_PREFIX}/${DISPATCH_SYSUSERS_DIR}")
endif()
install(CODE "
  set(BIN_DIR \"${unit_BINDIR}\")
  set(DOC_DIR \"${unit_DOCDIR}\")
  set(SYSUSERS_DIR \"${unit_SYSUSERS}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/packaging/dispatchd.service.in\"
                 \"${PROJECT_BINARY_DIR}/packaging/dispatchd.service\" @ONLY)
" COMPONENT server)
install(FILES "${PROJECT_BINARY_DIR}/packaging/dispatchd.service" DESTINATION ${DISPATCH_SYSTEMD_UNIT_DIR}
        COMPONENT server)
install(FILES packaging/dispatch.sysusers.conf DESTINATION ${DISPATCH_SYSUSERS_DIR} RENAME dispatch.conf
        COMPONENT server)
