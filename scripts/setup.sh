#!/usr/bin/env bash
# Installs every Debian package swift-vae needs to build, test and train on its default data.
# Safe to run again: it does nothing when everything is already present.
set -euo pipefail

packages=(libopenblas-dev zlib1g-dev libpng-dev libfreetype-dev fonts-dejavu-core pkg-config dataset-fashion-mnist openmpi-bin libopenmpi-dev)

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

if ! command -v swift >/dev/null 2>&1; then
  echo "setup: 'swift' is not on PATH; install Swift 6 (https://www.swift.org/install/linux/) first" >&2
  exit 1
fi
echo "setup: ready (OpenBLAS, zlib, libpng, FreeType + DejaVu fonts, Open MPI, Fashion-MNIST in /usr/share/datasets/fashion-mnist)"
