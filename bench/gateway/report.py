"""Turns bench/gateway/results/*.tsv into report.md (tables) and plot.png (throughput and added p99
versus concurrency per setup)."""
import csv
import os
import sys

out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.tsv")), delimiter="\t"))
memory = {r[1]: r[2] for r in csv.reader(open(os.path.join(out, "memory.tsv")), delimiter="\t")} if os.path.exists(os.path.join(out, "memory.tsv")) else {}
machine = open(os.path.join(out, "machine.txt")).read().strip()


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def find(setup, mode, c):
    for r in rows:
        if r["setup"] == setup and r["mode"] == mode and r["concurrency"] == c:
            return r
    return None


lines = ["```", machine, "```", ""]
for mode in ["plain", "sse"]:
    mrows = [r for r in rows if r["mode"] == mode]
    if not mrows:
        continue
    lines.append(f"### {'Non-streaming' if mode == 'plain' else 'Streaming'} chat completions")
    lines.append("")
    lines.append("| setup | conc. | req/s | × nginx hop | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | gateway CPU µs/req | Redis cmds/req (EVALSHA/req) | peak RSS MB |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in mrows:
        d = find("direct", mode, r["concurrency"])
        hop = find("nginx-hop", mode, r["concurrency"])
        rps, hrps = num(r["req_s"]), num(hop["req_s"]) if hop else None
        ratio = f"{rps / hrps:.2f}" if rps and hrps else "–"
        a50 = f"{num(r['p50_ms']) - num(d['p50_ms']):.3f}" if d and r["setup"] != "direct" else "–"
        a99 = f"{num(r['p99_ms']) - num(d['p99_ms']):.3f}" if d and r["setup"] != "direct" else "–"
        redis = "–" if r["redis_cmds_req"] == "-" else f"{r['redis_cmds_req']} ({r['redis_evalsha_req']})"
        peak = "–" if r["peak_rss_kb"] == "-" else f"{int(r['peak_rss_kb']) / 1024:.0f}"
        cpu = "–" if r["gw_cpu_us_req"] == "-" else r["gw_cpu_us_req"]
        err = " ⚠ " + r["errors"] if r.get("errors") else ""
        lines.append(f"| {r['setup']} | {r['concurrency']} | {rps:,.0f}{err} | {ratio} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {a50} | {a99} | {cpu} | {redis} | {peak} |")
    lines.append("")
if memory:
    lines.append("### Memory")
    lines.append("")
    lines.append("| measure | value |")
    lines.append("|---|---|")
    for k, v in memory.items():
        lines.append(f"| {k} | {int(v) / 1024:.1f} MB |" if k.endswith("_kb") or "rss" in k else f"| {k} | {v} |")
    lines.append("")
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not available: no plot")
    sys.exit(0)

colors = {"direct": "tab:blue", "nginx-hop": "tab:orange", "gw-memory": "tab:green", "gw-redis": "tab:red", "fleet-3": "tab:purple"}
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
for col, mode in enumerate(["plain", "sse"]):
    for setup in ["direct", "nginx-hop", "gw-memory", "gw-redis", "fleet-3"]:
        pts = [(int(r["concurrency"]), num(r["req_s"]), num(r["p99_ms"])) for r in rows if r["setup"] == setup and r["mode"] == mode]
        if not pts:
            continue
        pts.sort()
        direct = {int(r["concurrency"]): num(r["p99_ms"]) for r in rows if r["setup"] == "direct" and r["mode"] == mode}
        axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=setup, color=colors[setup])
        if setup != "direct":
            axes[1][col].plot([p[0] for p in pts], [p[2] - direct.get(p[0], 0) for p in pts], marker="o", label=setup, color=colors[setup])
    axes[0][col].set_title(("non-streaming" if mode == "plain" else "streaming") + ": throughput")
    axes[0][col].set_ylabel("requests/s")
    axes[1][col].set_title(("non-streaming" if mode == "plain" else "streaming") + ": p99 added over direct")
    axes[1][col].set_ylabel("ms")
    for row in axes:
        row[col].set_xscale("log", base=2)
        row[col].set_xlabel("concurrency")
        row[col].grid(True, alpha=0.3)
        row[col].legend(fontsize=8)
fig.suptitle("Multiplexer gateway benchmark — " + machine.splitlines()[0])
fig.tight_layout()
fig.savefig(os.path.join(out, "plot.png"), dpi=90)
print("wrote plot.png")
