#!/usr/bin/env bash
# The main job on its embedded default: installs dependencies, builds the fsad tool and runs
# `fsad demo`: generated industrial textures with synthetic defects, few-shot detectors fitted
# per product, and a report (HTML with plots, Markdown, JSON) in ./fsad-demo. ImageNet weights
# are used when found (--weights FILE, $FSAD_WEIGHTS, ~/.cache/fsad/weights/<backbone>.safetensors);
# without them the demo says so and uses a random backbone. Extra arguments go to `fsad demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# its own build folder, CPU only: the demo needs neither the tests nor the CUDA backend
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DFSAD_CUDA=OFF -DFSAD_BUILD_TESTS=OFF -DFSAD_BUILD_BENCH=OFF >/dev/null
cmake --build build-demo -j"$(nproc)" --target fsad_cli
build-demo/src/cli/fsad demo "$@"
