// The patch scorers' kernels on the GPU: the kernels are in patch.cuh (run by the CPU tests on
// the SIMT emulator too); here, the tensors, the stream and cuBLAS's products of nearest_distance.
#include "common.cuh"
#include "kernels.hpp"
#include "patch.cuh"

namespace fsad::cuda {

void resize_bilinear(const Tensor& x, int64_t planes, int64_t h, int64_t w, const Tensor& y, int64_t H, int64_t W) {
    StreamLaunch launch{context(x.device().index).stream};
    patch::resize_bilinear(launch, x.data(), y.data(), planes, h, w, H, W);
}

void channels_last(const Tensor& x, int64_t n, int64_t c, int64_t s, const Tensor& y) {
    StreamLaunch launch{context(x.device().index).stream};
    patch::channels_last(launch, x.data(), y.data(), n, c, s);
}

// g = q_chunk . bank^T by cuBLAS (row-major [rows, M] is column-major [M, rows]: gemm(T, N) as
// linear_forward), chunks of at most 2^26 products (256 MB of scratch), then one block per row.
void nearest_distance(const Tensor& q, const Tensor& bank, const Tensor& bank_sqnorm, const Tensor& out) {
    const int dev = q.device().index;
    Context& c = context(dev);
    StreamLaunch launch{c.stream};
    const int64_t P = q.dim(0), M = bank.dim(0), C = bank.dim(1);
    const int64_t chunk = std::clamp<int64_t>((int64_t(1) << 26) / M, 1, P);
    Scratch<float> g(dev, static_cast<size_t>(chunk * M));
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < P; r0 += chunk) {
        const int64_t rows = std::min(chunk, P - r0);
        FSAD_CUBLAS_CHECK(cublas_api().cublasSgemm(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(M), static_cast<int>(rows),
                                                   static_cast<int>(C), &one, bank.data(), static_cast<int>(C),
                                                   q.data() + r0 * C, static_cast<int>(C), &zero, g.p, static_cast<int>(M)));
        patch::nearest(launch, g.p, bank_sqnorm.data(), q.data() + r0 * C, bank.data(), out.data() + r0, rows, M, C);
    }
}

void gaussian_blur(const Tensor& x, int64_t planes, int64_t H, int64_t W, const std::vector<double>& taps, const Tensor& y) {
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    Scratch<double> k(dev, taps.size());
    FSAD_CUDA_CHECK(cudaMemcpyAsync(k.p, taps.data(), taps.size() * sizeof(double), cudaMemcpyHostToDevice, launch.stream));
    Scratch<float> tmp(dev, static_cast<size_t>(planes * H * W));
    patch::gaussian_blur(launch, x.data(), tmp.p, y.data(), k.p, static_cast<int64_t>(taps.size() / 2), planes, H, W);
}

void row_max(const Tensor& x, int64_t R, int64_t K, const Tensor& y) {
    StreamLaunch launch{context(x.device().index).stream};
    patch::row_max(launch, x.data(), y.data(), R, K);
}

}  // namespace fsad::cuda
