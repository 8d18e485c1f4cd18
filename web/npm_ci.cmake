# `cmake -DNPM=... -DWEB=... -P npm_ci.cmake`: runs `npm ci` in web/ unless
# node_modules was installed from this very package-lock.json. Every build
# folder shares web/node_modules, so a second build folder (scripts/run's
# beside scripts/test's) must not reinstall it from under the first one's
# running vite build: only a changed lock file reinstalls.
set(lock "${WEB}/package-lock.json")
set(mark "${WEB}/node_modules/.rsv-installed-lock.json")
file(READ "${lock}" wanted)
if(EXISTS "${mark}")
  file(READ "${mark}" installed)
  if(installed STREQUAL wanted)
    return()
  endif()
endif()
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund --loglevel=error
  WORKING_DIRECTORY "${WEB}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "npm ci in ${WEB} failed (${status}): is the npm registry reachable?")
endif()
file(COPY_FILE "${lock}" "${mark}")
