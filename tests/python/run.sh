#!/usr/bin/env bash
# ctest's entry to the pytest suite: skips (exit 77) with a message when the Python the module was
# built for lacks numpy or pytest (Debian: python3-numpy python3-pytest; scripts/bootstrap.sh --tests).
# Usage: run.sh PYTHON TEST_DIR
py=$1 dir=$2
if ! "$py" -c "import numpy, pytest" 2>/dev/null; then
  echo "skipped: $py has no numpy or pytest (Debian: python3-numpy python3-pytest)"
  exit 77
fi
exec "$py" -m pytest -q -p no:cacheprovider "$dir"
