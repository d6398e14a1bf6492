"""Every prefix of the series must build: a bisect of the series may stop at any patch.

For k = 1..n, the pristine source plus the first k patches links an x86_64
`tinyconfig` vmlinux (not booted) with what the series touches: the BPF
syscall and JIT (kernel/bpf/bpf_struct_ops.c needs it), cgroups, memory
cgroups and PSI, without BTF.  The prefixes share one object tree, so after
the first (a full tinyconfig build, about 6-7 minutes on 2 idle cores) each
recompiles only what its patch touched.  Opt-in, not part of ./scripts/test.

The prefixes are built in a source tree of their own
(~/.cache/bpfoom/linux/prefixes/src, sharing the objects of the cached
pristine repository), so the global build lock is held only while that
repository is made, never during the builds.

    python3 third_party/linux/build_prefixes.py [--source-version V] [--patches DIR]
                                               [--from K] [--to K]
    python3 third_party/linux/build_prefixes.py --same-tree-as OTHER_DIR [--patches DIR]

--same-tree-as builds nothing: it says whether two series (e.g. before and
after a refold) give byte-identical trees once applied in full.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_check

import build

OPTIONS = {"64BIT": "y", "BPF_SYSCALL": "y", "BPF_JIT": "y", "CGROUPS": "y", "MEMCG": "y",
           "PSI": "y", "DEBUG_INFO_BTF": "n"}


def _pristine(version: str) -> tuple[Path, str]:
    """The cached pristine repository of `version` (made under the global lock if missing)."""
    marker = build.linux_cache() / "src" / version / ".git" / "bpfoom-pristine"
    if marker.exists():  # never changes once written
        return marker.parent.parent, marker.read_text().strip()
    with build._Lock(build.linux_cache() / "lock"):
        return build.ensure_source(version)


def _own_tree(shared: Path) -> Path:
    """A clone of the pristine repository that only this script checks out or writes to."""
    src = build.linux_cache() / "prefixes" / "src"
    if not (src / ".git").exists():
        src.parent.mkdir(parents=True, exist_ok=True)
        build._run(build.GIT + ["clone", "-q", "--shared", "--no-checkout", str(shared), str(src)])
    return src


def applied_tree(src: Path, pristine: str, patches: list[Path]) -> str:
    """The git tree id of pristine + `patches`, made in a scratch index (the work tree untouched)."""
    env = dict(os.environ, GIT_INDEX_FILE=str(src / ".git" / "bpfoom-compare-index"))
    build._run(build.GIT + ["read-tree", pristine], cwd=src, env=env)
    for patch in patches:
        proc = subprocess.run(build.GIT + ["apply", "--cached", "--whitespace=nowarn", str(patch)],
                              check=False, cwd=src, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise build.BuildError(f"{patch.name} does not apply: {proc.stderr.strip()[-800:]}")
    return build._run(build.GIT + ["write-tree"], cwd=src, env=env).strip()


def same_tree(version: str, patches: list[Path], other: list[Path]) -> bool:
    shared, pristine = _pristine(version)
    src = _own_tree(shared)
    mine, theirs = applied_tree(src, pristine, patches), applied_tree(src, pristine, other)
    build.say(f"applied trees: {mine} ({len(patches)} patches), {theirs} ({len(other)} patches)")
    return mine == theirs


def run(version: str, patches: list[Path], first: int, last: int) -> None:
    shared, pristine = _pristine(version)
    src = _own_tree(shared)
    obj = build.linux_cache() / "prefixes" / "obj"
    for k in range(first, last + 1):
        started = time.monotonic()
        build.apply_patches(src, pristine, patches[:k], version)
        if k == first:  # a config that matches kbuild's needs no recompile
            build_check.configure(src, obj, OPTIONS)
        build.say(f"prefix {k}/{len(patches)} ({patches[k - 1].name}): building vmlinux")
        try:
            build.make_with_progress(src, obj, "vmlinux")
        except build.BuildError as err:
            raise build.BuildError(f"the series does not build with patches 1-{k}: "
                                   f"{patches[k - 1].name} (or an earlier one) breaks it\n{err}")
        build.say(f"prefix {k}: built in {build._clock(time.monotonic() - started)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-version", help="as for build.py")
    parser.add_argument("--patches", type=Path, default=None, help="as for build.py")
    parser.add_argument("--from", dest="first", type=int, default=1, help="first prefix length")
    parser.add_argument("--to", dest="last", type=int, default=None, help="last prefix length")
    parser.add_argument("--same-tree-as", type=Path, default=None,
                        help="compare the applied tree with this series' instead of building")
    args = parser.parse_args(argv)
    try:
        version = build.choose_source(args.source_version)
        patches = build.patch_series(args.patches.resolve() if args.patches
                                     else build.patches_dir_for(version))
        if args.same_tree_as:
            same = same_tree(version, patches, build.patch_series(args.same_tree_as.resolve()))
            print("identical" if same else "different")
            return 0 if same else 1
        last = args.last or len(patches)
        if not 1 <= args.first <= last <= len(patches):
            parser.error(f"prefixes run from 1 to {len(patches)}")
        run(version, patches, args.first, last)
    except build.BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
