#!/usr/bin/env bash
# Installs the Debian packages fsad needs to build, test and benchmark. Idempotent; quiet when
# everything is present. Usage: scripts/bootstrap.sh [--tests] [--fixtures] [--python]
#   --tests     adds chromium (the report is rendered in a headless browser by a test), the Python
#               package's build and test packages (pybind11, numpy, pytest) and Mono (the C#
#               example of the C ABI is compiled and run by a test)
#   --python    the Python package's packages, plus scikit-build-core from PyPI (pip --user; not in
#               Debian 12) for `pip install --no-build-isolation .`
#   --fixtures  adds python3-torch and friends (regenerating the golden test fixtures, the PyTorch
#               peer benchmark)
set -euo pipefail
pkgs=(build-essential cmake clang libopenblas-dev libstb-dev doctest-dev libbenchmark-dev nlohmann-json3-dev
      libcli11-dev python3)
want_skbuild=0
for arg in "$@"; do
  case "$arg" in
    --tests) pkgs+=(chromium python3-dev pybind11-dev python3-numpy python3-pytest pkg-config mono-mcs mono-runtime) ;;
    --python) pkgs+=(python3-dev pybind11-dev python3-numpy python3-pytest python3-pip python3-venv); want_skbuild=1 ;;
    --fixtures) pkgs+=(python3-torch python3-torchvision python3-numpy python3-sklearn python3-scipy python3-threadpoolctl) ;;
    *) echo "bootstrap: unknown option $arg (--tests, --fixtures, --python)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ((want_skbuild)) && ! /usr/bin/python3 -c "import scikit_build_core" 2>/dev/null; then
  # Debian 12's Python is externally managed (PEP 668): a user install, on purpose
  echo "bootstrap: installing scikit-build-core from PyPI (pip --user)"
  /usr/bin/python3 -m pip install --user --quiet --break-system-packages "scikit-build-core>=0.8"
fi
