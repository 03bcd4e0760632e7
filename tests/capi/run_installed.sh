#!/usr/bin/env bash
# The C ABI as a user gets it: installs the build into a scratch prefix, then against that tree
# builds the C example twice (find_package(fsad) -> fsad::fsad_c in a C-only project, and plain
# cc with pkg-config's fsad.pc) and runs both, runs the ctypes smoke test, and compiles and runs
# the C# P/Invoke example when mcs and mono are installed (Debian mono-mcs, mono-runtime).
# Usage: run_installed.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
SRC=$1 BUILD=$2 W=$3
rm -rf "$W" && mkdir -p "$W"
P=$W/prefix
cmake --install "$BUILD" --prefix "$P" >/dev/null
lib=$(ls "$P"/lib*/libfsad_c.so | head -n 1)
libdir=$(dirname "$lib")
echo "installed $lib"

"$P/bin/fsad" synth -o "$W/ds" --size 48 --pool 6 --test 1 --products metal >/dev/null
normal=("$W"/ds/metal/train/good/00{0,1,2,3}.png)
test_img=$(ls "$W"/ds/metal/test/*/000.png | head -n 1)

echo "== C example, CMake package (C only)"
cmake -S "$SRC/examples/c" -B "$W/c-cmake" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$W/c-cmake" >/dev/null
"$W/c-cmake/fsad_example" "$W/c1.fsad" "$test_img" "${normal[@]}" | tee "$W/c1.log"
grep -q "loaded model scores .* (same)" "$W/c1.log"
grep -q "equal to the decide call's" "$W/c1.log"
grep -q "loading a missing file: io: .*no/such/model.fsad" "$W/c1.log"

echo "== C example, pkg-config"
PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --exists fsad
cc -std=c99 -Wall -Wextra -Werror -pedantic "$SRC/examples/c/fsad_example.c" \
   $(PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --cflags --libs fsad) -lm -Wl,-rpath,"$libdir" -o "$W/fsad_example_pc"
"$W/fsad_example_pc" "$W/c2.fsad" "$test_img" "${normal[@]}" >"$W/c2.log"
grep -q "(same)" "$W/c2.log" && echo "ok (pkg-config build)"
# the scores do not depend on how the program was built
[[ $(grep '^score' "$W/c1.log") == $(grep '^score' "$W/c2.log") ]]

echo "== ctypes"
python3 "$SRC/tests/capi/test_ctypes.py" "$lib" "$W/ds/metal/train/good" "$test_img" "$W"

echo "== C# (P/Invoke)"
if command -v mcs >/dev/null && command -v mono >/dev/null; then
  mcs -nologo -out:"$W/FsadExample.exe" "$SRC/examples/csharp/FsadExample.cs"
  LD_LIBRARY_PATH=$libdir mono "$W/FsadExample.exe" "$W/cs.fsad" "$test_img" "${normal[@]}"
else
  echo "skipped: mcs/mono not installed (Debian: mono-mcs mono-runtime)"
fi
echo "capi installed-tree tests passed"
