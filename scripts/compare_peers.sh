#!/usr/bin/env bash
# One round of the speed comparison of the README's Speed section: swift-vae (FP32 and bf16),
# JAX and PyTorch (FP32 and autocast bf16), the default model and protocol, on one core or both.
# Run it twice or more and compare round by round (the machines here are shared and noisy).
#
#   bash scripts/compare_peers.sh one|two
#
# Needs a release build (swift build -c release) and the two virtual environments of the
# reference scripts' docstrings (not part of CI); override their places with VAE, JAX_PYTHON,
# TORCH_PYTHON. swift-vae: the median of 3 timed epochs after a warm-up; JAX: epochs 2–4 (the
# first compiles); PyTorch: epochs 2–3.
set -euo pipefail
cd "$(dirname "$0")/.."
cores="${1:-}"
case "$cores" in
  one) pin=(taskset -c 0); threads=1 ;;
  two) pin=(); threads=2 ;;
  *) echo "usage: bash scripts/compare_peers.sh one|two" >&2; exit 2 ;;
esac
vae="${VAE:-.build/release/vae}"
jax="${JAX_PYTHON:-/tmp/jaxenv/bin/python}"
torch="${TORCH_PYTHON:-/tmp/torchenv/bin/python}"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $cores core(s)"
for precision in fp32 bf16; do
  echo "== swift-vae $precision"
  "${pin[@]}" "$vae" bench --threads "$threads" --repeats 3 --precision "$precision" 2>/dev/null | grep -E "s/epoch|fraction|FP32 matrix"
done
echo "== JAX fp32"
"${pin[@]}" "$jax" scripts/jax_reference.py 4 2>&1 | grep epoch
for precision in fp32 bf16; do
  echo "== PyTorch $precision"
  "${pin[@]}" "$torch" scripts/pytorch_reference.py --threads "$threads" --epochs 3 --precision "$precision" 2>&1 | grep epoch
done
