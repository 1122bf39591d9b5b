# Included into llama.cpp's CMake project by scripts/demo.sh (CMAKE_PROJECT_INCLUDE, which
# llama-cpp-sys-2 passes on): llama.cpp's common library and the HTTP library it links are
# compiled without optimisation. The plugin calls nothing of theirs per token (only the
# JSON-schema-to-grammar converter, once per schema, and the build info), and the two are
# over a third of llama.cpp's compile time, mostly templates; at -O0 they compile 30% sooner.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _wasmedge_nn_quick)
function(_wasmedge_nn_quick)
  foreach(target llama-common cpp-httplib)
    if(TARGET ${target})
      target_compile_options(${target} PRIVATE -O0)
    endif()
  endforeach()
endfunction()
