#!/usr/bin/env bash
# The GPU checks of issue 25 in one go, for a machine with an NVIDIA GPU and no Swift (the lent
# H200 machine): what vae finds there, every CUDA kernel against its CPU twin, and the peers'
# GPU figures for the speed table (PyTorch eager and compiled, JAX jit) when they are installed.
#
#   bash scripts/gpu_check.sh BUNDLE_DIR MNIST_DIR OUT_DIR
#
# BUNDLE_DIR is an unpacked `scripts/package.sh` tarball; MNIST_DIR holds the four IDX files.
# Writes OUT_DIR/gpu.md (the tables) and one log per step, in this order (the figures only this
# machine can give first, should a time limit cut the run short): the kernel checks, vae bench of
# the default, IWAE-preset and conv models and their variants, the peers (JAX, then PyTorch; the
# default, IWAE and conv models), 10 epochs on the GPU and on the CPU, the IWAE preset, the conv
# model 2 epochs on both, log p(x) on both (parity) and the GPU's speed at K = 5,000, kill -9 and
# --resume on the GPU, bad input, and PyTorch's log p(x) at K = 5,000.
set -uo pipefail
bundle=${1:?bundle folder}
mnist=${2:?MNIST folder}
out=${3:?output folder}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
vae="$bundle/bin/vae"
md=$out/gpu.md

{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    "$vae" --version 2>&1
    "$vae" devices 2>&1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    echo '```'
    echo
    echo "## Each kernel against its CPU twin (vae devices --check-kernels cuda:0)"
    echo
    "$vae" devices --check-kernels cuda:0 2>&1 | tee "$out/check-kernels.txt"
    echo
} > "$md"
# cuBLASLt's epilogues are new to the real GPU: should the ReLU masks' rows fail their check (or
# stop it), the rest of this run keeps the bias epilogues only (VAE_CUDA_LT=bias); should any other
# cuBLASLt row fail, it goes without cuBLASLt (VAE_CUDA_LT=0); either way the kernel check runs again so.
masks='RELU_AUX_BIAS|DRELU_BGRAD|with its (bias \+ ReLU with its mask|ReLU gradient)'
failed=$(grep -E 'cuBLASLt[^|]*\|.*DIFFERS|cublasLt[A-Za-z]*[^/]* failed' "$out/check-kernels.txt")
fallback=
if [ -n "$failed" ]; then
    if echo "$failed" | grep -qvE "$masks"; then fallback=0; else fallback=bias; fi
fi
# cuDNN likewise: should a row that ran through it fail (or stop the check), the rest goes without it.
if grep -qE 'cuDNN[^|]*\|.*DIFFERS|cuDNN.s convolution \(|cudnnSetStream failed' "$out/check-kernels.txt"; then
    export VAE_CUDA_CUDNN=0
    [ -n "$fallback" ] || fallback=${VAE_CUDA_LT:-1}
fi
# The steps' graphs of dependencies likewise: should the graphs' steps differ from the same steps
# launched plainly, the rest makes each graph a chain (VAE_CUDA_GRAPHS=chain) — a dependency the
# emulator did not catch missing, if the chain then agrees.
if grep -qE 'as CUDA graphs[^|]*\|.*DIFFERS' "$out/check-kernels.txt"; then
    export VAE_CUDA_GRAPHS=chain
    [ -n "$fallback" ] || fallback=${VAE_CUDA_LT:-1}
fi
if [ -n "$fallback" ]; then
    [ "$fallback" = 1 ] || export VAE_CUDA_LT=$fallback
    {
        echo "**A check of cuBLASLt's epilogues, cuDNN's convolutions or the steps' graphs failed: everything below runs with VAE_CUDA_LT=${VAE_CUDA_LT:-1} VAE_CUDA_CUDNN=${VAE_CUDA_CUDNN:-1} VAE_CUDA_GRAPHS=${VAE_CUDA_GRAPHS:-1}.**"
        echo
        "$vae" devices --check-kernels cuda:0 2>&1
        echo
    } >> "$md"
fi

# The function types and constants vae calls the CUDA libraries with, against this machine's
# headers (where it has them and a C++ compiler: a second or two).
includes=()
for d in "${CUDA_HOME:-/usr/local/cuda}/include" /usr/local/cuda/include $(python3 -c 'import glob, site; print(" ".join(d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/include")))' 2>/dev/null); do
    [ -d "$d" ] && includes+=("$d")
done
{
    echo "## vae's CUDA function types and constants against this machine's headers (scripts/cuda_abi_check.py)"
    echo
    echo '```'
    if [ ${#includes[@]} -eq 0 ]; then
        echo "not checked: no CUDA headers here (\$CUDA_HOME/include, /usr/local/cuda/include, PyPI's nvidia/*/include)"
    elif ! command -v "${CXX:-g++}" > /dev/null; then
        echo "not checked: no C++ compiler (${CXX:-g++}) here"
    else
        echo "headers: ${includes[*]}"
        timeout 60 python3 "$here/cuda_abi_check.py" "${includes[@]}" 2>&1 | grep -v '^ok ' | tail -20
    fi
    echo '```'
    echo
} >> "$md"

# swift-vae's speed first (what the lent time is for): vae bench of each model and variant.
{
    echo "## swift-vae's speed on this GPU (vae bench: a warm-up epoch, then the median of 3; MNIST)"
    echo
    echo "| run | s/epoch (ms/step; graphs; epilogues; the device's split of a step) |"
    echo "|---|---|"
} >> "$md"
bench_row() { # title, extra flags…
    local title=$1; shift
    local bench
    bench=$(timeout 120 "$vae" bench --dataset mnist --data-dir "$mnist" --device cuda:0 --repeats 3 --json "$@" 2>>"$out/bench-gpu.txt" | grep '^{')
    echo "| $title | $(echo "$bench" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f (%.3f ms/step, the host queuing it %.3f; CUDA graphs: %s; pieces per step: %s; bias epilogues: %s; convolutions: %s; device %.3f ms, launched piece by piece = products %.3f + update %.3f + other %.3f; %.1f%% of the FP32 peak; %d MiB; largest pieces, ms per step: %s)" % (d["train_seconds_per_epoch"], d["step_ms"], d.get("host_ms_per_step", -1), d.get("cuda_graphs", "?"), d.get("step_pieces", "?"), d.get("bias_epilogues", "?"), d.get("convolutions", "none"), d["device_step_ms"], d["products_ms_per_step"], d["update_ms_per_step"], d["other_ms_per_step"], 100 * d.get("fraction_of_fp32_peak", 0), d["gpu_memory_used_mib"], d.get("kernels_ms_per_step", "?")))' 2>/dev/null || echo failed) |" >> "$md"
}
bench_row "cuda:0, vae bench (median of 3 epochs)"
VAE_CUDA_GRAPHS=chain bench_row "cuda:0, vae bench, VAE_CUDA_GRAPHS=chain (a graph whose pieces wait each for the one before)"
VAE_CUDA_GRAPHS=0 bench_row "cuda:0, vae bench, VAE_CUDA_GRAPHS=0 (plain launches)"
VAE_CUDA_SPLIT_K=auto bench_row "cuda:0, vae bench, VAE_CUDA_SPLIT_K=auto (small products split along k)"
VAE_CUDA_LT=0 bench_row "cuda:0, vae bench, VAE_CUDA_LT=0 (cuBLAS products, a bias pass per layer)"
bench_row "cuda:0, vae bench --preset iwae-paper (batch 20)" --preset iwae-paper
VAE_CUDA_GRAPHS=chain bench_row "cuda:0, vae bench --preset iwae-paper, VAE_CUDA_GRAPHS=chain" --preset iwae-paper
VAE_CUDA_GRAPHS=0 bench_row "cuda:0, vae bench --preset iwae-paper, VAE_CUDA_GRAPHS=0" --preset iwae-paper
bench_row "cuda:0, vae bench --arch conv (median of 3 epochs)" --arch conv
VAE_CUDA_CUDNN=0 bench_row "cuda:0, vae bench --arch conv, VAE_CUDA_CUDNN=0 (patch matrices and cuBLAS)" --arch conv
VAE_CUDA_SPLIT_K=auto bench_row "cuda:0, vae bench --arch conv, VAE_CUDA_SPLIT_K=auto" --arch conv
bench_row "cuda:0, vae bench --precision bf16 (median of 3 epochs)" --precision bf16
bench_row "cuda:0, vae bench --arch conv --precision bf16 (median of 3 epochs)" --arch conv --precision bf16
echo >> "$md"
# The peers on the GPU, right after our own figures: 3 epochs each (epochs 2–3 are the steady
# state); JAX first, the fastest peer of every row of the issue's table.
peer() { # title, log name, command…
    local title=$1 name=$2; shift 2
    timeout 120 "$@" > "$out/$name.txt" 2>&1
    local epochs
    epochs=$(grep -oE 'epoch [0-9]+: [0-9.]+ s' "$out/$name.txt" | awk '{print $3}' | paste -sd, -)
    echo "| $title | ${epochs:-failed (see $name.txt)} |" >> "$md"
}
{
    echo "## The peers on this GPU, batch 128 unless said (s/epoch, epochs 1–3; the first compiles)"
    echo
    echo "| peer | seconds per epoch |"
    echo "|---|---|"
} >> "$md"
if python3 -c 'import jax' 2>/dev/null; then
    peer "JAX jit" jax-gpu python3 "$here/jax_reference.py" 3 --data-dir "$mnist" --device gpu
    peer "JAX jit, iwae-paper protocol (batch 20)" jax-gpu-iwae python3 "$here/jax_reference.py" 3 --data-dir "$mnist" --device gpu --protocol iwae-paper
    peer "JAX jit, conv model" jax-gpu-conv python3 "$here/jax_reference.py" 3 --data-dir "$mnist" --device gpu --protocol conv
fi
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    peer "PyTorch eager" torch-eager python3 "$here/pytorch_reference.py" --device cuda --epochs 3 --data-dir "$mnist"
    peer "PyTorch torch.compile reduce-overhead" torch-compiled python3 "$here/pytorch_reference.py" --device cuda --compile reduce-overhead --epochs 3 --data-dir "$mnist"
    peer "PyTorch eager, conv model" torch-eager-conv python3 "$here/pytorch_reference.py" --device cuda --protocol conv --epochs 3 --data-dir "$mnist"
fi
echo >> "$md"

# swift-vae itself: the default model on MNIST, 10 epochs on the GPU and on the CPU, same seed:
# seconds per epoch of training (metrics.csv's `seconds`, evaluation excluded) and the test −ELBO.
column() { # file, column name → the column's values, comma-separated
    awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } NR > 1 && c { printf "%s%s", (NR > 2 ? "," : ""), $c }' "$1"
}
{
    echo "## swift-vae, default model, MNIST, batch 128, 10 epochs, seed 1"
    echo
    echo "| device | s/epoch (training) | test −ELBO after epoch 10 |"
    echo "|---|---|---|"
} >> "$md"
for device in cuda:0 cpu; do
    rm -rf "$out/run-$device"
    timeout 300 "$vae" train --dataset mnist --data-dir "$mnist" --epochs 10 --device "$device" --progress none --no-tensorboard --no-report \
        --out "$out/run-$device" > "$out/train-$device.txt" 2>&1
    if [ -f "$out/run-$device/metrics.csv" ]; then
        elbo=$(column "$out/run-$device/metrics.csv" test_neg_elbo | awk -F, '{ print $NF }')
        echo "| $device | $(column "$out/run-$device/metrics.csv" seconds) | $elbo |" >> "$md"
    else
        echo "| $device | failed: $(tail -1 "$out/train-$device.txt") | |" >> "$md"
    fi
done
# The IWAE preset (784-200-200-50 tanh, batch 20, binarised, sampled KL): 3 epochs on the GPU.
rm -rf "$out/run-iwae"
timeout 200 "$vae" train --preset iwae-paper --data-dir "$mnist" --epochs 3 --device cuda:0 --progress none --no-tensorboard --no-report \
    --out "$out/run-iwae" > "$out/train-iwae.txt" 2>&1
if [ -f "$out/run-iwae/metrics.csv" ]; then
    echo "| cuda:0, --preset iwae-paper (batch 20), 3 epochs | $(column "$out/run-iwae/metrics.csv" seconds) | $(column "$out/run-iwae/metrics.csv" test_neg_elbo | awk -F, '{ print $NF }') |" >> "$md"
else
    echo "| cuda:0, --preset iwae-paper | failed: $(tail -1 "$out/train-iwae.txt") | |" >> "$md"
fi
# The conv reference model (--arch conv: 32 and 64 channels, transposed convolutions): 2 epochs
# on the GPU and on the CPU, same seed.
for device in cuda:0 cpu; do
    rm -rf "$out/conv-$device"
    timeout 200 "$vae" train --dataset mnist --data-dir "$mnist" --arch conv --epochs 2 --device "$device" --progress none --no-tensorboard \
        --no-report --out "$out/conv-$device" > "$out/train-conv-$device.txt" 2>&1
    if [ -f "$out/conv-$device/metrics.csv" ]; then
        echo "| $device, --arch conv, 2 epochs | $(column "$out/conv-$device/metrics.csv" seconds) | $(column "$out/conv-$device/metrics.csv" test_neg_elbo | awk -F, '{ print $NF }') |" >> "$md"
    else
        echo "| $device, --arch conv | failed: $(tail -1 "$out/train-conv-$device.txt") | |" >> "$md"
    fi
done

# Importance sampling: GPU vs CPU on the same weights and samples (K = 1,000, 1,000 images), and
# the GPU's speed at the papers' K = 5,000 over all 10,000 test images.
json_field() { python3 -c "import json,sys; d=json.loads([l for l in sys.stdin.read().splitlines() if l.startswith('{')][-1]); print(d$1)" 2>/dev/null; }
{
    echo "## log p(x) by importance sampling (vae eval --iw-samples, the GPU run's weights)"
    echo
    echo "| what | cuda:0 | cpu |"
    echo "|---|---|---|"
} >> "$md"
if [ -f "$out/run-cuda:0/model.safetensors" ]; then
    run="$out/run-cuda:0"
    gpu=$(timeout 120 "$vae" eval "$run" --iw-samples 1000 --limit 1000 --device cuda:0 --json 2>>"$out/eval-gpu.txt")
    cpu=$(timeout 200 "$vae" eval "$run" --iw-samples 1000 --limit 1000 --json 2>>"$out/eval-cpu.txt")
    echo "| K = 1,000, 1,000 images: log p(x), seconds | $(echo "$gpu" | json_field '["log_px"], round(d["iw_seconds"], 2)') | $(echo "$cpu" | json_field '["log_px"], round(d["iw_seconds"], 2)') |" >> "$md"
    # In bf16 and in FP32 on the same samples (eval --precision bf16 estimates both).
    big=$(timeout 200 "$vae" eval "$run" --iw-samples 5000 --device cuda:0 --precision bf16 --json 2>>"$out/eval-gpu.txt")
    echo "| K = 5,000, 10,000 images, FP32: log p(x), seconds, M samples/s | $(echo "$big" | json_field '["log_px_fp32"], round(d["iw_seconds"], 2), round(5e7 / d["iw_seconds"] / 1e6, 1)') | |" >> "$md"
    echo "| K = 5,000, 10,000 images, bf16 products: log p(x), seconds, M samples/s, bf16 − FP32 | $(echo "$big" | json_field '["log_px"], round(d["iw_seconds_bf16"], 2), round(5e7 / d["iw_seconds_bf16"] / 1e6, 1), round(d["log_px_bf16_minus_fp32"], 4)') | |" >> "$md"
fi
echo >> "$md"

# Resume on the GPU: kill -9 during training, --resume, and compare with an uninterrupted run.
{
    echo "## kill -9 and --resume on the GPU (3 epochs, seed 1)"
    echo
} >> "$md"
common=(train --dataset mnist --data-dir "$mnist" --epochs 3 --device cuda:0 --progress none --no-tensorboard --no-report --checkpoint-every 50)
rm -rf "$out/resume-whole" "$out/resume-killed"
timeout 120 "$vae" "${common[@]}" --out "$out/resume-whole" > "$out/resume.txt" 2>&1
"$vae" "${common[@]}" --out "$out/resume-killed" >> "$out/resume.txt" 2>&1 &  # no timeout: $! must be vae itself
pid=$!
for _ in $(seq 1 600); do  # until epoch 1 is in metrics.csv (then we are in epoch 2)
    [ "$(wc -l 2>/dev/null < "$out/resume-killed/metrics.csv" || echo 0)" -ge 2 ] && break
    sleep 0.02
done
sleep 0.03
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at=$(wc -l 2>/dev/null < "$out/resume-killed/metrics.csv")
timeout 120 "$vae" train --resume "$out/resume-killed" --device cuda:0 --progress none --no-tensorboard --no-report >> "$out/resume.txt" 2>&1
if cmp -s "$out/resume-whole/model.safetensors" "$out/resume-killed/model.safetensors"; then
    echo "killed with $((killed_at - 1)) epoch(s) in metrics.csv, resumed: model.safetensors identical to the uninterrupted run's" >> "$md"
else
    echo "killed with $((killed_at - 1)) epoch(s) in metrics.csv, resumed: model.safetensors DIFFERS from the uninterrupted run's (see resume.txt)" >> "$md"
fi
echo >> "$md"

# Bad input on the GPU: each one line and a non-zero exit.
{
    echo "## Bad input (one line each, exit status)"
    echo
    echo '```'
} >> "$md"
# (A batch too large for the GPU is checked on the emulated GPU, whose 1 GiB a test can fill:
# on this one the host's per-layer limit comes first.)
for case in "--device cuda:7" "--device cuda:0 --batch-size 0" "--device cuda:0 --arch nope"; do
    rm -rf "$out/bad"
    # shellcheck disable=SC2086
    timeout 120 "$vae" train --dataset mnist --data-dir "$mnist" --epochs 1 --progress none --no-tensorboard --no-report --out "$out/bad" $case > "$out/bad.txt" 2>&1
    status=$?
    echo "vae train $case → exit $status: $(grep -m1 '^Error' "$out/bad.txt" || grep -v '^$' "$out/bad.txt" | tail -1)" >> "$md"
done
# What the machine lacks, on a run already saved (it must stay as it was): no GPU the driver
# shows (CUDA_VISIBLE_DEVICES empty), then — where a mount namespace of our own is allowed — a
# driver and a cuBLAS that cannot be loaded (each file hidden behind an empty one).
rm -rf "$out/saved"
timeout 120 "$vae" train --dataset mnist --data-dir "$mnist" --epochs 1 --progress none --no-tensorboard --no-report --out "$out/saved" > "$out/saved.txt" 2>&1
before=$(cat "$out/saved"/*.safetensors 2>/dev/null | sha256sum)
: > "$out/empty-library"
# `"${hide[@]}" FILE COMMAND…` runs COMMAND with FILE replaced by that empty file.
hide=(unshare --mount sh -c 'mount --bind "$0" "$1" && shift && exec "$@"' "$out/empty-library")
# Whether this machine lets us: a mount namespace of our own, and a bind mount in it.
can_hide=no
unshare --mount sh -c 'mount --bind "$0" "$0"' "$out/empty-library" 2>/dev/null && can_hide=yes
resume=("$vae" train --resume "$out/saved" --epochs 2 --progress none --device cuda:0)
libcuda=$(ldconfig -p 2>/dev/null | awk '$1 == "libcuda.so.1" { print $NF; exit }')
if [ -z "$libcuda" ]; then  # a driver on LD_LIBRARY_PATH (the emulated one)
    for folder in ${LD_LIBRARY_PATH//:/ }; do [ -f "$folder/libcuda.so.1" ] && { libcuda=$folder/libcuda.so.1; break; }; done
fi
libcublas=$("$vae" devices 2>/dev/null | sed -n 's/^  cublas [^(]*(\(.*\))$/\1/p' | head -1)
for case in "no GPU" "no driver" "no cuBLAS"; do
    file=
    case $case in
        "no driver") file=$libcuda ;;
        "no cuBLAS") file=$libcublas ;;
    esac
    if [ "$case" = "no GPU" ]; then
        CUDA_VISIBLE_DEVICES= timeout 120 "${resume[@]}" > "$out/bad.txt" 2>&1
        status=$?
    elif [ -n "$file" ] && [ "$can_hide" = yes ]; then
        timeout 120 "${hide[@]}" "$file" "${resume[@]}" > "$out/bad.txt" 2>&1
        status=$?
    else
        echo "vae train --resume RUN --device cuda:0, $case → not checked here (no file found, or no bind mount in a mount namespace of our own allowed)" >> "$md"
        continue
    fi
    echo "vae train --resume RUN --device cuda:0, $case → exit $status: $(grep -m1 '^Error' "$out/bad.txt" || grep -v '^$' "$out/bad.txt" | tail -1)" >> "$md"
done
after=$(cat "$out/saved"/*.safetensors 2>/dev/null | sha256sum)
[ -f "$out/saved/checkpoint.safetensors" ] && [ "$before" = "$after" ] && echo "(the saved run's checkpoint and weights unchanged by the three)" >> "$md" \
    || echo "(the saved run's files CHANGED or are missing: see saved.txt)" >> "$md"
# Several ranks on the GPU (refused for now), under the bundle's mpirun.
rm -rf "$out/bad"
timeout 120 "$bundle/bin/mpirun" --allow-run-as-root -np 2 "$vae" train --dataset mnist --data-dir "$mnist" --epochs 1 --progress none \
    --no-tensorboard --no-report --out "$out/bad" --device cuda:0 > "$out/bad.txt" 2>&1
status=$?
echo "mpirun -np 2 vae train --device cuda:0 → exit $status: $(grep -m1 '^Error' "$out/bad.txt" || grep -v '^$' "$out/bad.txt" | tail -1)" >> "$md"
echo '```' >> "$md"
echo >> "$md"

if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 200 python3 "$here/pytorch_reference.py" --device cuda --epochs 1 --iw-samples 5000 --data-dir "$mnist" > "$out/torch-iw.txt" 2>&1
    echo >> "$md"
    echo "PyTorch, K = 5,000 on this GPU: $(grep 'log p(x)' "$out/torch-iw.txt" || echo "failed (see torch-iw.txt)")" >> "$md"
fi
cat "$md"
