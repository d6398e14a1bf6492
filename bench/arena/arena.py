"""The arena: bpfoom against the OOM tools people run, on real services, in a real distribution.

    .venv/bin/python bench/arena/arena.py                       # every scenario and contestant
    .venv/bin/python bench/arena/arena.py --scenario wrong_victim --contestant kernel \
        --contestant bpfoom --repeats 1 --out build/arena-smoke

Each scenario boots the Debian guest once (bpfoom.testing.distro, on our
kernel) and runs bench/arena/runner.py in it: every contestant, `--repeats`
times, interleaved.  The results go to OUT/results.json (every run), OUT/arena.md
(the table: medians and ranges) and OUT/*.png (with the bench extra:
`pip install -e '.[bench]'` for matplotlib).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

ARENA = Path(__file__).resolve().parent
REPO = ARENA.parents[1]
sys.path.insert(0, str(REPO))

from bpfoom.testing import distro  # noqa: E402

CONTESTANTS = ("kernel", "earlyoom", "nohang", "systemd-oomd", "bpfoom")


def scenario_files(names: list[str]) -> list[Path]:
    found = sorted((ARENA / "scenarios").glob("*.toml"))
    if not names:  # smoke.toml is the CI test's, not the benchmark's
        return [path for path in found if path.stem != "smoke"]
    chosen = []
    for name in names:
        path = ARENA / "scenarios" / f"{name}.toml"
        if not path.exists():
            raise SystemExit(f"no scenario {name!r}; there are: "
                             + ", ".join(p.stem for p in found))
        chosen.append(path)
    return chosen


def run_scenario(path: Path, contestants: list[str], repeats: int, out: Path,
                 timeout: float, kernel: Path | None, initrd: Path | None) -> dict:
    scenario = tomllib.loads(path.read_text())
    raw = out / f"{path.stem}.json"
    command = [str(REPO / ".venv/bin/python"), str(ARENA / "runner.py"), "--scenario", str(path),
               "--repeats", str(repeats), "--out", str(raw)]
    for name in contestants:
        command += ["--contestant", name]
    started = time.monotonic()
    result = distro.run(command, memory=scenario.get("memory", "1G"), cpus=2, timeout=timeout,
                        cwd=REPO, rwdirs=[out], live=sys.stdout, kernel=kernel,
                        initrd=initrd)
    (out / f"{path.stem}.journal").write_text(result.journal)
    (out / f"{path.stem}.kernel.log").write_text(result.kernel_log)
    if not raw.exists():
        raise SystemExit(f"{path.stem}: the runner wrote no results (exit {result.returncode})")
    data = json.loads(raw.read_text())
    data["guest"] = {"boot_s": round(result.boot_seconds, 1), "exit": result.returncode,
                     "wall_s": round(time.monotonic() - started, 1),
                     "kernel_log_problems": result.kernel_log_problems}
    raw.write_text(json.dumps(data, indent=1))
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", default=[],
                        help="a file name in bench/arena/scenarios without .toml (default: all)")
    parser.add_argument("--contestant", action="append", choices=CONTESTANTS,
                        help="default: all of them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "arena")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per scenario boot")
    parser.add_argument("--kernel", type=Path, help="another bzImage (default: our current build)")
    parser.add_argument("--initrd", type=Path, help="its initramfs (see bpfoom.testing.distro)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    contestants = args.contestant or list(CONTESTANTS)
    scenarios = {}
    for path in scenario_files(args.scenario):
        print(f"arena: {path.stem}: {', '.join(contestants)} x {args.repeats}", flush=True)
        scenarios[path.stem] = run_scenario(path, contestants, args.repeats, out, args.timeout,
                                       args.kernel, args.initrd)
    from report import write_report  # bench/arena/report.py, beside this file

    write_report(scenarios, out)
    print(f"arena: results in {out}/results.json, table in {out}/arena.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
