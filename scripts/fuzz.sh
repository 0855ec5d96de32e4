#!/usr/bin/env bash
# Fuzzes every parser of untrusted input with libFuzzer (+ AddressSanitizer).
#   bash scripts/fuzz.sh [SECONDS_PER_PARSER] [PARSER …]      (default: 60 s, all parsers)
# Starts from Fuzz/seeds/<parser> and Fuzz/regressions/<parser>; writes crashing inputs to
# Fuzz/crashes/<parser>/ and merges the new interesting inputs into Fuzz/regressions/<parser>/,
# which the test suite replays (Tests/FuzzRegressionTests).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
parsers=("$@")
[ ${#parsers[@]} -gt 0 ] || parsers=(idx npy safetensors checkpoint png csv config run tfevents)

swift build --package-path Fuzz -c release --scratch-path Fuzz/.build \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld >/dev/null
bin=Fuzz/.build/release/vae-fuzz

for p in "${parsers[@]}"; do
  work=$(mktemp -d)
  mkdir -p "Fuzz/crashes/$p" "Fuzz/regressions/$p"
  echo "== $p: ${seconds}s"
  VAE_FUZZ_TARGET=$p "$bin" "$work" "Fuzz/seeds/$p" "Fuzz/regressions/$p" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=10 \
    -artifact_prefix="Fuzz/crashes/$p/" -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|ERROR|SUMMARY|Test unit written" || true
  # Keep a minimal set of inputs that cover what the run found.
  VAE_FUZZ_TARGET=$p "$bin" -merge=1 "Fuzz/regressions/$p" "$work" >/dev/null 2>&1 || true
  rm -rf "$work"
  echo "   crashes kept: $(ls "Fuzz/crashes/$p" | wc -l), regression inputs: $(ls "Fuzz/regressions/$p" | wc -l)"
done
