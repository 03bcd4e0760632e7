#!/usr/bin/env bash
# Installs the Debian packages fsad needs to build, test and benchmark. Idempotent; quiet when
# everything is present. Usage: scripts/bootstrap.sh [--tests] [--fixtures]
#   --tests     adds chromium (the report is rendered in a headless browser by a test)
#   --fixtures  adds python3-torch and friends (regenerating the golden test fixtures, the PyTorch
#               peer benchmark)
set -euo pipefail
pkgs=(build-essential cmake clang libopenblas-dev libstb-dev doctest-dev libbenchmark-dev nlohmann-json3-dev
      libcli11-dev python3)
for arg in "$@"; do
  case "$arg" in
    --tests) pkgs+=(chromium) ;;
    --fixtures) pkgs+=(python3-torch python3-torchvision python3-numpy python3-sklearn python3-scipy python3-threadpoolctl) ;;
    *) echo "bootstrap: unknown option $arg (--tests, --fixtures)" >&2; exit 2 ;;
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
