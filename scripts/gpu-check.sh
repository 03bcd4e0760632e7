#!/usr/bin/env bash
# One prepared run on a GPU machine (sized for 8 minutes on an H200; every part has its own time
# limit and the later ones are skipped when the time is spent): the CPU-vs-CUDA parity tests, the
# GPU benchmarks beside the PyTorch GPU peer on the same shapes (NCHW and channels_last; FP32, TF32,
# BF16), compute-sanitizer's memcheck and racecheck over every parity case, the CPU suite and the
# CLI test in the CUDA build (with a GPU present), the demo (the main job) on the CPU and the GPU,
# and Magnetic Tile's AUROC by scorer and precision with fit and scoring times.
# Results go to stdout and to $OUT (or ./gpu-check), at most 8 files: log.txt, cuda-tests.txt,
# bench_cuda.json, bench_cuda.txt, profile.txt (fsad's per-op GPU time in the step, inference
# and scoring: ops::Profiler), torch_gpu.txt (with torch.profiler's table of its step),
# compare.md (the side-by-side table, written even when a benchmark run is cut short),
# sanitizer.txt.
#
# Binaries: those of scripts/gpu-bundle.sh when .gpu/fsad-gpu.tar.gz is present, was built from
# these very sources and can run here (their libraries found); otherwise fsad is built here with
# CUDA for sm_90 (FSAD_CUDA_ARCHITECTURES), taking OpenBLAS, doctest, Google Benchmark and the
# rest from the bundle's deps/ when the machine lacks the Debian packages. FSAD_GPU_BUILD=1
# forces the build, FSAD_GPU_DEPS=1 the use of deps/ even where the packages are installed.
# Needs nvcc and cuDNN on the GPU machine (found in the toolkit or in Python's nvidia-*
# packages), no network.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUTDIR=${OUT:-gpu-check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/log.txt"
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }
# the whole run's budget (FSAD_GPU_CHECK_SECONDS, default 470 s): `lim N` is a part's time limit,
# N seconds or what is left of the budget if less; a part with under 20 s left is skipped
budget=${FSAD_GPU_CHECK_SECONDS:-470}
lim() { local l=$(( budget - ($(date +%s) - t0) )); (( l > $1 )) && l=$1; (( l < 1 )) && l=1; echo "$l"; }
time_left() { (( $(lim 100000) >= 20 )) || { say "out of time: $1 skipped"; return 1; }; }
ARCH=${FSAD_CUDA_ARCHITECTURES:-90}
BUNDLE=/tmp/fsad-gpu
export FSAD_TEST_DATA="$ROOT/tests/data"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
say "machine: $(nproc) CPUs, $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), $(uname -r)"

# ---- CUDA libraries of this machine: the toolkit's, else Python's nvidia-* packages
find_lib_dir() {
    local so=$1 d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
        [[ -e "$d/$so" ]] && { echo "$d"; return 0; }
    done
    d=$(find /usr/local /opt /usr/lib /root -name "$so" 2>/dev/null | head -n1)
    [[ -n "$d" ]] && dirname "$d"
}
cuda_dirs=""
for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcusolver.so.12 libcusparse.so.12 libnvJitLink.so.13 \
          libcudnn.so.9 libcudnn_cnn.so.9 libcudnn_ops.so.9 libcudnn_graph.so.9 libcudnn_engines_precompiled.so.9; do
    d=$(find_lib_dir "$so")
    if [[ -z "$d" ]]; then say "CUDA library $so: not found"; continue; fi
    [[ ":$cuda_dirs:" == *":$d:"* ]] || cuda_dirs="${cuda_dirs:+$cuda_dirs:}$d"
done
say "CUDA library folders: ${cuda_dirs:-none}"
# fsad's programs find the bundle's libraries and CUDA's; Python (PyTorch) keeps the machine's own
# (the bundle's gfortran or gomp could shadow newer ones its packages need)
ORIG_LD="${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$BUNDLE/lib:${cuda_dirs}${ORIG_LD:+:$ORIG_LD}"
py() { LD_LIBRARY_PATH="$ORIG_LD" python3 "$@"; }

BIN=""
if [[ -f .gpu/fsad-gpu.tar.gz ]]; then
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE" && tar -C "$BUNDLE" -xzf .gpu/fsad-gpu.tar.gz
    say "bundle: $(tr '\n' ';' <"$BUNDLE/BUILT")"
    if [[ -n "${FSAD_GPU_BUILD:-}" ]]; then
        say "bundle: FSAD_GPU_BUILD set, building here"
    elif [[ "$(cat "$BUNDLE/SOURCE")" != "$(scripts/gpu-source-digest.sh)" ]]; then
        say "bundle: built from other sources than these (scripts/gpu-bundle.sh was not rerun): building here"
    elif missing=$(ldd "$BUNDLE"/bin/* 2>&1 | grep "not found" | sort -u) && [[ -n "$missing" ]]; then
        say "bundle: libraries not found here: $missing; building here"
    elif ! "$BUNDLE/bin/fsad" info >>"$LOG" 2>&1; then
        say "bundle: its fsad does not run here (log above); building here"
    else
        BIN="$BUNDLE/bin"
        say "bundle: using the carried binaries ($(elapsed))"
    fi
fi

if [[ -z "$BIN" ]]; then
    say "== build (CUDA, sm_$ARCH)"
    hints=()
    D="$BUNDLE/deps/usr"
    if [[ -d "$D" && ( -n "${FSAD_GPU_DEPS:-}" || ! -e /usr/include/doctest/doctest.h ) ]]; then  # no Debian packages here
        hints=(-DFSAD_OPENBLAS_INCLUDE="$D/include/x86_64-linux-gnu/openblas-pthread"
               -DFSAD_OPENBLAS_LIB="$D/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so"
               -DFSAD_STB_INCLUDE="$D/include/stb" -DFSAD_STB_LIB="$D/lib/x86_64-linux-gnu/libstb.so"
               -Ddoctest_DIR="$D/lib/cmake/doctest" -Dbenchmark_DIR="$D/lib/x86_64-linux-gnu/cmake/benchmark"
               -Dnlohmann_json_DIR="$D/share/cmake/nlohmann_json" -DCLI11_DIR="$D/share/cmake/CLI11")
        say "build: dependencies from the bundle's deps/"
    fi
    gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DFSAD_CUDA=ON -DFSAD_CUDA_ARCHITECTURES="$ARCH" \
          -DFSAD_NATIVE=OFF "${hints[@]}" >/tmp/fsad-configure.log 2>&1 \
        || { tail -n 40 /tmp/fsad-configure.log | tee -a "$LOG"; exit 1; }
    cmake --build build-gpu -j"$(nproc)" --target fsad_cuda_tests fsad_tests fsad_bench_cuda fsad_cli >/tmp/fsad-build.log 2>&1 \
        || { grep -E "error|Error" -A3 /tmp/fsad-build.log | head -n 80 | tee -a "$LOG"; exit 1; }
    mkdir -p build-gpu/bin
    ln -sf ../tests/fsad_cuda_tests ../tests/fsad_tests ../bench/fsad_bench_cuda ../src/cli/fsad build-gpu/bin/
    BIN="$ROOT/build-gpu/bin"
    say "built in $(elapsed)"
    "$BIN/fsad" info 2>&1 | tee -a "$LOG"
fi

# the GPU libraries are opened on first use (src/cuda/libraries.hpp): which ones `fsad info` found,
# and what a CPU-only start costs (8.6 MB linked lazily against 252 MB linked, on the build machine)
say "libraries: $("$BIN/fsad" info 2>&1 | grep -i 'cuda backend')"
if [[ -x /usr/bin/time ]]; then
    say "memory: $( { /usr/bin/time -f '%M KB maximum resident' "$BIN/fsad" --help >/dev/null; } 2>&1 | tail -n 1) (fsad --help)"
fi

say "== CPU-vs-CUDA parity tests ($(elapsed))"
timeout "$(lim 120)" "$BIN/fsad_cuda_tests" --duration=true 2>&1 | tee "$OUTDIR/cuda-tests.txt" | grep -v "^[0-9.]* s: " | tail -n 40
say "parity tests: exit ${PIPESTATUS[0]}; slowest cases:"
grep "^[0-9.]* s: " "$OUTDIR/cuda-tests.txt" | sort -rn | head -n 5 | tee -a "$LOG"

# fsad's benchmarks in two runs, each with its own time limit, so that a slow part cannot take the
# rest with it: the headline cases first (fine-tuning step, features, the detector's fit and scoring
# with each scorer, copies), the convolutions at every ResNet18 shape after the peer. Their JSON
# files are merged into bench_cuda.json (a run cut short keeps the benchmarks it finished:
# compare_gpu.py reads what is there), and the side-by-side table is written after each part.
bench() {  # bench NAME LIMIT ARGS...: one fsad_bench_cuda run into /tmp/fsad-bench-NAME.json
    local name=$1 limit=$2; shift 2
    FSAD_BENCH_PROFILE="$OUTDIR/profile.txt" timeout "$(lim "$limit")" "$BIN/fsad_bench_cuda" --benchmark_format=console \
        --benchmark_out="/tmp/fsad-bench-$name.json" --benchmark_out_format=json "$@" 2>&1 | tee -a "$OUTDIR/bench_cuda.txt" | tail -n 40
    say "fsad benchmarks ($name): exit ${PIPESTATUS[0]}"
}
compare() {
    py bench/compare_gpu.py "$OUTDIR/torch_gpu.txt" /tmp/fsad-bench-*.json >"$OUTDIR/compare.md" 2>&1
    py - "$OUTDIR/bench_cuda.json" /tmp/fsad-bench-*.json <<'PY' || true
import json, sys
sys.path.insert(0, "bench")
from compare_gpu import load_benchmarks
json.dump({"benchmarks": [b for p in sys.argv[2:] for b in load_benchmarks(p)]}, open(sys.argv[1], "w"), indent=1)
PY
}
rm -f /tmp/fsad-bench-*.json "$OUTDIR/bench_cuda.txt" "$OUTDIR/profile.txt"
say "== GPU benchmarks, fsad: step, features, detector, copies ($(elapsed))"
# (the op table's per-op benchmarks, ops/..., stay out: the time here goes to the model-sized ones)
bench main 150 --benchmark_filter='^(byol_step|byol_fit|infer_cuda|detector_score|detector_fit|copy_to_gpu|linear|batchnorm_relu)/'

say "== GPU peer, PyTorch: NCHW and channels_last, FP32, TF32, BF16 autocast ($(elapsed))"
PYTHONUNBUFFERED=1 timeout "$(lim 120)" env LD_LIBRARY_PATH="$ORIG_LD" python3 bench/torch_gpu_bench.py --profile 2>&1 | tee "$OUTDIR/torch_gpu.txt" \
    | grep -v "^torch \(forward\|backward\)"
compare
cat "$OUTDIR/compare.md" | tee -a "$LOG"

time_left "the convolution benchmarks" && say "== GPU benchmarks, fsad: convolutions ($(elapsed))" &&
bench conv 110 --benchmark_filter='cuda_conv2d' --benchmark_min_time=0.05
compare
say "side by side with the convolutions: $OUTDIR/compare.md ($(grep -c '^| conv' "$OUTDIR/compare.md") convolution rows)"

# compute-sanitizer over every parity case: memcheck (out-of-bounds and misaligned accesses, leaks
# of device memory) and racecheck (shared-memory hazards of fsad's own kernels); works on
# Firecracker machines, not on gVisor
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
: >"$OUTDIR/sanitizer.txt"
if [[ -n "$SAN" ]]; then
    for tool in memcheck racecheck; do
        time_left "$tool" || break
        say "== $tool over every parity case ($(elapsed))"
        timeout "$(lim 75)" "$SAN" --tool "$tool" --error-exitcode 9 "$BIN/fsad_cuda_tests" >/tmp/fsad-$tool.log 2>&1
        rc=$?
        { echo "== $tool: exit $rc"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|out of bounds|hazard|test cases" /tmp/fsad-$tool.log | head -n 40; } \
            >>"$OUTDIR/sanitizer.txt"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases" /tmp/fsad-$tool.log | head -n 5 | tee -a "$LOG"
        say "$tool: exit $rc (0 clean, 9 errors found, 124 timed out)"
    done
fi

# AUROC on real data by scorer and precision (TF32's and BF16's drift can only be measured on a
# GPU), with fit and scoring times: Magnetic Tile at 128 px from .gpu/mt128 with ImageNet
# MobileNetV2 weights (scripts/gpu-bundle.sh makes both from ../shared; tools/shrink_magnetic_tile.py
# says how the copy differs from the originals), 10 shots, seeds 0-2 paired (the same shots in every
# run): the defaults (patch scorers, auto), and the paper's global scorer with N_A = 40 without
# adaptation and with the fine-tuning recipe of docs/results.md (the 2026-12-04 run's three lines).
# Before the CPU suite and the demo, which ran on the first GPU run already.
MT=.gpu/mt128 MTW=.gpu/mobilenetv2_imagenet.safetensors
if [[ -d $MT && -f $MTW ]]; then
    say "== AUROC by scorer and precision, Magnetic Tile 128 px copy, MobileNetV2, 10 shots, seeds 0-2, GPU ($(elapsed))"
    mt=(eval --dataset magnetic-tile --root "$MT" --res 128 --shots 10 --seeds 3 --backbone mobilenetv2
        --weights "$MTW" --device cuda)
    global="--scorer global --n-augment 40"
    tuned="$global --method ours --freeze-stages 5 --freeze-bn --lr 1e-4 --steps 100 --batch 32"
    for run in "--method no-adapt" "--method no-adapt --precision bf16" "$global --method no-adapt" "$tuned" \
               "$tuned --precision bf16" "--method no-adapt --precision tf32"; do
        time_left "mt $run and the rest" || break
        rm -rf /tmp/fsad-mt
        # shellcheck disable=SC2086
        timeout "$(lim 45)" "$BIN/fsad" -q "${mt[@]}" $run --report /tmp/fsad-mt >/tmp/fsad-mt.log 2>&1
        rc=$?
        say "mt $run: exit $rc: $(grep -E 'seed [0-9]+: AUROC' /tmp/fsad-mt.log | sed -E 's/^ *magnetic-tile 10-shot //' | tr '\n' ';')"
        [[ $rc == 0 ]] || tail -n 5 /tmp/fsad-mt.log | tee -a "$LOG"
    done
fi
time_left "the CPU suite" && say "== CPU suite and CLI test in the CUDA build, GPU present ($(elapsed))"
timeout "$(lim 90)" "$BIN/fsad_tests" --test-case-exclude='*[shared]*' >/tmp/fsad-unit.log 2>&1
say "unit tests: exit $?: $(grep -E '^\[doctest\] (test cases|assertions)' /tmp/fsad-unit.log | tr '\n' ' ')"
grep -E "ERROR|FATAL|Status: FAILURE" /tmp/fsad-unit.log | head -n 30 >>"$LOG"
timeout "$(lim 90)" tests/cli/test_cli.sh "$BIN/fsad" "$ROOT/tests/data" /tmp/fsad-cli-test >/tmp/fsad-cli.log 2>&1
rc=$?
tail -n 15 /tmp/fsad-cli.log >>"$LOG"
say "cli test: exit $rc"

# the main job end to end (generated textures, fit with fine-tuning, score, AUROC) on the CPU and
# on the GPU in FP32 and BF16: the AUROC drift of each against the CPU and the wall times
say "== fsad demo: CPU FP32, GPU FP32 and BF16 ($(elapsed))"
for run in "cpu" "cuda" "cuda --precision bf16"; do
    time_left "demo --device $run" || break
    t1=$(date +%s.%N)
    rm -rf "/tmp/fsad-demo-${run// /}"
    # shellcheck disable=SC2086
    timeout "$(lim 60)" "$BIN/fsad" -q demo --products metal,fabric --shots 5 --seeds 1 -o "/tmp/fsad-demo-${run// /}" --device $run \
        >/tmp/fsad-demo.log 2>&1
    rc=$?
    say "demo --device $run: exit $rc, $(py -c "import time; print(f'{time.time() - $t1:.1f}')") s: $(grep -E 'seed [0-9]+: AUROC' /tmp/fsad-demo.log | sed 's/  (.*//' | tr '\n' ';')"
    [[ $rc == 0 ]] || tail -n 5 /tmp/fsad-demo.log | tee -a "$LOG"
done

say "== done in $(elapsed)"
