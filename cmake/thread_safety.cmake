# CMKFS_THREAD_SAFETY=ON: clang's thread-safety analysis as errors (the CI
# part `tsa`, tests/run-all.sh). Every lock is an annotated cmkfs::Mutex or
# SharedMutex (include/cmkfs/mutex.h); -Wthread-safety-beta adds the
# ACQUIRED_AFTER lock-order checks. The configure fails unless the analysis
# provably rejects an unlocked read (check_thread_safety.cmake).
option(CMKFS_THREAD_SAFETY "Build with clang -Wthread-safety as errors (needs clang)" OFF)
if(CMKFS_THREAD_SAFETY)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR
      "CMKFS_THREAD_SAFETY=ON needs clang (-Wthread-safety is a clang "
      "analysis), but the C++ compiler is ${CMAKE_CXX_COMPILER_ID} "
      "(${CMAKE_CXX_COMPILER}); configure a new build directory with "
      "CC=clang CXX=clang++, or turn CMKFS_THREAD_SAFETY off")
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER}
            -DINCLUDE_DIR=${PROJECT_SOURCE_DIR}/include
            -P ${CMAKE_CURRENT_LIST_DIR}/check_thread_safety.cmake
    RESULT_VARIABLE cmkfs_tsa_rc
    OUTPUT_VARIABLE cmkfs_tsa_out ERROR_VARIABLE cmkfs_tsa_out)
  if(NOT cmkfs_tsa_rc EQUAL 0)
    message(FATAL_ERROR "CMKFS_THREAD_SAFETY: ${cmkfs_tsa_out}")
  endif()
  message(STATUS "CMKFS_THREAD_SAFETY: on (${CMAKE_CXX_COMPILER})")
  add_compile_options(-Wthread-safety -Wthread-safety-beta)
endif()
