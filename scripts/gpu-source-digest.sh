#!/usr/bin/env bash
# One digest of the sources that the binaries of scripts/gpu-bundle.sh are built from (C++,
# CUDA and CMake files under src, include, tests, bench, examples, third_party, cmake and the top
# CMakeLists.txt), the same on any machine for the same files; no git needed.
set -euo pipefail
cd "$(dirname "$0")/.."
find src include tests bench examples third_party cmake CMakeLists.txt -type f \
     \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \
        -o -name 'CMakeLists.txt' -o -name '*.cmake' -o -name '*.in' \) -print0 2>/dev/null \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
