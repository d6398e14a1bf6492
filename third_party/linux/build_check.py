"""Build checks: the series must link in configurations the VM kernel never uses.

Each check links an x86_64 `tinyconfig` vmlinux (not booted) of the patched
source with the BPF syscall plus one set of options the series must cope
with: no cgroups, no PSI, no memory cgroups, no BPF JIT (without it
kernel/bpf/bpf_struct_ops.c is not built at all).  About 6-7 minutes each on
2 idle cores, so it is opt-in, not part of ./scripts/test.  Object trees stay
in ~/.cache/bpfoom/linux/check/<name> (a rerun recompiles what changed).

    python3 third_party/linux/build_check.py [--source-version V] [--patches DIR] [CHECK ...]

Checks (default: all): cgroups-n, psi-n, memcg-n, jit-n.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402

# Options set on top of tinyconfig (64-bit, the BPF syscall); each must survive olddefconfig.
COMMON = {"64BIT": "y", "BPF_SYSCALL": "y"}
CHECKS = {
    "cgroups-n": {"BPF_JIT": "y", "CGROUPS": "n", "PSI": "y"},
    "psi-n": {"BPF_JIT": "y", "CGROUPS": "y", "MEMCG": "y", "PSI": "n"},
    "memcg-n": {"BPF_JIT": "y", "CGROUPS": "y", "PSI": "y", "MEMCG": "n"},
    "jit-n": {"BPF_JIT": "n", "CGROUPS": "y", "MEMCG": "y", "PSI": "y"},
}


def _line(name: str, value: str) -> str:
    return f"CONFIG_{name}=y" if value == "y" else f"# CONFIG_{name} is not set"


def configure(src: Path, obj: Path, options: dict[str, str]) -> None:
    """tinyconfig + `options`, then olddefconfig; fail if kconfig changed any of them."""
    obj.mkdir(parents=True, exist_ok=True)
    env = build._build_env()
    build._run(build._make_args(src, obj) + ["tinyconfig"], env=env)
    with open(obj / ".config", "a") as config:
        config.write("".join(_line(k, v) + "\n" for k, v in options.items()))
    build._run(build._make_args(src, obj) + ["olddefconfig"], env=env)
    final = (obj / ".config").read_text().splitlines()
    dropped = [_line(k, v) for k, v in options.items() if (f"CONFIG_{k}=y" in final) != (v == "y")]
    if dropped:
        raise build.BuildError(f"kconfig changed {', '.join(dropped)} (a dependency is off); "
                               f"see {obj / '.config'}")


def run(names: list[str], source_version: str | None, patches_dir: Path | None) -> None:
    version = build.choose_source(source_version)
    patches = build.patch_series(patches_dir or build.patches_dir_for(version))
    cache = build.linux_cache()
    with build._Lock(cache / "lock"):
        src, pristine = build.ensure_source(version)
        build.apply_patches(src, pristine, patches, version)
        for name in names:
            started = time.monotonic()
            obj = cache / "check" / name
            build.say(f"build check {name}: tinyconfig + "
                      + ", ".join(f"{k}={v}" for k, v in CHECKS[name].items()))
            configure(src, obj, {**COMMON, **CHECKS[name]})
            build.make_with_progress(src, obj, "vmlinux")
            build.say(f"build check {name}: linked in {build._clock(time.monotonic() - started)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checks", nargs="*", help=f"of {', '.join(CHECKS)} (default: all)")
    parser.add_argument("--source-version", help="as for build.py")
    parser.add_argument("--patches", type=Path, default=None, help="as for build.py")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown:
        parser.error(f"no such check: {', '.join(unknown)}")
    try:
        run(args.checks or list(CHECKS), args.source_version,
            args.patches.resolve() if args.patches else None)
    except build.BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
