"""One lifecycle for every owner of a kernel resource (bpfoom.Closeable).

Every public class with a ``close()`` derives from Closeable (or is listed
below with why not), and each one that can be made on this kernel behaves
the same (the public ones: LoadedPolicy and MetricsServer, reached only
through the daemon, are checked by derivation alone): ``with`` gives the object itself, ``close()`` twice is fine, the
kernel's fd is gone after close, and any use afterwards raises ClosedError
with EBADF and a sentence saying what to do.
"""
from __future__ import annotations

import errno
import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bpfoom
import bpfoom.daemon
import bpfoom.testing
import facts

# Classes with a close() that are not resource owners in this sense, and why.
NOT_OWNERS = {
    "bpfoom.daemon.apply.Running": "close(detach) chooses whether the daemon's links go",
    "bpfoom.daemon.hook.KillHook": "close() reaps the hook process; nothing is used after it",
    "bpfoom.daemon.log.Log": "a logger never raises: lines written after close() are counted lost",
    "bpfoom.daemon.kube_events.KubeEvents": "close(wait) lets queued posts finish for `wait` "
                                            "seconds; the daemon posts nothing after it",
}


def public_closeables() -> dict[str, type]:
    """Every class with a close() in the ``__all__`` of a public bpfoom module."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(bpfoom.__path__, "bpfoom."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            value = getattr(module, name, None)  # None: a submodule named there, walked too
            if inspect.isclass(value) and callable(getattr(value, "close", None)) \
                    and value is not bpfoom.Closeable:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_closeable_class_derives_from_the_one_base():
    found = public_closeables()
    assert "bpfoom.bpf.object.BpfObject" in found and "bpfoom.daemon.journal.Journal" in found
    others = sorted(name for name, cls in found.items()
                    if not issubclass(cls, bpfoom.Closeable) and name not in NOT_OWNERS)
    assert others == []
    assert set(NOT_OWNERS) <= set(found), "an exemption names a class that is gone"


@dataclass
class Case:
    """How to make one owner on this kernel and one call that needs it open."""

    make: Callable[[ExitStack, Path, Path], Any]
    use: Callable[[Any], object]
    privileged: bool = True


def _loaded(stack: ExitStack, path: Path) -> bpfoom.BpfObject:
    obj = stack.enter_context(bpfoom.BpfObject.open(path))
    obj.load()
    return obj


def _pinned_ring(stack: ExitStack, bpffs: Path) -> Path:
    obj = _loaded(stack, facts.RINGBUF_OBJECT)
    obj.maps["events"].pin(bpffs / "events")
    return bpffs / "events"


def _cgroup_iter(stack: ExitStack, cgroup2: Path, _: Path) -> bpfoom.IterLink:
    obj = _loaded(stack, facts.REPO / "tests" / "bpf" / "iter" / "cgroup_ids.bpf.o")
    return bpfoom.attach_cgroup_iter(obj.programs["cgroup_ids"], cgroup2, "self_only")


CASES = {
    "BpfObject": Case(lambda stack, cg, fs: _loaded(ExitStack(), facts.GLOBALS_OBJECT),
                      lambda obj: obj.name),
    "Cgroup": Case(lambda stack, cg, fs: bpfoom.Cgroup.open(cg), lambda cg: cg.id,
                   privileged=False),
    "SourceSet": Case(lambda stack, cg, fs: bpfoom.SourceSet(), lambda s: s.wait(0),
                      privileged=False),
    "CgroupWatcher": Case(lambda stack, cg, fs: bpfoom.targets.CgroupWatcher([cg / "*"]),
                          lambda w: w.changes(0), privileged=False),
    "Journal": Case(lambda stack, cg, fs: bpfoom.daemon.Journal(str(fs / "absent")),
                    lambda j: j.send("after close"), privileged=False),
    "Map": Case(lambda stack, cg, fs: bpfoom.Map.from_pinned(_pinned_ring(stack, fs)),
                lambda m: m.info()),
    "RingBuffer": Case(lambda stack, cg, fs: bpfoom.RingBuffer(
        _loaded(stack, facts.RINGBUF_OBJECT).maps["events"], print), lambda r: r.poll(0)),
    "IterLink": Case(_cgroup_iter, lambda link: link.read()),
    "PinnedEvents": Case(lambda stack, cg, fs: bpfoom.PinnedEvents(_pinned_ring(stack, fs)),
                         lambda p: p.poll(0)),
    "CgroupTree": Case(lambda stack, cg, fs: bpfoom.testing.CgroupTree(cg / "tree"),
                       lambda tree: tree.make("a"), privileged=False),
}


@pytest.fixture
def places(request, cgroup2_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(cgroup2 dir, bpffs dir for privileged cases, else a plain temporary one)."""
    if CASES[request.param].privileged:
        yield cgroup2_dir, request.getfixturevalue("bpffs_dir")
    else:
        yield cgroup2_dir, tmp_path


@pytest.mark.parametrize("places", sorted(CASES), indirect=True)
def test_each_owner_has_the_same_lifecycle(places, request):
    name = request.node.callspec.params["places"]
    case = CASES[name]
    cgroup2, scratch = places
    with ExitStack() as stack:
        made = case.make(stack, cgroup2, scratch)
        stack.callback(made.close)  # closed even if an assertion below fails
        assert isinstance(made, bpfoom.Closeable) and type(made).__name__ == name
        with made as entered:
            assert entered is made and not made.closed
            case.use(made)
            fds_open = set(facts.open_fds())
        assert made.closed
        assert set(facts.open_fds()) < fds_open  # what it owned is given back to the kernel
        made.close()  # twice: nothing happens
        assert made.closed
        with pytest.raises(bpfoom.ClosedError) as used:
            case.use(made)
        assert used.value.errno == errno.EBADF and "; " in str(used.value)  # what to do
        with pytest.raises(bpfoom.ClosedError) as entered_again:
            with made:
                pass
        assert entered_again.value.errno == errno.EBADF
    assert os.path.isdir(cgroup2)
