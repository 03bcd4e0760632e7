# FSAD_CUDA=AUTO|ON|OFF: the CUDA backend (src/cuda) on cuDNN, cuBLAS and cuSOLVER.
#   AUTO  builds it when nvcc, the CUDA toolkit libraries and cuDNN are found, else CPU only
#   ON    requires them (configuration fails naming what is missing)
#   OFF   CPU only
#   EMULATED  for the tests only: the backend's sources built by the host compiler against the
#         CUDA emulator in tests/emu (kernels on the SIMT emulator, reference cuDNN/cuBLAS/
#         cuSOLVER), so that the CPU-vs-CUDA parity suite runs without a GPU. Not for installing.
# FSAD_CUDA_ARCHITECTURES: the GPU architectures to compile for (default 80;86;89;90: A100,
# RTX 30xx/A-series, L4/RTX 40xx, H100/H200); CI builds one to save time.
# Sets FSAD_WITH_CUDA, FSAD_CUDA_LIBRARY_DEFINITIONS and, when ON, the target fsad_cuda_libs.
set(FSAD_WITH_CUDA OFF)
set(FSAD_CUDA_EMULATED OFF)
set(FSAD_CUDA_LIBRARY_DEFINITIONS "")  # the SONAMEs and folders of the libraries opened on first use

# The SONAME of a shared library (what the dynamic loader looks for: libcublas.so.13) and its folder.
function(fsad_library_soname file out_soname out_dir)
  get_filename_component(_real "${file}" REALPATH)
  get_filename_component(_dir "${file}" DIRECTORY)
  set(_soname "")
  find_program(FSAD_OBJDUMP NAMES objdump ${CMAKE_OBJDUMP})
  if(FSAD_OBJDUMP)
    execute_process(COMMAND ${FSAD_OBJDUMP} -p "${_real}" OUTPUT_VARIABLE _dump ERROR_QUIET)
    if(_dump MATCHES "SONAME +([^ \n]+)")
      set(_soname "${CMAKE_MATCH_1}")
    endif()
  endif()
  if(NOT _soname)
    get_filename_component(_soname "${file}" NAME)
  endif()
  set(${out_soname} "${_soname}" PARENT_SCOPE)
  set(${out_dir} "${_dir}" PARENT_SCOPE)
endfunction()
set(FSAD_CUDA_ARCHITECTURES "80;86;89;90" CACHE STRING "CUDA architectures of the CUDA backend")
if(NOT FSAD_CUDA MATCHES "^(AUTO|ON|OFF|EMULATED)$")
  message(FATAL_ERROR "FSAD_CUDA must be AUTO, ON, OFF or EMULATED (got '${FSAD_CUDA}')")
endif()

if(FSAD_CUDA STREQUAL "EMULATED")
  set(FSAD_WITH_CUDA ON)
  set(FSAD_CUDA_EMULATED ON)
  message(STATUS "fsad: CUDA backend EMULATED on the CPU (tests/emu; for the tests, not for use)")
  add_library(fsad_cuda_libs STATIC ${CMAKE_CURRENT_SOURCE_DIR}/tests/emu/emu.cpp)
  target_include_directories(fsad_cuda_libs PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/tests/emu>)
  target_compile_features(fsad_cuda_libs PUBLIC cxx_std_20)
  set_target_properties(fsad_cuda_libs PROPERTIES POSITION_INDEPENDENT_CODE ON)
elseif(NOT FSAD_CUDA STREQUAL "OFF")
  set(_fsad_cuda_missing "")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc AND NOT DEFINED ENV{CUDACXX})
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)  # the toolkit's default place, often not on PATH
  endif()
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    list(APPEND _fsad_cuda_missing "nvcc")
  else()
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND)
      list(APPEND _fsad_cuda_missing "the CUDA toolkit libraries")
    else()
      find_path(FSAD_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES cudnn)
      find_library(FSAD_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib
                   ${CUDAToolkit_LIBRARY_ROOT}/lib64)
      if(NOT FSAD_CUDNN_INCLUDE OR NOT FSAD_CUDNN_LIB)
        list(APPEND _fsad_cuda_missing "cuDNN (cudnn.h, libcudnn)")
      endif()
    endif()
  endif()
  if(_fsad_cuda_missing)
    if(FSAD_CUDA STREQUAL "ON")
      message(FATAL_ERROR "FSAD_CUDA=ON but not found: ${_fsad_cuda_missing}")
    endif()
    message(STATUS "fsad: CUDA backend off (not found: ${_fsad_cuda_missing}); building CPU only")
  else()
    set(CMAKE_CUDA_ARCHITECTURES ${FSAD_CUDA_ARCHITECTURES})
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc 12+'s C++20 flag; tell it
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(FSAD_WITH_CUDA ON)
    message(STATUS "fsad: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${FSAD_CUDA_ARCHITECTURES}, "
                   "cuDNN ${FSAD_CUDNN_LIB})")
    if(NOT TARGET fsad_cuda_libs)
      # Linked: the CUDA runtime, statically (it opens the driver itself when first asked, so a CUDA
      # build starts on a machine without CUDA). Not linked: cuDNN, cuBLAS and cuSOLVER, opened on
      # first use (src/cuda/libraries.hpp) by the SONAME found here, then in the folder found here.
      add_library(fsad_cuda_libs INTERFACE)
      target_include_directories(fsad_cuda_libs SYSTEM INTERFACE $<BUILD_INTERFACE:${FSAD_CUDNN_INCLUDE}>
                                 $<BUILD_INTERFACE:${CUDAToolkit_INCLUDE_DIRS}>)
      target_link_libraries(fsad_cuda_libs INTERFACE CUDA::cudart_static ${CMAKE_DL_LIBS})
      set(FSAD_CUDA_LIBRARY_DEFINITIONS "")
      foreach(_lib CUDNN CUBLAS CUSOLVER)
        if(_lib STREQUAL "CUDNN")
          set(_file "${FSAD_CUDNN_LIB}")
        else()
          string(TOLOWER "${_lib}" _name)
          set(_file "${CUDA_${_name}_LIBRARY}")
        endif()
        fsad_library_soname("${_file}" _soname _dir)
        list(APPEND FSAD_CUDA_LIBRARY_DEFINITIONS "FSAD_${_lib}_SONAME=\"${_soname}\"" "FSAD_${_lib}_DIR=\"${_dir}\"")
        message(STATUS "fsad: ${_lib} opened on first use as ${_soname} (else ${_dir}/${_soname})")
      endforeach()
    endif()
  endif()
endif()
