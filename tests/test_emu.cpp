// The CUDA emulator's own checks (tests/emu; built into fsad_cuda_tests with FSAD_CUDA=EMULATED
// only): each catches what it claims, so that the parity suite passing on it means something.
// The emulator explains each refusal on stderr; those lines are expected here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace {

__global__ void add_one_k(float* p, int n) {
    for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += static_cast<int>(blockDim.x * gridDim.x))
        p[i] += 1.0f;
}

std::vector<float> read(const float* d, size_t n) {
    std::vector<float> h(n);
    REQUIRE(cudaMemcpyAsync(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, nullptr) == cudaSuccess);
    return h;
}

struct DeviceBuffer {
    float* p = nullptr;
    explicit DeviceBuffer(size_t n) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)) == cudaSuccess); }
    ~DeviceBuffer() { cudaFree(p); }
};

}  // namespace

TEST_CASE("emu: device memory is its own: ranges, kinds and unwritten memory are checked") {
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
    DeviceBuffer d(16);
    std::vector<float> h(32, 1.0f);
    // fresh device memory is NaN: a read of what nothing wrote shows
    for (float v : read(d.p, 16)) CHECK(std::isnan(v));
    // a copy running past the allocation's end, or with a kind that does not match the pointers
    CHECK(cudaMemcpyAsync(d.p, h.data(), 32 * sizeof(float), cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);
    CHECK(cudaMemcpyAsync(h.data(), h.data() + 16, 16 * sizeof(float), cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);
    CHECK(cudaMemcpyAsync(d.p, h.data(), 16 * sizeof(float), cudaMemcpyDeviceToHost, nullptr) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // the last error, then cleared
    CHECK(cudaGetLastError() == cudaSuccess);
    // freeing what is not the start of a device allocation
    CHECK(cudaFree(d.p + 4) == cudaErrorInvalidValue);
    CHECK(cudaFree(h.data()) == cudaErrorInvalidValue);
    cudaGetLastError();
    // a good copy round-trips
    CHECK(cudaMemcpyAsync(d.p, h.data(), 16 * sizeof(float), cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    CHECK(read(d.p, 16) == std::vector<float>(16, 1.0f));
}

TEST_CASE("emu: streams are lazy: queued work runs when the host waits") {
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    DeviceBuffer d(8);
    float* pinned = nullptr;
    REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&pinned), 8 * sizeof(float), cudaHostAllocDefault) == cudaSuccess);
    // from pinned memory the copy reads the buffer when it runs: what the host wrote after the
    // call arrives (the bug a reused staging buffer would have)
    std::fill(pinned, pinned + 8, 1.0f);
    REQUIRE(cudaMemcpyAsync(d.p, pinned, 8 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
    std::fill(pinned, pinned + 8, 2.0f);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(read(d.p, 8) == std::vector<float>(8, 2.0f));
    // from pageable memory it is staged at the call, as CUDA does
    std::vector<float> pageable(8, 3.0f);
    REQUIRE(cudaMemcpyAsync(d.p, pageable.data(), 8 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
    std::fill(pageable.begin(), pageable.end(), 4.0f);
    // streams are independent: a wait on another stream (read() uses the default one) does not
    // run this one's work
    CHECK(read(d.p, 8) == std::vector<float>(8, 2.0f));
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(read(d.p, 8) == std::vector<float>(8, 3.0f));
    // into pinned memory nothing arrives before a wait; an event's wait is one
    cudaEvent_t e = nullptr;
    REQUIRE(cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess);
    std::fill(pinned, pinned + 8, 0.0f);
    REQUIRE(cudaMemcpyAsync(pinned, d.p, 8 * sizeof(float), cudaMemcpyDeviceToHost, s) == cudaSuccess);
    REQUIRE(cudaEventRecord(e, s) == cudaSuccess);
    CHECK(pinned[0] == 0.0f);
    REQUIRE(cudaEventSynchronize(e) == cudaSuccess);
    CHECK(pinned[0] == 3.0f);
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e, e) == cudaErrorInvalidResourceHandle);  // created without timing
    cudaGetLastError();
    cudaEventDestroy(e);
    CHECK(cudaFreeHost(pinned) == cudaSuccess);
}

TEST_CASE("emu: kernel launches: CUDA's limits and device pointers are checked") {
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
    DeviceBuffer d(100);
    std::vector<float> zeros(100, 0.0f);
    REQUIRE(cudaMemcpyAsync(d.p, zeros.data(), 100 * sizeof(float), cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    fsad_emu::launch(nullptr, add_one_k, dim3(2), dim3(64), d.p, 100);
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    CHECK(read(d.p, 100) == std::vector<float>(100, 1.0f));
    fsad_emu::launch(nullptr, add_one_k, dim3(1), dim3(2048), d.p, 100);  // more than 1024 threads
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    std::vector<float> host(100);
    fsad_emu::launch(nullptr, add_one_k, dim3(1), dim3(64), host.data(), 100);  // a host pointer
    CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
    CHECK(read(d.p, 100) == std::vector<float>(100, 1.0f));  // neither ran
}

TEST_CASE("emu: cuDNN and cuBLAS calls are checked against their descriptors and workspaces") {
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
    cudnnHandle_t h = nullptr;
    REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
    cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
    cudnnFilterDescriptor_t wd = nullptr;
    cudnnConvolutionDescriptor_t cd = nullptr;
    cudnnCreateTensorDescriptor(&xd);
    cudnnCreateTensorDescriptor(&yd);
    cudnnCreateFilterDescriptor(&wd);
    cudnnCreateConvolutionDescriptor(&cd);
    REQUIRE(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 5, 5) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 3, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
    DeviceBuffer x(50), w(54), y(75), ws(1 << 18);  // 1 MiB of workspace
    const float one = 1.0f, zero = 0.0f;
    // an output descriptor the convolution does not give
    REQUIRE(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 4, 4) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, static_cast<cudnnConvolutionFwdAlgo_t>(0), nullptr, 0, &zero,
                                  yd, y.p) == CUDNN_STATUS_BAD_PARAM);
    REQUIRE(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 5, 5) == CUDNN_STATUS_SUCCESS);
    // the search offers a failing algorithm, one that needs the workspace and one that does not
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int returned = 0;
    REQUIRE(cudnnFindConvolutionForwardAlgorithmEx(h, xd, x.p, wd, w.p, cd, yd, y.p, 8, &returned, perf, ws.p, size_t(1) << 20) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(returned == 3);
    CHECK(perf[0].status != CUDNN_STATUS_SUCCESS);
    CHECK(perf[1].memory > 0);
    CHECK(perf[2].memory == 0);
    const auto algo1 = perf[1].algo;
    // that algorithm without its workspace, or with one outside device memory; one never offered
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, algo1, nullptr, 0, &zero, yd, y.p) == CUDNN_STATUS_BAD_PARAM);
    std::vector<float> host_ws(1 << 18);
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, algo1, host_ws.data(), perf[1].memory, &zero, yd, y.p) ==
          CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, perf[0].algo, ws.p, size_t(1) << 20, &zero, yd, y.p) ==
          CUDNN_STATUS_NOT_SUPPORTED);
    // a buffer smaller than its descriptor
    DeviceBuffer small_y(10);
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, perf[2].algo, nullptr, 0, &zero, yd, small_y.p) ==
          CUDNN_STATUS_BAD_PARAM);
    // bfloat16 (PSEUDO_BFLOAT16_CONFIG): x, w and y all bfloat16, 2-byte elements, the result
    // rounded to nearest even; mixed types are not a supported configuration
    REQUIRE(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, 1, 2, 5, 5) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnConvolutionForward(h, &one, xd, x.p, wd, w.p, cd, perf[2].algo, nullptr, 0, &zero, yd, y.p) ==
          CUDNN_STATUS_NOT_SUPPORTED);
    REQUIRE(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NCHW, 3, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, 1, 3, 5, 5) == CUDNN_STATUS_SUCCESS);
    DeviceBuffer xb(25), wb(27), yb(38), short_yb(37);  // floats: 50, 54 and 75 (76) bfloat16 values
    std::vector<uint16_t> hx(50, 0x3f80), hw(54, 0x3f81);  // 1 and 1 + 2^-7: products 1 + 2^-7
    REQUIRE(cudaMemcpyAsync(xb.p, hx.data(), 100, cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(wb.p, hw.data(), 108, cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
    CHECK(cudnnConvolutionForward(h, &one, xd, xb.p, wd, wb.p, cd, perf[2].algo, nullptr, 0, &zero, yd, short_yb.p) ==
          CUDNN_STATUS_BAD_PARAM);
    REQUIRE(cudnnConvolutionForward(h, &one, xd, xb.p, wd, wb.p, cd, perf[2].algo, nullptr, 0, &zero, yd, yb.p) ==
            CUDNN_STATUS_SUCCESS);
    std::vector<uint16_t> hy(75);
    REQUIRE(cudaMemcpyAsync(hy.data(), yb.p, 150, cudaMemcpyDeviceToHost, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    // the centre sums 18 products: 18.140625 lies between the bfloat16 values 18.125 (0x4191) and
    // 18.25, nearer 18.125; an edge sums 12: 12.09375, the tie between 12.0625 (0x4141, odd) and
    // 12.125 (0x4142, even); a corner sums 8: 8.0625, a bfloat16 value (0x4101)
    CHECK(hy[12] == 0x4191);
    CHECK(hy[1] == 0x4142);
    CHECK(hy[0] == 0x4101);
    cudnnDestroyTensorDescriptor(xd);
    cudnnDestroyTensorDescriptor(yd);
    cudnnDestroyFilterDescriptor(wd);
    cudnnDestroyConvolutionDescriptor(cd);
    cudnnDestroy(h);

    // cuBLAS: a leading dimension below the rows, and a matrix running past its buffer
    cublasHandle_t b = nullptr;
    REQUIRE(cublasCreate(&b) == CUBLAS_STATUS_SUCCESS);
    DeviceBuffer A(12), B(12), C(9);
    CHECK(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 4, &one, A.p, 2, B.p, 4, &zero, C.p, 3) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 4, &one, A.p, 3, B.p, 4, &zero, C.p, 4) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 4, &one, A.p, 3, B.p, 4, &zero, C.p, 3) == CUBLAS_STATUS_SUCCESS);
    cublasDestroy(b);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}
