# add_bpf_skeleton(<name> <source.bpf.c> [DEPENDS headers...])
#
# clang -target bpf (-g -O2, warnings as errors) -> bpftool gen object (link + normalise BTF)
# -> bpftool gen skeleton. Result: an INTERFACE target <name>_skel whose include directory holds
# <name>.skel.h with the object embedded, linked to libbpf. Mirrors libbpf-bootstrap's bpf_object().
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)
# The multiarch include directory (asm/ headers): x86_64-linux-gnu on Debian whichever the
# compiler (clang's -dumpmachine says x86_64-pc-linux-gnu, which names no directory).
if(CMAKE_LIBRARY_ARCHITECTURE)
  set(BPF_HOST_TRIPLET ${CMAKE_LIBRARY_ARCHITECTURE})
else()
  execute_process(COMMAND ${CMAKE_C_COMPILER} -dumpmachine
                  OUTPUT_VARIABLE BPF_HOST_TRIPLET OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()

function(add_bpf_skeleton name source)
  cmake_parse_arguments(ARG "" "" "DEPENDS" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name})
  set(tmp_obj ${out}.tmp.bpf.o)
  set(obj ${out}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${tmp_obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_x86
            -Wall -Wextra -Werror -Wno-unused-parameter -fno-stack-protector
            -I${PROJECT_SOURCE_DIR} -I${CMAKE_CURRENT_SOURCE_DIR}
            -idirafter /usr/include/${BPF_HOST_TRIPLET}
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${source} -o ${tmp_obj}
    DEPENDS ${source} ${ARG_DEPENDS}
    COMMENT "BPF ${source}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPFTOOL} gen object ${obj} ${tmp_obj}
    DEPENDS ${tmp_obj}
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
