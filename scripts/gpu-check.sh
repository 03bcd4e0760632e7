#!/usr/bin/env bash
# One prepared run on a GPU machine (fits in 8 minutes on an H200): builds fsad with the CUDA
# backend for sm_90 only, runs the CPU-vs-CUDA parity tests, the GPU benchmarks and the PyTorch
# GPU peer on the same shapes. Output goes to stdout and to $OUT (or ./gpu-check) as files.
# Needs the CUDA toolkit with cuDNN, cmake, a C++ compiler, and the Debian packages of
# scripts/bootstrap.sh (already present on the project's machines; no network needed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-gpu-check}
mkdir -p "$OUTDIR"
ARCH=${FSAD_CUDA_ARCHITECTURES:-90}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUTDIR/nvidia-smi.txt"
echo "== build (CUDA, sm_$ARCH)"
t0=$(date +%s)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DFSAD_CUDA=ON -DFSAD_CUDA_ARCHITECTURES="$ARCH" \
      -DFSAD_BUILD_EXAMPLES=OFF >"$OUTDIR/configure.log" 2>&1 || { tail -n 30 "$OUTDIR/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" --target fsad_cuda_tests fsad_tests fsad_bench_cuda >"$OUTDIR/build.log" 2>&1 \
  || { grep -E "error" -A3 "$OUTDIR/build.log" | head -n 60; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
echo "== CPU-vs-CUDA parity tests"
timeout 300 build-gpu/tests/fsad_cuda_tests 2>&1 | tee "$OUTDIR/cuda-tests.txt" | tail -n 40
echo "== unit tests (the CPU suite, in the CUDA build)"
timeout 300 build-gpu/tests/fsad_tests 2>&1 | tail -n 3 | tee "$OUTDIR/unit-tests.txt"
echo "== GPU benchmarks (fsad)"
timeout 200 build-gpu/bench/fsad_bench_cuda --benchmark_min_time=0.2 --benchmark_format=console \
  --benchmark_out="$OUTDIR/bench_cuda.json" --benchmark_out_format=json 2>&1 | tee "$OUTDIR/bench_cuda.txt" | tail -n 60
echo "== GPU peer (PyTorch)"
timeout 150 python3 bench/torch_gpu_bench.py 2>&1 | tee "$OUTDIR/torch_gpu.txt"
echo "== side by side"
python3 bench/compare_gpu.py "$OUTDIR/bench_cuda.json" "$OUTDIR/torch_gpu.txt" 2>&1 | tee "$OUTDIR/compare.md"
echo "== done in $(( $(date +%s) - t0 )) s"
