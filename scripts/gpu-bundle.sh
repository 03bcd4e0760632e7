#!/usr/bin/env bash
# Prepares, on a build machine without a GPU, what scripts/gpu-check.sh needs on a GPU machine
# that has the CUDA toolkit but none of fsad's Debian packages, so that the short GPU lease is
# not spent building:
#   .gpu/fsad-gpu.tar.gz
#     bin/    fsad_cuda_tests, fsad_tests, fsad_bench_cuda, fsad (built here with CUDA, sm_90 by
#             default, portable CPU code: the GPU machine's processor is not this one)
#     lib/    the shared libraries they need that are not glibc, libstdc++ or CUDA's (OpenBLAS,
#             gfortran, quadmath, gomp, stb, Google Benchmark)
#     deps/   headers, CMake package files and libraries of the Debian packages, for building on
#             the GPU machine when the carried binaries cannot run there (gpu-check.sh's fallback)
#     SOURCE  a digest of the sources the binaries were built from; gpu-check.sh compares it with
#             the tree it runs in and builds there instead when they differ
#   .gpu/mt128/, .gpu/mobilenetv2_imagenet.safetensors (when ../shared has them): Magnetic Tile
#     at 128 px and ImageNet weights for gpu-check.sh's AUROC of each precision
# Then: device run with carry [".gpu"] and command "scripts/gpu-check.sh".
# Usage: scripts/gpu-bundle.sh   (env FSAD_CUDA_ARCHITECTURES, default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${FSAD_CUDA_ARCHITECTURES:-90}
BUILD=build-gpu-bundle
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

scripts/bootstrap.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFSAD_CUDA=ON -DFSAD_CUDA_ARCHITECTURES="$ARCH" -DFSAD_NATIVE=OFF \
      -DFSAD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fsad_cuda_tests fsad_tests fsad_bench_cuda fsad_cli

mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/deps"
cp "$BUILD/tests/fsad_cuda_tests" "$BUILD/tests/fsad_tests" "$BUILD/bench/fsad_bench_cuda" "$STAGE/bin/"
cp "$BUILD/src/cli/fsad" "$STAGE/bin/fsad"

# Libraries resolved by the loader here, less those every Linux with a C++ toolchain has and
# CUDA's own (the GPU machine has its toolkit's; gpu-check.sh finds them there)
ldd "$STAGE"/bin/* | awk '/=> \//{print $1" "$3}' | sort -u | while read -r name path; do
    case "$name" in
        linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libstdc++*|libgcc_s*) ;;
        libcu*|libnv*) ;;
        *) cp -L "$path" "$STAGE/lib/$name" ;;
    esac
done

# Fallback build inputs: the Debian packages' headers, CMake files and libraries (not the static
# OpenBLAS archive, 30 MB, nor documentation), paths kept relative to /usr
for pkg in libopenblas-pthread-dev libopenblas0-pthread libbenchmark-dev libbenchmark1debian doctest-dev \
           nlohmann-json3-dev libstb-dev libstb0 libcli11-dev; do
    dpkg -L "$pkg" | while read -r f; do
        [[ "$f" == /usr/* && ( -f "$f" || -L "$f" ) && ! -d "$f" ]] || continue
        [[ "$f" == */share/doc/* || "$f" == */man/* || "$f" == *.a || "$f" == */liblapack* || "$f" == */libblas* ]] &&
            [[ "$f" != */libbenchmark_main.a ]] && continue
        mkdir -p "$STAGE/deps$(dirname "$f")"
        cp -P "$f" "$STAGE/deps$f"
    done
done
# a library already in lib/ is linked, not carried twice (OpenBLAS: 36 MB)
find "$STAGE/deps" -type f -name '*.so*' | while read -r f; do
    for l in "$STAGE"/lib/*; do
        if cmp -s "$f" "$l"; then
            ln -sf "$(realpath --relative-to="$(dirname "$f")" "$l")" "$f"
            break
        fi
    done
done
# Debian's alternatives links (libopenblas.so.0 -> /etc/alternatives/...) do not travel: point
# the fallback at the real files
ln -sf openblas-pthread/libopenblas.so.0 "$STAGE/deps/usr/lib/x86_64-linux-gnu/libopenblas.so" 2>/dev/null || true

scripts/gpu-source-digest.sh >"$STAGE/SOURCE"
{
    echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include tests bench CMakeLists.txt third_party cmake || echo ' + local changes')"
    echo "nvcc $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_$ARCH"
} >"$STAGE/BUILT"
mkdir -p .gpu
tar -C "$STAGE" -czf .gpu/fsad-gpu.tar.gz.tmp .
mv .gpu/fsad-gpu.tar.gz.tmp .gpu/fsad-gpu.tar.gz
echo "wrote .gpu/fsad-gpu.tar.gz ($(du -m .gpu/fsad-gpu.tar.gz | cut -f1) MiB): $(cat "$STAGE/BUILT" | tr '\n' ';')"

# The accuracy check of gpu-check.sh (AUROC of FP32, TF32, BF16 on Magnetic Tile): a 128 px copy
# of the dataset (tools/shrink_magnetic_tile.py, 13 MB) and the MobileNetV2 weights (9 MB), from
# ../shared when it is here; the device tool carries at most 64 MiB.
SHARED=../shared
PY=/usr/bin/python3  # Debian's, with python3-torchvision (a pyenv python3 on PATH may lack it)
[[ -x $PY ]] || PY=python3
if [[ -d $SHARED/data/magnetic-tile && -f $SHARED/weights/mobilenetv2_imagenet.safetensors ]] && "$PY" -c "import torchvision" 2>/dev/null; then
    [[ -d .gpu/mt128 ]] || "$PY" tools/shrink_magnetic_tile.py --root "$SHARED/data/magnetic-tile" --size 128 --out .gpu/mt128
    cp "$SHARED/weights/mobilenetv2_imagenet.safetensors" .gpu/mobilenetv2_imagenet.safetensors
else
    echo "no ../shared Magnetic Tile and weights (or no torchvision: scripts/bootstrap.sh --fixtures): gpu-check.sh skips its accuracy check"
fi
total=$(du -sm .gpu | cut -f1)
echo ".gpu holds $total MiB in all (the device tool carries at most 64 MiB)"
(( total <= 64 )) || { echo "too large to carry: remove .gpu/mt128 (the accuracy check) first" >&2; exit 1; }
