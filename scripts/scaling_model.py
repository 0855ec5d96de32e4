#!/usr/bin/env python3
"""The README's model of training across machines, fitted to scaling_check.sh's measurements.

    python3 scripts/scaling_model.py OUT_DIR/scaling.jsonl [--markdown FILE]

From the `vae bench` rows of one host (threads 1, ranks N at the global batch of 128, ranks N
at 128 per rank) it fits one rank's step without the exchange as

    t_c(b, N) = p + q·b + U/N_s

b the rows a rank trains per step, U the optimiser update of all the weights (each rank updates
1/N_s of it: N_s = N where the update is sharded, else 1), p the rest of the fixed part; p and q
by least squares over every row's compute time less its update, U as the median of the rows'
update × N_s. The exchange between machines is modelled, not measured (one host's shared memory
says nothing of a network): a reduce-scatter and an all-gather of the S bytes of the gradient
(the rows' allreduce_bytes_per_step), as a ring, t_x = 2(N−1)/N · S/bandwidth + 2(N−1)·α, with
α = 20 µs per hop on 10 Gb/s TCP and 5 µs on 100 Gb/s RDMA. Without overlap a step takes
t_c + t_x, so

  - per-rank batch b (the global batch N·b grows with the machines): efficiency t_c/(t_c + t_x),
    and the b at which it reaches 90%;
  - global batch B (each rank B/N rows): speed-up over one machine t_c(B, 1)/(t_c(B/N, N) + t_x).

Prints the fit and both tables as Markdown (and writes them to FILE with --markdown).
"""
import json
import re
import statistics
import sys

NETWORKS = [("10 Gb/s", 10e9 / 8, 20e-6), ("100 Gb/s", 100e9 / 8, 5e-6)]
HOSTS = [2, 8, 32, 128]


def load(path):
    """(b, N, sharded, compute ms, update ms, bytes) of each bench row of one host that the fit
    uses: "threads 1", "ranks N, global batch 128" and "ranks N, batch 128 per rank"."""
    points = []
    for line in open(path):
        row = json.loads(line)
        result, tag = row.get("result"), row.get("tag", "")
        if not result or "compute_ms_per_step" not in result:
            continue
        ranks = int(result.get("ranks", 1))
        match = re.fullmatch(r"threads 1|ranks \d+, (global batch 128|batch 128 per rank)", tag)
        if not match:
            continue
        b = 128 if tag == "threads 1" or "per rank" in tag else 128 / ranks
        sharded = "shard" in str(result.get("gradient_exchange", ""))
        points.append((b, ranks, sharded, float(result["compute_ms_per_step"]), float(result.get("update_ms_per_step", 0)),
                       float(result.get("allreduce_bytes_per_step", 0))))
    return points


def fit(points):
    """p, q (ms, ms per row) by least squares on compute − update; U (ms) as the median update × N_s."""
    xs = [b for b, *_ in points]
    ys = [c - u for _, _, _, c, u, _ in points]
    n = len(points)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    q = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    p = my - q * mx
    u = statistics.median(upd * (ranks if sharded else 1) for _, ranks, sharded, _, upd, _ in points)
    size = max((s for *_, s in points), default=0.0)
    return p, q, u, size


def cases(size):
    """(network, machines, t_x in seconds) of each row of the tables."""
    for name, bandwidth, hop in NETWORKS:
        for hosts in HOSTS:
            yield name, hosts, 2 * (hosts - 1) / hosts * size / bandwidth + 2 * (hosts - 1) * hop


def tables(p, q, u, size):
    compute = lambda b, hosts: (p + q * b + u / hosts) / 1000  # seconds; sharded across the hosts
    lines = [
        f"One rank's step without the exchange, fitted: t_c(b, N) = {p:.3f} ms + {q:.4f} ms × b + {u:.3f} ms / N "
        f"(the update sharded over N); gradient S = {size / 1e6:.2f} MB.",
        "",
        "Per-rank batch b (the global batch grows with the machines): efficiency t_c / (t_c + t_x), no overlap.",
        "",
        "| network | machines | t_x | b = 32 / rank | b = 128 | b = 512 | b for 90% |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, hosts, tx in cases(size):
        eff = lambda b: compute(b, hosts) / (compute(b, hosts) + tx)
        need = next((b for b in range(1, 1 << 16) if eff(b) >= 0.9), None)
        lines.append(f"| {name} | {hosts} | {1000 * tx:.2f} ms | {eff(32):.0%} | {eff(128):.0%} | {eff(512):.0%} | "
                     f"{need if need is not None else '—'} |")
    lines += [
        "",
        "Global batch B (each machine B/N rows): speed-up over one machine, t_c(B, 1) / (t_c(B/N, N) + t_x).",
        "",
        "| network | machines | B = 128 | B = 1,024 | B = 8,192 |",
        "|---|---|---|---|---|",
    ]
    for name, hosts, tx in cases(size):
        speedup = lambda big: compute(big, 1) / (compute(big / hosts, hosts) + tx)
        lines.append(f"| {name} | {hosts} | {speedup(128):.2f}× | {speedup(1024):.2f}× | {speedup(8192):.2f}× |")
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: scaling_model.py SCALING_JSONL [--markdown FILE]")
    points = load(sys.argv[1])
    if len(points) < 2 or len({b for b, *_ in points}) < 2:
        sys.exit("scaling_model.py: too few bench rows (threads 1, ranks N at the global batch or per rank) to fit")
    lines = tables(*fit(points))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if "--markdown" in sys.argv:
        open(sys.argv[sys.argv.index("--markdown") + 1], "w").write(text)


if __name__ == "__main__":
    main()
