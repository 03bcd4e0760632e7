// The GPU libraries opened on first use (libraries.hpp says why and where they are looked for).
#include "libraries.hpp"

#include <dlfcn.h>

#include <mutex>

#include "fsad/core/error.hpp"

// The build passes each library's SONAME and the folder it was linked from (FsadCuda.cmake).
#if !defined(FSAD_CUDA_EMULATED)
#if !defined(FSAD_CUDNN_SONAME) || !defined(FSAD_CUBLAS_SONAME) || !defined(FSAD_CUSOLVER_SONAME)
#error "the build defines FSAD_{CUDNN,CUBLAS,CUSOLVER}_SONAME and _DIR (third_party/cmake/FsadCuda.cmake)"
#endif
#endif

#define FSAD_LIBRARY_STR2(x) #x
#define FSAD_LIBRARY_STR(x) FSAD_LIBRARY_STR2(x)  // expands first: cublasCreate -> "cublasCreate_v2"

namespace fsad::cuda {

void* open_library(const std::string& what, const std::vector<std::string>& files) {
    std::string reasons;
    for (const std::string& f : files) {
        // RTLD_LOCAL: the library's symbols serve fsad's table, not the rest of the process
        if (void* h = dlopen(f.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
        const char* e = dlerror();
        reasons += "\n  " + f + ": " + (e ? e : "not loadable");
    }
    throw Error("CUDA backend: cannot load " + what + ", tried:" + reasons +
                "\n(install it, or make it findable with LD_LIBRARY_PATH; the CPU needs none of it: --device cpu)");
}

void* library_symbol(void* library, const std::string& what, const char* symbol) {
    dlerror();  // clear
    void* p = dlsym(library, symbol);
    if (!p) {
        const char* e = dlerror();
        throw Error("CUDA backend: " + what + " has no function " + symbol + " (" + (e ? e : "null address") +
                    "): older than the version fsad was built against?");
    }
    return p;
}

namespace {

#if !defined(FSAD_CUDA_EMULATED)
std::vector<std::string> candidates(const char* soname, const char* dir) {
    std::vector<std::string> f{soname};
    if (dir[0]) f.push_back(std::string(dir) + "/" + soname);
    return f;
}
#endif

/// Loads one library's table once per process; a failure is kept and rethrown to every caller.
template <class Api, class Fill>
const Api& load_once(Fill fill) {
    static std::once_flag once;
    static Api api;
    static std::string error;
    std::call_once(once, [&] {
        try {
            fill(api);
        } catch (const Error& e) {
            error = e.what();
        }
    });
    if (!error.empty()) throw Error(error);
    return api;
}

}  // namespace

#if defined(FSAD_CUDA_EMULATED)
#define FSAD_LIBRARY_ADDRESS(f) api.f = &::f;
const CudnnApi& cudnn_api() {
    return load_once<CudnnApi>([](CudnnApi& api) { FSAD_CUDNN_FUNCTIONS(FSAD_LIBRARY_ADDRESS) });
}
const CublasApi& cublas_api() {
    return load_once<CublasApi>([](CublasApi& api) { FSAD_CUBLAS_FUNCTIONS(FSAD_LIBRARY_ADDRESS) });
}
const CusolverApi& cusolver_api() {
    return load_once<CusolverApi>([](CusolverApi& api) { FSAD_CUSOLVER_FUNCTIONS(FSAD_LIBRARY_ADDRESS) });
}
#undef FSAD_LIBRARY_ADDRESS
#else
#define FSAD_LIBRARY_SYMBOL(f) \
    api.f = reinterpret_cast<decltype(api.f)>(library_symbol(h, what, FSAD_LIBRARY_STR(f)));
const CudnnApi& cudnn_api() {
    return load_once<CudnnApi>([](CudnnApi& api) {
        const std::string what = "cuDNN (" FSAD_CUDNN_SONAME ")";
        void* h = open_library(what, candidates(FSAD_CUDNN_SONAME, FSAD_CUDNN_DIR));
        FSAD_CUDNN_FUNCTIONS(FSAD_LIBRARY_SYMBOL)
    });
}
const CublasApi& cublas_api() {
    return load_once<CublasApi>([](CublasApi& api) {
        const std::string what = "cuBLAS (" FSAD_CUBLAS_SONAME ")";
        void* h = open_library(what, candidates(FSAD_CUBLAS_SONAME, FSAD_CUBLAS_DIR));
        FSAD_CUBLAS_FUNCTIONS(FSAD_LIBRARY_SYMBOL)
    });
}
const CusolverApi& cusolver_api() {
    return load_once<CusolverApi>([](CusolverApi& api) {
        const std::string what = "cuSOLVER (" FSAD_CUSOLVER_SONAME ")";
        void* h = open_library(what, candidates(FSAD_CUSOLVER_SONAME, FSAD_CUSOLVER_DIR));
        FSAD_CUSOLVER_FUNCTIONS(FSAD_LIBRARY_SYMBOL)
    });
}
#undef FSAD_LIBRARY_SYMBOL
#endif

}  // namespace fsad::cuda
