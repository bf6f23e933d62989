# cmake -DCXX=<clang++> -DINCLUDE_DIR=<source>/include -P check_thread_safety.cmake
#
# The negative check of the clang thread-safety build (CMKFS_THREAD_SAFETY,
# CI part `tsa`): thread_safety_probe.cc must compile with -Wthread-safety
# -Werror, and the same file reading a GUARDED_BY member without its lock
# must fail with a -Wthread-safety-analysis error. Run at configure time by
# cmake/thread_safety.cmake and as the ctest test core.thread_safety_probe.
if(NOT CXX OR NOT EXISTS "${CXX}")
  message(FATAL_ERROR
    "thread-safety probe: no clang++ (got '${CXX}'); install clang "
    "(packaging/install-deps.sh)")
endif()
if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "thread-safety probe: set -DINCLUDE_DIR=<source>/include")
endif()
set(probe "${CMAKE_CURRENT_LIST_DIR}/thread_safety_probe.cc")
set(flags -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror
          -Wthread-safety -Wthread-safety-beta "-I${INCLUDE_DIR}")

execute_process(COMMAND "${CXX}" ${flags} "${probe}"
  RESULT_VARIABLE locked_rc OUTPUT_VARIABLE locked_out ERROR_VARIABLE locked_out)
if(NOT locked_rc EQUAL 0)
  message(FATAL_ERROR
    "thread-safety probe: the correctly locked probe does not compile with "
    "${CXX}:\n${locked_out}")
endif()

execute_process(COMMAND "${CXX}" ${flags} -DCMKFS_PROBE_UNLOCKED_READ "${probe}"
  RESULT_VARIABLE unlocked_rc OUTPUT_VARIABLE unlocked_out
  ERROR_VARIABLE unlocked_out)
if(unlocked_rc EQUAL 0)
  message(FATAL_ERROR
    "thread-safety probe: ${CXX} accepted a read of a GUARDED_BY member "
    "without its lock; -Wthread-safety is not in effect")
endif()
if(NOT unlocked_out MATCHES "reading variable 'value_' requires holding mutex 'mu_' \\[-Werror,-Wthread-safety-analysis\\]")
  message(FATAL_ERROR
    "thread-safety probe: the unlocked read failed, but not with the "
    "expected -Wthread-safety-analysis error:\n${unlocked_out}")
endif()
message(STATUS "thread-safety probe: ${CXX} rejects an unlocked read of a guarded member")
