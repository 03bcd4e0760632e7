// The GPU libraries (cuDNN, cuBLAS, cuSOLVER), opened on first use. fsad links only the CUDA
// runtime (statically); a process that never makes a CUDA tensor never loads the libraries, which
// linked at start cost about 250 MB of resident memory in every run of a CUDA build, CPU-only
// ones included. Each library's functions that the backend calls are listed once below; their
// types come from the library's own header (decltype), their addresses from dlsym when the
// backend first needs the library (a Context's handles, or versions()). Calls read
// `cudnn_api().cudnnCreate(&h)`. A library that cannot be loaded is an fsad::Error naming it, the
// files tried and the loader's reasons; the CPU backend is unaffected.
//
// Where the files are looked for: the library's SONAME as the build found it (libcudnn.so.9,
// libcublas.so.13, ...) through the dynamic loader's usual search (LD_LIBRARY_PATH, the cache of
// ldconfig, the executable's RUNPATH), then the same file in the folder the build linked against.
// In the FSAD_CUDA=EMULATED test build the "libraries" are the emulator's functions (tests/emu),
// taken by address: no file to open.
#pragma once
#include <cublas_v2.h>
#include <cudnn.h>
#include <cusolverDn.h>

#include <string>
#include <vector>

// X(function) for every function of each library the backend calls. cuBLAS's names are macros
// of its header (cublasCreate -> cublasCreate_v2): the field and the symbol take the expanded name.
#define FSAD_CUDNN_FUNCTIONS(X)                                                                           \
    X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream)           \
    X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnSetTensor4dDescriptor)         \
    X(cudnnCreateFilterDescriptor) X(cudnnDestroyFilterDescriptor) X(cudnnSetFilter4dDescriptor)         \
    X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)                             \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionGroupCount) X(cudnnSetConvolutionMathType)   \
    X(cudnnFindConvolutionForwardAlgorithmEx) X(cudnnFindConvolutionBackwardDataAlgorithmEx)             \
    X(cudnnFindConvolutionBackwardFilterAlgorithmEx) X(cudnnConvolutionForward)                          \
    X(cudnnConvolutionBackwardData) X(cudnnConvolutionBackwardFilter) X(cudnnConvolutionBackwardBias)    \
    X(cudnnAddTensor)
#define FSAD_CUBLAS_FUNCTIONS(X)                                                                          \
    X(cublasGetProperty) X(cublasGetStatusString) X(cublasCreate) X(cublasDestroy) X(cublasSetStream)    \
    X(cublasSetMathMode) X(cublasSgemm) X(cublasStrsm) X(cublasDsyrk)
#define FSAD_CUSOLVER_FUNCTIONS(X)                                                                        \
    X(cusolverGetProperty) X(cusolverDnCreate) X(cusolverDnDestroy) X(cusolverDnSetStream)               \
    X(cusolverDnDpotrf_bufferSize) X(cusolverDnDpotrf)

namespace fsad::cuda {

#define FSAD_LIBRARY_FIELD(f) decltype(&::f) f = nullptr;
struct CudnnApi {
    FSAD_CUDNN_FUNCTIONS(FSAD_LIBRARY_FIELD)
};
struct CublasApi {
    FSAD_CUBLAS_FUNCTIONS(FSAD_LIBRARY_FIELD)
};
struct CusolverApi {
    FSAD_CUSOLVER_FUNCTIONS(FSAD_LIBRARY_FIELD)
};
#undef FSAD_LIBRARY_FIELD

/// Each library's functions, the library loaded by the first call of any thread (later calls
/// return the same table). Throws fsad::Error when it cannot be loaded or lacks a function (every
/// call then throws the same error: nothing is retried behind the caller's back).
const CudnnApi& cudnn_api();
const CublasApi& cublas_api();
const CusolverApi& cusolver_api();

/// The loader underneath, tested on its own. Opens the first of `files` the dynamic loader
/// accepts (a name without '/' goes through its search); throws fsad::Error naming `what`, each
/// file tried and the loader's reason for each.
void* open_library(const std::string& what, const std::vector<std::string>& files);
/// The address of `symbol` in a library from open_library; throws fsad::Error naming `what` and
/// the symbol when it is missing (a library older than the one fsad was built against).
void* library_symbol(void* library, const std::string& what, const char* symbol);

}  // namespace fsad::cuda
