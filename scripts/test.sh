#!/usr/bin/env bash
# The test command (README, .ci/run): installs dependencies, builds, runs the whole test suite,
# then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (portable, and the
# convolution and model tests tuned for this CPU), the CUDA backend on the CUDA emulator (parity
# suite, CLI test, benchmark smoke run; also sanitized), then the fuzzers of the safetensors reader,
# the model file, the image decoder and the TOML configuration, each for a bounded time. Tests
# needing ../shared skip cleanly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== layers"
# every #include follows the layer graph of docs/architecture.md (a second, not a build)
scripts/check-layers.sh || { echo "fix the includes above or, if the graph itself changed, docs/architecture.md and scripts/check-layers.sh" >&2; exit 1; }
scripts/bootstrap.sh --tests
jobs=$(nproc)

echo "== build (Release)"
# FSAD_CUDA=AUTO: the CUDA backend is compiled and linked when the toolkit and cuDNN are present
# (its parity tests skip without a GPU); one architecture keeps the build short
# the C ABI (libfsad_c) and the Python module are built too, for Debian's Python (their tests:
# ctest labels capi and python)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFSAD_BUILD_BENCH=ON -DFSAD_CUDA_ARCHITECTURES="${FSAD_CUDA_ARCHITECTURES:-90}" \
      -DFSAD_BUILD_PYTHON=ON -DPython_EXECUTABLE=/usr/bin/python3 \
      | grep "fsad:" || true
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j1 | tee build/ctest.log
ctest_total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' build/ctest.log | tail -n 1)
ctest_skipped=$(grep -c '\*\*\*Skipped' build/ctest.log || true)

echo "== tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFSAD_SANITIZE=ON -DFSAD_BUILD_BENCH=OFF \
      -DFSAD_BUILD_EXAMPLES=OFF -DFSAD_NATIVE=OFF -DFSAD_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs" --target fsad_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/tests/fsad_tests

echo "== convolution and model tests under ASan + UBSan, tuned for this CPU (its AVX-512 kernels)"
# the portable build above does not compile src/cpu's AVX-512 paths (packed GEMM, transforms)
cmake -S . -B build-asan-native -DCMAKE_BUILD_TYPE=Debug -DFSAD_SANITIZE=ON -DFSAD_BUILD_BENCH=OFF \
      -DFSAD_BUILD_EXAMPLES=OFF -DFSAD_NATIVE=ON -DFSAD_CUDA=OFF >/dev/null
cmake --build build-asan-native -j"$jobs" --target fsad_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan-native/tests/fsad_tests \
  -tc="conv2d*,*prepare*,nn:*,golden*,detector:*"

echo "== the CUDA backend on the CUDA emulator, under ASan + UBSan (no GPU needed)"
# FSAD_CUDA=EMULATED: the CUDA backend's own sources built against tests/emu (kernels on the SIMT
# emulator, reference cuDNN/cuBLAS/cuSOLVER, lazy streams, checked device memory): the parity
# suite a GPU runs (tests/test_cuda.cpp) with two emulated devices, the CLI test (its GPU branch:
# fit and score with --device cuda, FP32 and TF32), and the GPU benchmarks once each at small
# sizes (FSAD_BENCH_SMOKE), so that their code has run before a GPU's minutes are spent on it
cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFSAD_CUDA=EMULATED -DFSAD_SANITIZE=ON -DFSAD_BUILD_BENCH=ON \
      -DFSAD_BUILD_EXAMPLES=ON -DFSAD_NATIVE=OFF >/dev/null
cmake --build build-emu -j"$jobs" --target fsad_cuda_tests fsad_cli fsad_bench_cuda
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
FSAD_EMU_DEVICES=2 build-emu/tests/fsad_cuda_tests
tests/cli/test_cli.sh build-emu/src/cli/fsad tests/data build-emu/cli-test >build-emu/cli.log 2>&1 \
  || { cat build-emu/cli.log; exit 1; }
tail -n 1 build-emu/cli.log
FSAD_BENCH_SMOKE=1 build-emu/bench/fsad_bench_cuda --benchmark_format=console >build-emu/bench.log 2>&1 \
  || { cat build-emu/bench.log; exit 1; }
if grep -q "ERROR OCCURRED" build-emu/bench.log; then cat build-emu/bench.log; exit 1; fi  # a benchmark that gave up
echo "$(grep -c "iterations:1" build-emu/bench.log) GPU benchmarks ran once each on the emulator"
unset ASAN_OPTIONS UBSAN_OPTIONS

# each reader of untrusted bytes for FSAD_FUZZ_SECONDS (default 45 s; 3 minutes for the four) on
# its seeds (tests/fuzz/seeds/<target>) and what earlier runs in this build folder found; an input
# that runs over 10 s counts as a hang
fuzz_targets="fuzz_safetensors fuzz_model fuzz_image fuzz_config"
echo "== fuzz: safetensors, model file, image decoder, TOML configuration (${FSAD_FUZZ_SECONDS:-45} s each)"
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFSAD_FUZZ=ON \
      -DFSAD_BUILD_TESTS=OFF -DFSAD_BUILD_BENCH=OFF -DFSAD_BUILD_EXAMPLES=OFF -DFSAD_NATIVE=OFF -DFSAD_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target $fuzz_targets
for t in $fuzz_targets; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "-- $t"
  dict=tests/fuzz/${t#fuzz_}.dict; [ -f "$dict" ] && dict_arg=(-dict="$dict") || dict_arg=()
  # halt_on_error: undefined behaviour (e.g. an index past an array inside a struct, which ASan
  # cannot see) ends the run like a crash
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "build-fuzz/tests/fuzz/$t" -max_total_time="${FSAD_FUZZ_SECONDS:-45}" \
      -timeout=10 -print_final_stats=1 "${dict_arg[@]}" -artifact_prefix=build-fuzz/ "build-fuzz/corpus/$t" "tests/fuzz/seeds/${t#fuzz_}" >"build-fuzz/$t.log" 2>&1; then
    tail -n 80 "build-fuzz/$t.log"; exit 1  # the input that failed is saved as build-fuzz/crash-* (or leak-, oom-, timeout-)
  fi
  grep -E "DONE|^Done|number_of_executed_units" "build-fuzz/$t.log" | tail -n 3
done
echo "== all tests passed"
# one closing line for CI: ctest's tests (a skipped one counts as skipped), the two sanitizer runs,
# the emulated backend's three runs and the four fuzzer runs
echo "summary: $((ctest_total - ctest_skipped + 9)) passed, 0 failed, ${ctest_skipped} skipped"
