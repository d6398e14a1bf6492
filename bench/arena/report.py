"""The arena's results as one JSON document, a Markdown table and plots.

    .venv/bin/python bench/arena/report.py build/arena     # again, from OUT/<scenario>.json

Per scenario and contestant: how often the culprit died, collateral deaths,
time to relief, the machine's memory stall (PSI some/full), the protected
service's availability, p99 latency and data; medians with [min-max] over the
repeats.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _spread(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if min(values) == max(values):
        return f"{med:g}"
    return f"{med:g} [{min(values):g}-{max(values):g}]"


def summarise(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    service = [r.get("service", {}) for r in good]
    return {
        "runs": len(runs),
        "errors": [r["error"] for r in runs if "error" in r],
        "culprit_died": sum(r["culprit_died"] for r in good),
        "collateral": sorted({d["comm"] for r in good for d in r["collateral"]}),
        "collateral_counts": [r["collateral_count"] for r in good],
        "relief_s": [r["relief_s"] for r in good],
        "culprit_gone_s": [r.get("culprit_gone_s") for r in good],
        "timed_out": sum(r["timed_out"] for r in good),
        "psi_some_s": [r["psi_some_s"] for r in good],
        "psi_full_s": [r["psi_full_s"] for r in good],
        "availability": [s.get("availability") for s in service],
        "p99_ms": [s.get("p99_ms") for s in service],
        "data_intact": sum(bool(s.get("data_intact")) for s in service),
    }


def table(scenarios: dict[str, dict]) -> str:
    lines = []
    for name, data in scenarios.items():
        lines += [f"### {name}", "",
                  "| contestant | culprit died | collateral (runs: count) | culprit gone s | relief s | "
                  "stall some s | stall full s | service answered | p99 ms | data intact |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        contestants = list(dict.fromkeys(r["contestant"] for r in data["runs"]))
        for contestant in contestants:
            s = summarise([r for r in data["runs"] if r["contestant"] == contestant])
            ok = s["runs"] - len(s["errors"])
            collateral = ", ".join(map(str, s["collateral_counts"]))
            if s["collateral"]:
                collateral += " (" + ", ".join(s["collateral"]) + ")"
            relief = _spread(s["relief_s"]) + (f", {s['timed_out']} timed out"
                                               if s["timed_out"] else "")
            lines.append(
                f"| {contestant} | {s['culprit_died']}/{ok} | {collateral} | "
                f"{_spread(s['culprit_gone_s'])} | {relief} | "
                f"{_spread(s['psi_some_s'])} | {_spread(s['psi_full_s'])} | "
                f"{_spread(s['availability'])} | {_spread(s['p99_ms'])} | "
                f"{s['data_intact']}/{ok}"
                + (f"; {len(s['errors'])} failed: {'; '.join(s['errors'])}" if s["errors"] else "")
                + " |")
        guest = data.get("guest", {})
        lines += ["", f"Guest: {data['scenario'].get('memory', '1G')} RAM, booted to the runner "
                      f"in {guest.get('boot_s', '?')} s, {guest.get('wall_s', '?')} s in all.", ""]
    return "\n".join(lines) + "\n"


def plots(scenarios: dict[str, dict], out: Path) -> list[Path]:
    """PSI 'some' over time per contestant (first repeat), one PNG per scenario."""
    try:
        import matplotlib
    except ImportError:
        print("report: no matplotlib (pip install -e '.[bench]'); no plots", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, data in scenarios.items():
        fig, (stall, bars) = plt.subplots(1, 2, figsize=(11, 4))
        seen = set()
        for run in data["runs"]:
            if "pressure" not in run or run["contestant"] in seen:
                continue
            seen.add(run["contestant"])
            t = [p[0] for p in run["pressure"]]
            stall.plot(t, [p[1] / 1e6 for p in run["pressure"]], label=run["contestant"])
        stall.set(title=f"{name}: memory stall (PSI some), first run",
                  xlabel="s since the culprit started", ylabel="stalled s (cumulative)")
        stall.legend(fontsize="small")
        contestants = list(dict.fromkeys(r["contestant"] for r in data["runs"]))
        sums = [summarise([r for r in data["runs"] if r["contestant"] == c]) for c in contestants]
        full = [statistics.median([v for v in s["psi_full_s"] if v is not None] or [0])
                for s in sums]
        bars.bar(contestants, full, color=["tab:green" if s["culprit_died"] and
                                           not any(s["collateral_counts"]) else "tab:red"
                                           for s in sums])
        bars.set(title="median full stall (green: culprit died, nothing else)",
                 ylabel="s")
        bars.tick_params(axis="x", labelrotation=20)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write_report(scenarios: dict[str, dict], out: Path) -> None:
    summary = {name: {"scenario": data["scenario"], "guest": data.get("guest"),
                      "contestants": {c: summarise([r for r in data["runs"]
                                                    if r["contestant"] == c])
                                      for c in dict.fromkeys(r["contestant"]
                                                             for r in data["runs"])},
                      "runs": data["runs"]}
               for name, data in scenarios.items()}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    text = table(scenarios)
    images = plots(scenarios, out)
    text += "".join(f"![{p.stem}]({p.name})\n" for p in images)
    (out / "arena.md").write_text(text)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/arena")
    scenarios = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))
                 if p.name != "results.json"}
    write_report(scenarios, out)
    print((out / "arena.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
