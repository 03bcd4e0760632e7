#!/usr/bin/env bash
# The ABI check: the dynamic symbols libfsad_c.so defines must be exactly tests/capi/abi_symbols.txt.
# A change fails until that list is updated on purpose (and FSAD_ABI_VERSION bumped when a symbol
# goes away or changes meaning). Usage: check_abi.sh LIBFSAD_C LIST
set -euo pipefail
lib=$1 list=$2
actual=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
if ! diff -u "$list" <(echo "$actual"); then
  echo "FAIL: libfsad_c exports differ from $list (- expected, + exported)"
  exit 1
fi
echo "ok: $(echo "$actual" | wc -l) exported symbols as listed"
