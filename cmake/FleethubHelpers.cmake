# fleethub_add_library(<name> DEPS ... [PRIVATE_DEPS ...]): one static library per layer, made of every
# *.cpp below the calling folder (files are named after their main type, so the folder is the list).
function(fleethub_add_library name)
  cmake_parse_arguments(ARG "" "" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  if(NOT srcs)  # a layer whose sources have not landed yet
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR}/cpp)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
    return()
  endif()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/cpp)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  fleethub_apply_warnings(${name})
endfunction()

function(fleethub_apply_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  endif()
endfunction()

# libFuzzer needs coverage instrumentation in the libraries it exercises, not only in the fuzz executable
# (without it a run reaches a few hundred edges instead of thousands).
if(FLEETHUB_LIBFUZZER)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(FLEETHUB_SANITIZER)
  add_compile_options(-fsanitize=${FLEETHUB_SANITIZER} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${FLEETHUB_SANITIZER})
endif()

# fleethub_add_test(<name> SOURCES ... DEPS ... [LABELS ...]): a GoogleTest executable registered with ctest.
function(fleethub_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest_main)
  fleethub_apply_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "unit;${ARG_LABELS}")
endfunction()

# fleethub_add_fuzzer(<name> SOURCES ... DEPS ... CORPUS <dir>): a libFuzzer target. Without
# FLEETHUB_LIBFUZZER it links a replay main, so every build compiles it and ctest replays the corpus.
function(fleethub_add_fuzzer name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  if(FLEETHUB_LIBFUZZER)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cpp)
  endif()
  add_test(NAME ${name}_replay COMMAND ${name} ${ARG_CORPUS})
  set_tests_properties(${name}_replay PROPERTIES LABELS fuzz_replay)
endfunction()
