// Device tag carried by every tensor. Moving data between devices is always explicit.
#pragma once
#include <string>

namespace fsad {

enum class DeviceType { CPU = 0, CUDA = 1 };

struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;

    static constexpr Device cpu() { return {DeviceType::CPU, 0}; }
    static constexpr Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
    constexpr bool is_cpu() const { return type == DeviceType::CPU; }
    constexpr bool is_cuda() const { return type == DeviceType::CUDA; }
    friend constexpr bool operator==(Device a, Device b) { return a.type == b.type && a.index == b.index; }
    std::string str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }
};

/// Parses "cpu", "cuda" or "cuda:N"; throws fsad::Error otherwise.
Device parse_device(const std::string& s);

/// True when this build has the CUDA backend and at least one GPU is visible.
bool cuda_available();
/// Waits until the GPU work queued on `dev` has finished (no-op for the CPU). Benchmarks use it;
/// reading a tensor back (to, to_vector) synchronises by itself.
void synchronize(Device dev);
/// "NVIDIA H200 (sm_90, 139 GiB, 132 SMs, FP32 peak 66.9 TFLOP/s)"; throws fsad::CudaError
/// without such a device.
std::string cuda_device_name(int index);
/// The device's FP32 peak (no tensor cores) in TFLOP/s: SMs x FP32 lanes per SM x 2 x its SM
/// clock (the benchmarks report convolutions beside it); throws fsad::CudaError without such a
/// device.
double cuda_fp32_peak_tflops(int index);
/// True when this build contains the CUDA backend (FSAD_CUDA found nvcc and cuDNN).
bool cuda_built();
int cuda_device_count();
/// The CUDA libraries this process loaded and the driver, e.g. "CUDA runtime 13.0, driver 13.0,
/// cuDNN 9.19.0, cuBLAS 13.0.2, cuSOLVER 12.0.4" ("driver none" without one); empty without
/// the CUDA backend. Needs no GPU.
std::string cuda_versions();

}  // namespace fsad
