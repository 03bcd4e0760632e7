#!/usr/bin/env bash
# The main job on its embedded default: installs dependencies, builds the fsad tool and runs
# `fsad demo`: generated industrial textures with synthetic defects, few-shot detectors fitted
# per product, and a report (HTML with plots, Markdown, JSON) in ./fsad-demo. ImageNet weights
# are used when found (--weights FILE, $FSAD_WEIGHTS, ~/.cache/fsad/weights/<backbone>.safetensors);
# without them the demo says so and uses a random backbone. Extra arguments go to `fsad demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target fsad_cli
build/src/cli/fsad demo "$@"
