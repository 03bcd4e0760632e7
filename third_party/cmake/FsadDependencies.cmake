# Finds the Debian-packaged dependencies (installed by scripts/bootstrap.sh).
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(nlohmann_json 3 REQUIRED)

# OpenBLAS: CBLAS + LAPACK. Debian ships it without a CMake config; find header and library.
find_path(FSAD_OPENBLAS_INCLUDE cblas.h
  PATHS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread
        /usr/include/openblas /usr/include
  NO_DEFAULT_PATH)
find_library(FSAD_OPENBLAS_LIB NAMES openblas)
if(NOT FSAD_OPENBLAS_INCLUDE OR NOT FSAD_OPENBLAS_LIB)
  message(FATAL_ERROR "OpenBLAS not found: run scripts/bootstrap.sh (Debian: libopenblas-dev)")
endif()
if(NOT TARGET fsad_openblas)
  add_library(fsad_openblas INTERFACE)
  target_include_directories(fsad_openblas SYSTEM INTERFACE $<BUILD_INTERFACE:${FSAD_OPENBLAS_INCLUDE}>)
  target_link_libraries(fsad_openblas INTERFACE $<BUILD_INTERFACE:${FSAD_OPENBLAS_LIB}> $<INSTALL_INTERFACE:openblas>)
endif()

# stb (image decoding and PNG writing): Debian's libstb-dev ships the headers and a compiled libstb.
find_path(FSAD_STB_INCLUDE stb_image.h PATHS /usr/include/stb)
find_library(FSAD_STB_LIB NAMES stb)
if(NOT FSAD_STB_INCLUDE OR NOT FSAD_STB_LIB)
  message(FATAL_ERROR "stb not found: run scripts/bootstrap.sh (Debian: libstb-dev)")
endif()
if(NOT TARGET fsad_stb)
  add_library(fsad_stb INTERFACE)
  target_include_directories(fsad_stb SYSTEM INTERFACE $<BUILD_INTERFACE:${FSAD_STB_INCLUDE}>)
  target_link_libraries(fsad_stb INTERFACE $<BUILD_INTERFACE:${FSAD_STB_LIB}> $<INSTALL_INTERFACE:stb>)
endif()
