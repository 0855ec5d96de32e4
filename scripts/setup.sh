#!/usr/bin/env bash
# Installs every Debian package swift-vae needs to build and train on its default data; with
# --tests also what the tests use besides: Chromium (the HTML report is checked in a headless
# browser), g++ (an emulated GPU built from the CUDA kernels) and the tensorboard Python
# package (its reader checks the event files).
# Safe to run again: it does nothing when everything is already present.
set -euo pipefail

packages=(libdnnl-dev libopenblas-dev zlib1g-dev libpng-dev libfreetype-dev fonts-dejavu-core pkg-config dataset-fashion-mnist openmpi-bin libopenmpi-dev)
tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    *) echo "setup: unknown option $arg (use --tests to install what the tests need too)" >&2; exit 2 ;;
  esac
done
# g++: the tests build a stand-in GPU driver from the project's CUDA kernels (run on the host).
if [ "$tests" -eq 1 ]; then packages+=(chromium g++); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$tests" -eq 1 ] && ! python3 -c "import tensorboard" >/dev/null 2>&1; then
  echo "setup: installing the tensorboard Python package (for the tests)"
  # Debian's own Python refuses pip installs unless told (PEP 668); a pyenv or venv Python does not.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore tensorboard 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages tensorboard
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "setup: 'swift' is not on PATH; install Swift 6 (https://www.swift.org/install/linux/) first" >&2
  exit 1
fi
echo "setup: ready (oneDNN and OpenBLAS, zlib, libpng, FreeType + DejaVu fonts, Open MPI, Fashion-MNIST in /usr/share/datasets/fashion-mnist$([ "$tests" -eq 1 ] && echo "; for the tests Chromium and tensorboard"))"
