#!/usr/bin/env bash
# The main job on its embedded default: installs dependencies, builds, runs fsad_features on a
# generated texture pair. Pass real weights with FSAD_WEIGHTS=path/to/mobilenetv2.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target fsad_features
build/examples/fsad_features "$@"
