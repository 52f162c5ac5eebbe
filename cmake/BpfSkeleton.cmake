# add_bpf_skeleton(<name> <source.bpf.c> [TARGET <target>] [DEFINES NAME=VALUE...]
#                  [DEPENDS headers...])
#
# clang -target bpf (-g -O2, warnings as errors) -> bpftool gen object (link + normalise BTF)
# -> bpftool gen skeleton. Result: an INTERFACE target <target>_skel (TARGET defaults to <name>)
# whose include directory holds <name>.skel.h with the object embedded, linked to libbpf.
# DEFINES are passed to clang as -D. A second skeleton of the same <name> (another TARGET, from
# another directory) is a variant build of the same object. Mirrors libbpf-bootstrap's
# bpf_object().
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
  cmake_parse_arguments(ARG "" "TARGET" "DEFINES;DEPENDS" ${ARGN})
  if(NOT ARG_TARGET)
    set(ARG_TARGET ${name})
  endif()
  get_filename_component(src ${source} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  get_filename_component(src_dir ${src} DIRECTORY)
  list(TRANSFORM ARG_DEFINES PREPEND -D)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name})
  set(tmp_obj ${out}.tmp.bpf.o)
  set(obj ${out}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${tmp_obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_x86
            -Wall -Wextra -Werror -Wno-unused-parameter -fno-stack-protector
            ${ARG_DEFINES} -I${PROJECT_SOURCE_DIR} -I${src_dir}
            -idirafter /usr/include/${BPF_HOST_TRIPLET}
            -c ${src} -o ${tmp_obj}
    DEPENDS ${src} ${ARG_DEPENDS}
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
  add_custom_target(${ARG_TARGET}_skel_gen DEPENDS ${skel})
  add_library(${ARG_TARGET}_skel INTERFACE)
  add_dependencies(${ARG_TARGET}_skel ${ARG_TARGET}_skel_gen)
  target_include_directories(${ARG_TARGET}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR}
                             ${PROJECT_SOURCE_DIR})
  target_link_libraries(${ARG_TARGET}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
