#!/usr/bin/env bash
# Everything a lent GPU machine is for, as the run tool's command (docs/device-checks.md):
# gpu_check.sh (issue 25) and scaling_check.sh (issue 26), each under a time limit of its own,
# then the few files worth bringing back copied into OUT (the run tool returns at most 8 files).
#
#   bash scripts/device_check.sh OUT [GPU_SECONDS [SCALING_SECONDS]]    # defaults 330 and 200
#
# Reads the bundle (device/swift-vae.tar.xz, unpacked once) and MNIST (device/mnist) from the
# carried folder device/, and works in .device-work/ (git-ignored, not carried, so a second
# command on the same warm machine finds it): GPU_SECONDS 0 skips the GPU part, and the scaling
# part continues from the rows the first command wrote (scaling_check.sh --continue).
#
# Back in OUT: gpu.md, scaling.md, scaling.jsonl, and three logs — device.txt (each part's exit
# status and seconds), gpu-logs.txt and scaling-logs.txt (the last lines of every log).
set -uo pipefail
out=${1:?the output folder (OUT)}
gpu_seconds=${2:-330}
scaling_seconds=${3:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/.device-work
mkdir -p "$work" "$out"
bundle=$work/bundle/swift-vae
if [ ! -x "$bundle/bin/vae" ]; then
    rm -rf "$work/bundle" && mkdir -p "$work/bundle"
    tar -C "$work/bundle" -xf "$root/device/swift-vae.tar.xz" || { echo "device_check: cannot unpack device/swift-vae.tar.xz" >> "$work/device.txt"; }
fi
mnist=$root/device/mnist

# One part under its limit; its exit status (124: the limit) and seconds into device.txt.
part() { # name, seconds, command…
    local name=$1 seconds=$2
    shift 2
    local start=$SECONDS
    timeout --kill-after=5 "$seconds" "$@"
    local status=$?
    echo "$(date -u '+%H:%M:%S') $name: exit $status after $((SECONDS - start)) s (limit $seconds s)" >> "$work/device.txt"
}

if [ "$gpu_seconds" -gt 0 ]; then
    part "gpu_check" "$gpu_seconds" bash "$root/scripts/gpu_check.sh" "$bundle" "$mnist" "$work/gpu"
fi
if [ "$scaling_seconds" -gt 0 ]; then
    continuing=()
    [ -s "$work/scaling/scaling.jsonl" ] && continuing=(--continue)
    part "scaling_check${continuing[*]:+ ${continuing[*]}}" "$scaling_seconds" bash "$root/scripts/scaling_check.sh" "${continuing[@]}" "$bundle" "$mnist" "$work/scaling" 1
    # The table from whatever rows there are (a run the limit cut short renders none itself).
    [ -s "$work/scaling/scaling.jsonl" ] && bash "$root/scripts/scaling_check.sh" --table "$work/scaling" > /dev/null
fi

# The last lines of each log of a folder, under its name.
tails() { # folder
    local file
    for file in "$1"/*.txt "$1"/*.log; do
        [ -f "$file" ] || continue
        echo "==> ${file#"$work"/} <=="
        tail -n 40 "$file"
        echo
    done
}
for file in gpu/gpu.md scaling/scaling.md scaling/scaling.jsonl; do
    [ -f "$work/$file" ] && cp "$work/$file" "$out/"
done
cp "$work/device.txt" "$out/" 2>/dev/null
[ -d "$work/gpu" ] && tails "$work/gpu" > "$out/gpu-logs.txt"
[ -d "$work/scaling" ] && tails "$work/scaling" > "$out/scaling-logs.txt"
cat "$work/device.txt" 2>/dev/null
exit 0
