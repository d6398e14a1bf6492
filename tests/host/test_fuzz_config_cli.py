"""Hypothesis fuzzing of untrusted text: daemon configs through `bpfoom run --check`, and
argument vectors through the command line's entry point.

Both go through ``bpfoom.cli.main`` in this process, as the console script
does.  Whatever the input, the command must end with exit status 0 or 1
(argparse's 2 for bad usage) and, when it fails, at least one line on stderr
starting "bpfoom:" (or argparse's "usage:"), never an exception escaping
main(): a traceback is a bug.  Only commands that change nothing are run
(features, policies, list, explain, status, events without --follow,
run --check); the others are parsed only.

The short run is bounded (CI); BPFOOM_FUZZ_LONG=1 runs a long one and
prints how many inputs were tried (the README has the counts).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpfoom.cli

LONG = os.environ.get("BPFOOM_FUZZ_LONG") == "1"
CONFIG_EXAMPLES = 3000 if LONG else 60
ARGV_EXAMPLES = 4000 if LONG else 80
FUZZ = settings(deadline=None, database=None, derandomize=not LONG,
                max_examples=CONFIG_EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLE_CONFIGS = sorted((REPO / "examples" / "daemon").glob("*.toml"))
TRIED = {"config": 0, "argv": 0}

# -- configs -------------------------------------------------------------------------

DAEMON_KEYS = ("pin_dir", "on_exit", "log", "log_format", "metrics_file", "journal", "kill_hook",
               "kill_hook_interval")
ENTRY_KEYS = ("id", "policy", "cgroup", "unit", "kubernetes", "map", "name", "pin", "tunables",
              "granularity", "dry_run", "cgroup_settings")
WORDS = ("largest_leaf", "priority", "largest_task", "newest_task", "observe", "psi_guard",
         "detach", "keep", "json", "text", "-", "task", "subtree", "cgroup", "/sys/fs/cgroup/batch",
         "/sys/fs/bpf/bpfoom/fuzz", "16M", "1G", "0x10", "min_victim_bytes", "threshold_us",
         "exclude_page_cache", "protected_oom_score_adj", "guaranteed", "burstable", "best-effort",
         "bpfoom.service", "", "../..", "\x00", "é")
KEYS = st.sampled_from(DAEMON_KEYS + ENTRY_KEYS + ("qos", "pod_uid", "pod", "root", "priority",
                                                     "protected", "min_victim_bytes")) | \
    st.text(string.ascii_letters + "_.-", min_size=1, max_size=12)
SCALARS = (st.sampled_from(WORDS) | st.text(max_size=20) | st.booleans()
           | st.integers(min_value=-(1 << 70), max_value=1 << 70)
           | st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=8)


def toml_key(key: str) -> str:
    return key if key and all(c in string.ascii_letters + string.digits + "_-" for c in key) \
        else toml_string(key)


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF:
            out.append(f"\\u{ord(char):04x}")  # surrogates: invalid TOML, a parse error to report
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # past 64 bits: invalid TOML, a parse error to report
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_table(header: str, table: dict[str, Any]) -> str:
    lines = [header]
    lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


ENTRY = st.fixed_dictionaries(
    {"id": st.sampled_from(WORDS) | st.text(max_size=8)},
    optional={key: VALUES for key in ENTRY_KEYS if key != "id"}) | st.dictionaries(KEYS, VALUES,
                                                                                  max_size=5)


@st.composite
def configs(draw: st.DrawFn) -> str:
    """A TOML document shaped like a daemon config, with any keys and values in it."""
    parts = []
    if draw(st.booleans()):
        daemon = draw(st.fixed_dictionaries({}, optional={k: VALUES for k in DAEMON_KEYS})
                      | st.dictionaries(KEYS, VALUES, max_size=4))
        parts.append(toml_table("[daemon]", daemon))
    for entry in draw(st.lists(ENTRY, max_size=3)):
        parts.append(toml_table("[[attach]]", entry))
    return "\n".join(parts)


@st.composite
def mutated_examples(draw: st.DrawFn) -> bytes:
    """A shipped example config with a slice cut, replaced or repeated."""
    data = draw(st.sampled_from(EXAMPLE_CONFIGS)).read_bytes()
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, min(len(data), start + 64)))
    middle = draw(st.binary(max_size=16) | st.just(data[start:end] * 2) | st.just(b""))
    return data[:start] + middle + data[end:]


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``bpfoom.cli.main(argv)``: its exit status and stderr; anything else escaping fails."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = bpfoom.cli.main(argv)
        except SystemExit as exc:  # argparse: --help/--version 0, bad usage 2
            status = exc.code if isinstance(exc.code, int) else 2
            assert status in (0, 2), f"{argv!r}: SystemExit({exc.code!r})"
    assert status in (0, 1, 2), f"{argv!r} returned {status!r}"
    stderr = err.getvalue()
    if status:
        assert stderr.startswith(("bpfoom:", "usage:")), f"{argv!r}: exit {status}, stderr {stderr!r}"
    assert "Traceback" not in stderr
    return status, stderr


def check_config_text(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    TRIED["config"] += 1
    status, stderr = run_cli(["run", "--check", str(path)])
    assert status in (0, 1), stderr


@FUZZ
@given(text=configs(), dropin=st.none() | configs())
def test_generated_configs_end_in_a_clean_check(tmp_path: Path, text: str,
                                                dropin: str | None) -> None:
    """A generated config, with a generated drop-in (``fuzz.d/*.toml``) beside it or not."""
    directory = tmp_path / "fuzz.d"
    for old in directory.glob("*"):
        old.unlink()
    if dropin is not None:
        directory.mkdir(exist_ok=True)
        (directory / "extra.toml").write_bytes(dropin.encode("utf-8", "surrogatepass"))
    check_config_text(tmp_path / "fuzz.toml", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=mutated_examples() | st.binary(max_size=200))
def test_mutated_and_random_configs_end_in_a_clean_check(tmp_path: Path, data: bytes) -> None:
    check_config_text(tmp_path / "fuzz.toml", data)


# -- argument vectors -----------------------------------------------------------------

COMMANDS = ("features", "policies", "list", "attach", "detach", "events", "explain", "status",
            "reload", "top", "run")
RUNNABLE = ("features", "policies", "list", "explain", "status", "events", "run")
OPTIONS = ("-h", "--help", "--json", "--all", "--cgroup", "--unit", "--set", "--pin", "--map",
           "--name", "--ring-size", "--link", "--follow", "-f", "--no-kills", "--pin-dir",
           "--last", "--probe", "--root", "--sort", "--interval", "--once", "--replay", "--check",
           "--metrics-listen", "--version", "-")
ARG_WORDS = ("0", "-1", "3", "99999999999999999999", "1.5", "nan", "16M", "x=1", "=", "a=b=c",
             "min_victim_bytes=", "largest_leaf", "/sys/fs/cgroup/unified", "/nonexistent",
             "/sys/fs/bpf/bpfoom-fuzz-none", "", "é", "\x00", "127.0.0.1:0", ":", "[::]:99999")
ARGUMENTS = st.sampled_from(OPTIONS) | st.sampled_from(ARG_WORDS) | st.text(max_size=12)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(COMMANDS) | st.text(max_size=8))
    return [command, *draw(st.lists(ARGUMENTS, max_size=6))]


def runnable(argv: list[str]) -> bool:
    """Whether running ``argv`` can only read: the command, and no option that writes or waits."""
    if argv[0] not in RUNNABLE or any(a in ("--follow", "-f", "--probe") for a in argv[1:]):
        return False
    return argv[0] != "run" or "--check" in argv[1:]


@settings(FUZZ, max_examples=ARGV_EXAMPLES)
@given(argv=argvs())
def test_argument_vectors_end_in_a_clean_exit(argv: list[str]) -> None:
    TRIED["argv"] += 1
    if not runnable(argv):
        parser = bpfoom.cli.build_parser()
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                assert exc.code in (0, 2), f"{argv!r}: SystemExit({exc.code!r})"
        return
    run_cli(argv)


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Any:
    yield
    if LONG:
        print(f"\nfuzz: tried {TRIED['config']} configs and {TRIED['argv']} argument vectors "
              "(any traceback fails its test)")


# -- what the fuzzing found, kept as plain regressions ----------------------------------

@pytest.mark.parametrize("data", [b"\x80", b'[daemon]\nlog = "\xff"\n'], ids=["byte", "in-string"])
def test_a_config_that_is_not_utf8_is_a_clean_error(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "bad.toml").write_bytes(data)
    status, stderr = run_cli(["run", "--check", str(tmp_path / "bad.toml")])
    assert status == 1 and "not UTF-8" in stderr
