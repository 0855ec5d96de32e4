#!/usr/bin/env bash
# The many-core and many-rank measurements of issue 26 in one go, for a machine without Swift
# (the lent 16-core GPU machine): threads 1…N, ranks 1…N at the global batch of 128 and at 128
# per rank, bf16 against FP32, the 1-rank ≡ N-rank quality check, and the JAX and PyTorch CPU
# references when they are installed. Writes raw JSON lines and one Markdown table:
#
#   bash scripts/scaling_check.sh BUNDLE_DIR MNIST_DIR OUT_DIR [ROUNDS]
#   bash scripts/scaling_check.sh --continue BUNDLE_DIR MNIST_DIR OUT_DIR [ROUNDS]
#   bash scripts/scaling_check.sh --table OUT_DIR      # the table again from OUT_DIR/scaling.jsonl
#
# --continue keeps OUT_DIR/scaling.jsonl and runs only the rows it lacks (a second command on the
# same machine after a time limit cut the first short).
#
# BUNDLE_DIR is an unpacked `scripts/package.sh` tarball (bin/vae, bin/mpirun); MNIST_DIR holds
# the four IDX files; ROUNDS (default 2) alternates the thread counts that many times. Every
# figure is `vae bench`'s (warm-up epoch, then the median of the timed epochs).
set -uo pipefail
# scaling.md from scaling.jsonl (also by itself: `bash scripts/scaling_check.sh --table OUT_DIR`,
# for the JSON lines of a run a time limit cut short).
render_table() {
    python3 - "$1" <<'EOF'
import json, os, re, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "scaling.jsonl"))]
by = {}
for r in rows:
    by.setdefault(r["tag"], []).append(r)
def seconds(tag):
    vals = [r["result"]["train_seconds_per_epoch"] for r in by.get(tag, []) if "result" in r]
    return (min(vals), max(vals)) if vals else None
def fmt(v):
    return "—" if v is None else (f"{v[0]:.2f}" if abs(v[0] - v[1]) < 0.005 else f"{v[0]:.2f}–{v[1]:.2f}")
lines = ["| run | split | s/epoch | images/s | vs 1 | exchange ms/step | update ms/step | products ms/step |", "|---|---|---|---|---|---|---|---|"]
def add(tag, base):
    rs = [r["result"] for r in by.get(tag, []) if "result" in r]
    if not rs:
        lines.append(f"| {tag} | | failed | | | | | |"); return
    s = seconds(tag); ips = statistics.median(r["train_images_per_second"] for r in rs)
    b = [r["result"]["train_images_per_second"] for r in by.get(base, []) if "result" in r]
    ratio = f"{ips / statistics.median(b):.2f}×" if b else ""
    med = lambda k: f'{statistics.median(r.get(k, 0) for r in rs):.3f}'
    split = f'{rs[0].get("threads", 0) // max(rs[0].get("gemm_threads", 1), 1)} × {rs[0].get("gemm_threads", 1)}'
    lines.append(f"| {tag} | {split} | {fmt(s)} | {ips:,.0f} | {ratio} | {med('allreduce_ms_per_step')} | {med('update_ms_per_step')} | {med('products_ms_per_step')} |")
tags = list(dict.fromkeys(r["tag"] for r in rows))
for t in tags:
    if t.startswith("threads") or t.startswith("bf16") or t.startswith("hybrid"): add(t, "threads 1")
    elif "global" in t: add(t, "ranks 1, global batch 128")
    elif "per rank" in t: add(t, "ranks 1, batch 128 per rank")
for t in tags:
    if t.startswith("quality"): lines.append(f"| {t}: test −ELBO | | {by[t][0]['test_neg_elbo']} | | | | | |")
# What --threads auto timed and chose (its probe's line), for the probe's cost on this machine.
auto = [r["result"].get("split_choice") for r in by.get("threads auto (the default)", []) if "result" in r]
if any(auto): lines.append("\n" + "\n".join(f"- {a}" for a in auto if a))
for name in sorted(os.listdir(out)):
    m = re.match(r"(jax|torch)-cpu-(\d+)\.txt", name)
    if m:
        epochs = re.findall(r"epoch (\d+): ([0-9.]+) s", open(os.path.join(out, name)).read())
        steady = [float(s) for e, s in epochs if int(e) >= 2]
        lines.append(f"| {m.group(1)} CPU, {m.group(2)} cores (epochs 2–3) | | {', '.join(f'{s:.2f}' for s in steady) or 'failed'} | | | | | |")
open(os.path.join(out, "scaling.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
    # The model across machines, fitted to these rows (issue 26 item 6), when there are enough.
    if model=$(python3 "$(dirname "$0")/scaling_model.py" "$1/scaling.jsonl" 2>/dev/null); then
        printf '\n## Across machines (a model fitted to the rows above)\n\n%s\n' "$model" | tee -a "$1/scaling.md"
    fi
}
if [ "${1:-}" = "--table" ]; then
    render_table "${2:?output folder}"
    exit
fi
continuing=
if [ "${1:-}" = "--continue" ]; then
    continuing=1
    shift
fi
bundle=${1:?bundle folder}
mnist=${2:?MNIST folder}
out=${3:?output folder}
rounds=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
vae="$bundle/bin/vae"
mpirun=("$bundle/bin/mpirun" --allow-run-as-root --oversubscribe --bind-to core --mca btl self,vader)
cores=$(nproc)
counts=()
for n in 1 2 4 8 16 32 64; do [ "$n" -le "$cores" ] && counts+=("$n"); done
jsonl=$out/scaling.jsonl
[ -n "$continuing" ] && [ -f "$jsonl" ] || : > "$jsonl"
log=$out/scaling.log
data=(--dataset mnist --data-dir "$mnist")

# Whether the next row tagged so is already in scaling.jsonl (a tag may come several times: its
# n-th occurrence is done when the file holds n of it). A failed row is run again.
declare -A seen
done_before() { # tag
    seen[$1]=$(( ${seen[$1]:-0} + 1 ))
    [ "$(grep -cF "{\"tag\": \"$1\", \"result\"" "$jsonl")" -ge "${seen[$1]}" ] ||
        [ "$(grep -F "{\"tag\": \"$1\", \"test_neg_elbo\": " "$jsonl" | grep -vc 'null}')" -ge "${seen[$1]}" ]
}

# One bench, its JSON object tagged with what was run, appended to scaling.jsonl.
bench() { # tag, then the command
    local tag=$1; shift
    done_before "$tag" && return
    local line
    line=$("$@" 2>>"$log" | grep '^{' | tail -1)
    if [ -n "$line" ]; then
        echo "{\"tag\": \"$tag\", \"result\": $line}" >> "$jsonl"
    else
        echo "{\"tag\": \"$tag\", \"error\": \"no result (see scaling.log)\"}" >> "$jsonl"
    fi
}

{ date -u; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Flags' | cut -c1-300; "$vae" --version; } > "$out/machine.txt" 2>&1

for round in $(seq "$rounds"); do
    for n in "${counts[@]}"; do
        bench "threads $n" "$vae" bench "${data[@]}" --threads "$n" --repeats 2 --json
    done
done
# Every core split as the default run splits it (no --threads: the probe times the splits and
# takes the fastest), and the mixes of batch workers × GEMM threads themselves.
bench "threads auto (the default)" "$vae" bench "${data[@]}" --repeats 2 --json
for t in 2 4 8 16; do
    [ $((cores % t)) -eq 0 ] && [ "$t" -le "$cores" ] || continue
    workers="$((cores / t)) workers"
    [ "$t" -eq "$cores" ] && workers="1 worker"
    bench "threads $cores as $workers × $t GEMM threads" "$vae" bench "${data[@]}" --threads "$cores" --gemm-threads "$t" --repeats 2 --json
done
# bf16 (AMX where the CPU has it) on one and on every core, early: issue 26 item 5.
for n in 1 "$cores"; do
    bench "bf16, threads $n" "$vae" bench "${data[@]}" --threads "$n" --precision bf16 --repeats 2 --json
done
# Helpers pinned (the default) against left to the scheduler, on every core.
bench "threads $cores, VAE_PIN_WORKERS=0 (helpers not pinned)" env VAE_PIN_WORKERS=0 "$vae" bench "${data[@]}" --threads "$cores" --repeats 2 --json
for n in "${counts[@]}"; do
    bench "ranks $n, global batch 128" "${mpirun[@]}" -np "$n" "$vae" bench "${data[@]}" --threads 1 --repeats 2 --json
    bench "ranks $n, batch 128 per rank" "${mpirun[@]}" -np "$n" "$vae" bench "${data[@]}" --threads 1 --batch-size $((128 * n)) --repeats 2 --json
done
# Hybrid: R ranks of T threads sharing the mask (--bind-to none: each rank pins its helpers to its
# own share of the CPUs, by Open MPI's local rank), global batch 128.
for r in 2 4; do
    t=$((cores / r))
    [ "$t" -ge 2 ] || continue
    bench "hybrid: ranks $r × threads $t, global batch 128" "$bundle/bin/mpirun" --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader \
        -np "$r" "$vae" bench "${data[@]}" --threads "$t" --repeats 2 --json
done
# The exchange variants where they matter (auto: sharded from 4 ranks, no overlap on one host).
for n in 4 8 16; do
    [ "$n" -le "$cores" ] || continue
    bench "ranks $n, global batch 128, --sharded-update never" "${mpirun[@]}" -np "$n" "$vae" bench "${data[@]}" --threads 1 --sharded-update never --repeats 2 --json
    bench "ranks $n, global batch 128, --sharded-update never --overlap always" "${mpirun[@]}" -np "$n" "$vae" bench "${data[@]}" --threads 1 --sharded-update never --overlap always --repeats 2 --json
done

# bf16 against FP32 after 10 epochs on every core (the issue's bar: within 0.3 nats).
for precision in fp32 bf16; do
    done_before "quality, $precision, 10 epochs, $cores threads" && continue
    rm -rf "$out/precision-$precision"
    "$vae" train "${data[@]}" --epochs 10 --threads "$cores" --precision "$precision" --progress none --no-tensorboard --no-report \
        --out "$out/precision-$precision" >>"$log" 2>&1
    elbo=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "test_neg_elbo") c = i } NR > 1 { v = $c } END { print v }' "$out/precision-$precision/metrics.csv" 2>/dev/null)
    echo "{\"tag\": \"quality, $precision, 10 epochs, $cores threads\", \"test_neg_elbo\": ${elbo:-null}}" >> "$jsonl"
    rm -rf "$out/precision-$precision"
done

# Quality: 3 epochs on 1, 2, 4 and 8 ranks (the sharded update), test −ELBO of the last epoch.
for n in 1 2 4 8; do
    [ "$n" -le "$cores" ] || continue
    done_before "quality, ranks $n, 3 epochs" && continue
    rm -rf "$out/ranks-$n"
    "${mpirun[@]}" -np "$n" "$vae" train "${data[@]}" --epochs 3 --threads 1 --progress none --out "$out/ranks-$n" >>"$log" 2>&1
    elbo=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "test_neg_elbo") c = i } NR > 1 { v = $c } END { print v }' "$out/ranks-$n/metrics.csv" 2>/dev/null)
    echo "{\"tag\": \"quality, ranks $n, 3 epochs\", \"test_neg_elbo\": ${elbo:-null}}" >> "$jsonl"
    rm -rf "$out/ranks-$n"
done

# The peers on the same cores, when installed (3 epochs; epochs 2–3 are the steady state).
if python3 -c 'import jax' 2>/dev/null; then
    for n in 1 "$cores"; do
        [ -n "$continuing" ] && grep -q "epoch 3:" "$out/jax-cpu-$n.txt" 2>/dev/null && continue
        taskset -c 0-$((n - 1)) python3 "$here/jax_reference.py" 3 --data-dir "$mnist" --device cpu > "$out/jax-cpu-$n.txt" 2>>"$log"
    done
fi
if python3 -c 'import torch' 2>/dev/null; then
    for n in 1 "$cores"; do
        [ -n "$continuing" ] && grep -q "epoch 3:" "$out/torch-cpu-$n.txt" 2>/dev/null && continue
        taskset -c 0-$((n - 1)) python3 "$here/pytorch_reference.py" --epochs 3 --threads "$n" --data-dir "$mnist" --device cpu > "$out/torch-cpu-$n.txt" 2>>"$log"
    done
fi

render_table "$out"
