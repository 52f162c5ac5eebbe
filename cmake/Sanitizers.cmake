# Sanitizer and fuzzing builds of the user-space code (the BPF objects are built by clang -target
# bpf in BpfSkeleton.cmake and are not affected). Used by `scripts/quickstart sanitize`, which
# configures a second build directory:
#   cmake -B build-sanitize -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 \
#         -DSLUICE_SANITIZE=address,undefined -DSLUICE_FUZZ=ON
#
# SLUICE_SANITIZE: a -fsanitize= list for every C/C++ target (compile and link). Any report
#   ends the process with an error (-fno-sanitize-recover), so a test that triggers one fails.
# SLUICE_FUZZ: the libFuzzer targets in tests/fuzz (label `fuzz`). Needs clang (libFuzzer is
#   clang's); the libraries they exercise get coverage instrumentation (fuzzer-no-link).
#   Debian 12's clang-14 cannot compile the agent (libstdc++ 12 offers std::expected only to
#   compilers with __cpp_concepts >= 202002L: clang 19 and later), hence clang-19.
set(SLUICE_SANITIZE "" CACHE STRING "-fsanitize= list for user-space code, e.g. address,undefined")
option(SLUICE_FUZZ "Build the libFuzzer targets in tests/fuzz (clang only)" OFF)

if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  # libstdc++ 12's std::stable_sort calls get_temporary_buffer, deprecated in C++23; clang
  # reports that inside the library, at every instantiation. gcc does not.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wno-deprecated-declarations>)
  # maps/sluice_abi.h's stat-name table (LB_STAT_NAMES_INIT) uses C array designators, which
  # gcc accepts in C++; only for the two targets that use it, once they exist.
  cmake_language(DEFER CALL target_compile_options sluicectl_lib PRIVATE -Wno-c99-designator)
  cmake_language(DEFER CALL target_compile_options sluice-agent PRIVATE -Wno-c99-designator)
endif()

if(SLUICE_SANITIZE)
  # Frame pointers: useful stacks in reports at -O1; line tables are enough for them.
  add_compile_options(-fsanitize=${SLUICE_SANITIZE} -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${SLUICE_SANITIZE})
  # libstdc++'s bounds checks (operator[], front(), ...) on top; no ABI change.
  add_compile_definitions(_GLIBCXX_ASSERTIONS)
endif()

if(SLUICE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SLUICE_FUZZ needs clang (libFuzzer): "
                        "-DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19")
  endif()
  if(NOT SLUICE_SANITIZE MATCHES "address")
    message(FATAL_ERROR "SLUICE_FUZZ needs -DSLUICE_SANITIZE=address[,undefined]: the "
                        "coverage callbacks of the instrumented libraries come from its runtime")
  endif()
endif()
