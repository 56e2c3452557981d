# Included by llama.cpp's CMakeLists.txt right after its project() call when llama-cpp-python is built by
# `make install` (CMAKE_PROJECT_llama.cpp_INCLUDE in the Makefile's LLAMA_CMAKE_ARGS).
#
# llama-cpp-python forces LLAMA_BUILD_COMMON=ON in the CMake cache, so -DLLAMA_BUILD_COMMON=OFF cannot turn
# it off; this directory-scope variable shadows the cache entry instead. The `common` library (argument
# parsing, chat templates, downloads and cpp-httplib for llama.cpp's command-line tools) is about a third of
# the compile and is never loaded by the llama_cpp Python module, which uses libllama and ggml only.
# libllama and ggml are compiled with the same flags either way.
set(LLAMA_BUILD_COMMON OFF)
message(STATUS "fusion-of-n: not building llama.cpp's common library (cmake/llama-cpp-no-common.cmake)")
