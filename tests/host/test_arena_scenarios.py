"""The arena's scenarios and helpers hold together before anyone spends a guest boot on them.

The arena itself runs in the Debian guest (bench/arena/arena.py, an opt-in lane); here: every
scenario file names what the runner knows, every configuration a contestant runs passes the
daemon's own check, and the programs that play users (hog.py, session.py) do what the
scenarios rely on, on the host with small sizes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import facts
import pytest

ARENA = facts.REPO / "bench" / "arena"
SCENARIOS = sorted((ARENA / "scenarios").glob("*.toml"))
KINDS = {"server": facts.REPO / "examples/daemon/server.toml",
         "desktop": facts.REPO / "examples/daemon/desktop.toml",
         "k8s": facts.REPO / "examples/kubernetes/policies.toml"}
PROBES = {"redis", "postgres"}
MACHINE_KEYS = {"zram_swap", "file_set_mb"}


def test_the_issue_s_six_scenarios_are_there():
    names = {path.stem for path in SCENARIOS}
    assert {"wrong_victim", "session_scope", "thrashing", "zram", "system_daemons",
            "kubepods", "postgres"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_is_complete(path: Path):
    scenario = tomllib.loads(path.read_text())
    assert scenario["kind"] in KINDS
    processes = scenario["process"]
    culprits = [p for p in processes if p.get("culprit")]
    assert len(culprits) == 1, "exactly one culprit"
    for process in processes:
        assert ("command" in process) != ("within" in process), process["name"]
        if "within" in process:  # the host process names the runaway where the runner looks
            host = next(p for p in processes if p["name"] == process["within"])
            assert "{runaway_pid_file}" in host["command"]
    protected = [s for s in [*scenario.get("service", []), *processes] if s.get("protected")]
    assert protected and all(s.get("probe") in PROBES for s in protected)
    assert set(scenario.get("machine", {})) <= MACHINE_KEYS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_s_configuration_passes_the_daemon_s_check(kind: str):
    done = subprocess.run([sys.executable, "-m", "bpfoom", "run", "--check", str(KINDS[kind])],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_hog_holds_what_it_was_asked_for():
    hog = subprocess.Popen([sys.executable, str(ARENA / "hog.py"), "--mb", "48", "--step-mb",
                            "16", "--interval", "0", "--compress-ratio", "3"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None
        assert hog.stdout.readline().strip() == "holding 48 MiB"
        assert _rss_kib(hog.pid) >= 48 << 10
    finally:
        hog.kill()
        hog.wait()


def test_session_starts_its_runaway_on_sigusr1_to_the_whole_scope_and_names_it(tmp_path: Path):
    pid_file = tmp_path / "runaway.pid"
    session = subprocess.Popen(
        [sys.executable, str(ARENA / "session.py"), "--children", "5", "--child-mb", "1",
         "--runaway-pid-file", str(pid_file), "--", "sleep", "300"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "session: 5 processes"
        children = Path(f"/proc/{session.pid}/task/{session.pid}/children")
        assert len(children.read_text().split()) == 5
        os.killpg(session.pid, signal.SIGUSR1)  # as a scope's kill: every process gets it
        _wait(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), "the pid file")
        runaway = int(pid_file.read_text())
        comm = Path(f"/proc/{runaway}/comm")  # the pid is written at fork, before its exec
        _wait(lambda: comm.read_text().strip() == "sleep", "the runaway to exec its command")
        assert len(children.read_text().split()) == 6
        # systemd's kill goes round the scope until no new process shows up, so the runaway
        # can get the SIGUSR1 too: it must ignore it after its exec (a handler would not).
        ignored = int(next(line.split()[1] for line in
                           Path(f"/proc/{runaway}/status").read_text().splitlines()
                           if line.startswith("SigIgn:")), 16)
        assert ignored & (1 << (signal.SIGUSR1 - 1)), f"SigIgn {ignored:#x}"
        os.kill(runaway, signal.SIGKILL)  # the runaway dies; the session and its others stay
        _wait(lambda: len(children.read_text().split()) == 5, "the runaway to be reaped")
        assert session.poll() is None
    finally:
        os.killpg(session.pid, signal.SIGKILL)
        session.wait()
        if session.stdout is not None:
            session.stdout.close()
