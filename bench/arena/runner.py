"""Run one arena scenario against OOM contestants, inside the distro guest (root, systemd).

    python3 bench/arena/runner.py --scenario bench/arena/scenarios/wrong_victim.toml \
        --contestant kernel --contestant earlyoom --repeats 3 --out result.json

bench/arena/arena.py boots the guest and calls this; it is only useful on a
systemd machine whose memory may be exhausted.  Standard library only, besides
the checkout's bpfoom (its size parser here; the bpfoom contestant runs its daemon).

One run: reset (stop what the last run left, restart the services, drop
caches), start the contestant, start the services and fill their data, start
the scenario's other processes and let them take their memory, take a
snapshot (processes, PSI totals, the service's data), start the culprit, then
sample every 100 ms until the culprit is gone and the machine has been quiet
for QUIET_S (or the scenario's timeout), and compare.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import machine
import postgres

ARENA = Path(__file__).resolve().parent
REPO = ARENA.parents[1]
SAMPLE_S = 0.1
QUIET_S = 3.0
STALL_EPSILON_US = 1000  # under 1 ms of stall per 100 ms sample counts as quiet
UNIT_PREFIX = "arena-"
RUNAWAY_PID_FILE = "/tmp/arena-runaway.pid"  # {runaway_pid_file} in a command: where session.py
# (run by the session's user, who cannot write /run) names the runaway it started
RUN_DIR = Path("/run/systemd/system")


def sh(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- measurements

def psi_totals() -> dict[str, int]:
    """/proc/pressure/memory some and full totals, microseconds."""
    totals = {}
    for line in Path("/proc/pressure/memory").read_text().splitlines():
        kind, *fields = line.split()
        totals[kind] = int(dict(f.split("=") for f in fields)["total"])
    return totals


def processes() -> dict[int, tuple[str, str]]:
    """pid -> (start time, comm) of every user-space process but the referee's own (this runner
    and its probes' clients: a probe reconnecting is not a death); the start time tells pid
    reuse."""
    found, parents = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ppid, starttime = int(fields[1]), fields[19]
        if int(entry.name) == 2 or ppid == 2:  # kernel threads
            continue
        found[int(entry.name)] = (starttime, comm)
        parents[int(entry.name)] = ppid

    def referee(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    return {pid: seen for pid, seen in found.items() if not referee(pid)}


def unit_cgroup(unit: str, user: str | None = None) -> Path | None:
    out = systemctl(user, "show", "-P", "ControlGroup", unit, check=False).stdout.strip()
    return Path("/sys/fs/cgroup" + out) if out else None


def under_tmp(path: Path) -> bool:
    """Whether `path` is where a unit with PrivateTmp=yes cannot see it."""
    return any(path.resolve().is_relative_to(tmp) for tmp in (Path("/tmp"), Path("/var/tmp")))


def cgroup_pids(cgroup: Path | None) -> set[int]:
    """Every pid in `cgroup` and below; none once it is gone, even while it is being walked
    (systemd removes a unit's cgroup as soon as its last process died)."""
    if cgroup is None:
        return set()
    pids: set[int] = set()
    try:
        for procs in cgroup.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
    except OSError:  # the directory went while rglob listed it
        pass
    return pids


def memory_current(unit: str, user: str | None = None) -> int:
    cgroup = unit_cgroup(unit, user)
    try:
        return int((cgroup / "memory.current").read_text()) if cgroup else 0
    except OSError:
        return 0


# ---------------------------------------------------------------- units, system or a user's

@functools.cache
def user_uid(user: str) -> str:
    """`user`'s uid, the user made on first use."""
    if subprocess.run(["id", "-u", user], capture_output=True, check=False).returncode != 0:
        sh("useradd", "--create-home", user)
    return sh("id", "-u", user).stdout.strip()


def user_manager(user: str) -> list[str]:
    """The prefix that runs systemctl/systemd-run against `user`'s own manager (user@UID) through
    its private socket (no user D-Bus needed); start_user_manager() starts it."""
    return ["runuser", "-u", user, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{user_uid(user)}"]


def start_user_manager(user: str) -> None:
    """user@UID, as a login starts it (reset() stops it between runs)."""
    sh("systemctl", "start", f"user@{user_uid(user)}.service", timeout=300)


def systemctl(user: str | None, *args: str, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
    if user is None:
        return sh("systemctl", *args, check=check, timeout=timeout)
    return sh(*user_manager(user), "systemctl", "--user", *args, check=check, timeout=timeout)


class Redis:
    """The few RESP commands the arena needs, over a plain socket (no redis-py in the guest)."""

    def __init__(self, timeout: float = 1.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", 6379), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: bytes | str) -> None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            parts += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
        self.sock.sendall(b"".join(parts))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        return rest.decode()

    def call(self, *args: bytes | str):
        self.send(*args)
        return self.reply()


def redis_wait(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = Redis()
            if client.call("PING") == "PONG":
                client.close()
                return
        except (OSError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not answer PING within a minute")
        time.sleep(0.2)


def redis_fill(mb: int) -> int:
    """FLUSHALL, then `mb` MiB in 256 KiB values; returns DBSIZE."""
    client = Redis(timeout=30)
    client.call("FLUSHALL")
    value = os.urandom(256 << 10)
    keys = mb * 4
    for start in range(0, keys, 64):
        batch = range(start, min(keys, start + 64))
        for i in batch:
            client.send("SET", f"arena:{i}", value)
        for _ in batch:
            client.reply()
    client.call("SET", "arena:probe", "ok")
    size = client.call("DBSIZE")
    client.close()
    return size


def redis_dbsize() -> int | None:
    try:
        client = Redis(timeout=5)
        size = client.call("DBSIZE")
        client.close()
        return size
    except (OSError, RuntimeError):
        return None


@dataclass
class Probe:
    """Asks the protected service a question every 50 ms; records each answer's latency.
    `ask` returns True for a right answer and raises (or returns False) for anything else."""

    ask: Callable[[], bool]
    reset: Callable[[], None]
    samples: list[tuple[float, float | None]] = field(default_factory=list)  # (t, latency or None)
    stop: threading.Event = field(default_factory=threading.Event)
    answered_ok: int = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                ok = self.ask()
            except (OSError, RuntimeError, ConnectionError, TimeoutError):
                ok = False
                self.reset()
            self.answered_ok += ok
            self.samples.append((started, time.monotonic() - started if ok else None))
            self.stop.wait(max(0.0, 0.05 - (time.monotonic() - started)))
        self.reset()

    def summary(self, since: float, until: float) -> dict:
        window = [lat for t, lat in self.samples if since <= t <= until]
        answered = sorted(lat for lat in window if lat is not None)

        def pct(q: float) -> float | None:
            return round(answered[min(len(answered) - 1, int(q * len(answered)))] * 1000, 2) \
                if answered else None

        return {"requests": len(window), "answered": len(answered),
                "availability": round(len(answered) / len(window), 4) if window else None,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def redis_probe() -> Probe:
    client: list[Redis] = []

    def ask() -> bool:
        if not client:
            client.append(Redis(timeout=1.0))
        return client[0].call("GET", "arena:probe") == b"ok"

    def reset() -> None:
        while client:
            client.pop().close()

    return Probe(ask, reset)


def postgres_probe(scale: int) -> Probe:
    session: list[postgres.Session] = []

    def ask() -> bool:
        if not session:  # connecting (runuser, psql, a backend) takes seconds under TCG
            session.append(postgres.Session())
            session[0].ask("SELECT 1;", timeout=postgres.CONNECT_TIMEOUT_S)
        return session[0].ask(postgres.transaction(scale), timeout=postgres.ANSWER_TIMEOUT_S)

    def reset() -> None:
        while session:
            session.pop().close()

    return Probe(ask, reset)


# ---------------------------------------------------------------- contestants

OOMD_DROPINS = {
    # What Fedora's systemd-oomd-defaults and Ubuntu (22.04 on) ship.
    "-.slice.d/10-oomd-root-slice-defaults.conf": "[Slice]\nManagedOOMSwap=kill\n",
    "user@.service.d/10-oomd-user-service-defaults.conf":
        "[Service]\nManagedOOMMemoryPressure=kill\nManagedOOMMemoryPressureLimit=50%\n",
}


# One configuration per use, the same in every scenario of that kind: never tuned per scenario.
BPFOOM_CONFIGS = {
    "server": REPO / "examples" / "daemon" / "server.toml",
    "desktop": REPO / "examples" / "daemon" / "desktop.toml",
    "k8s": REPO / "examples" / "kubernetes" / "policies.toml",  # what the DaemonSet ships
}


def start_unit(unit: str) -> None:
    """systemctl start, or an error carrying the unit's own last journal lines."""
    try:
        sh("systemctl", "start", unit, timeout=300)
    except subprocess.CalledProcessError as err:
        journal = sh("journalctl", "-b", "-u", unit, "-n", "15", "--no-pager", check=False).stdout
        raise RuntimeError(f"{unit} did not start ({err.stderr.strip()}):\n{journal}") from None


def start_contestant(name: str, kind: str) -> None:
    if name == "kernel":
        return
    if name == "earlyoom":
        start_unit("earlyoom.service")
    elif name == "nohang":
        start_unit("nohang.service")
    elif name == "systemd-oomd":
        for rel, text in OOMD_DROPINS.items():
            path = RUN_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        sh("systemctl", "daemon-reload")
        start_unit("systemd-oomd.service")
    elif name == "bpfoom":
        # The shipped unit (systemd 252, Debian 12) and a local.conf as an operator writes it
        # for a virtualenv install (here the checkout's .venv).
        unit_dir = RUN_DIR / "bpfoom.service.d"
        unit_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "examples/systemd/bpfoom.service", RUN_DIR / "bpfoom.service")
        bpfoom = REPO / ".venv/bin/bpfoom"
        (unit_dir / "local.conf").write_text(
            "[Service]\n"
            f"Environment=BPFOOM_CONFIG={BPFOOM_CONFIGS[kind]}\n"
            f"ExecStartPre=\nExecStartPre={bpfoom} run --check ${{BPFOOM_CONFIG}}\n"
            f"ExecStart=\nExecStart={bpfoom} run ${{BPFOOM_CONFIG}}\n"
            # the venv's interpreter is under /root here (pyenv)
            "ProtectHome=no\n"
            # a checkout under /tmp (a CI clone) would be hidden by the unit's private /tmp
            + ("PrivateTmp=no\n" if under_tmp(REPO) else ""))
        sh("systemctl", "daemon-reload")
        start_unit("bpfoom.service")
    else:
        raise SystemExit(f"unknown contestant {name!r}")
    time.sleep(1.0)  # daemons read their first sample


def stop_contestant(name: str) -> None:
    """Undo start_contestant(); never raises (a slow systemd after an OOM must not lose the
    run's measurements)."""
    try:
        _stop_contestant(name)
    except (OSError, subprocess.SubprocessError) as err:
        log(f"stopping {name}: {err}")


def _stop_contestant(name: str) -> None:
    units = {"earlyoom": ["earlyoom.service"], "nohang": ["nohang.service"],
             "systemd-oomd": ["systemd-oomd.service", "systemd-oomd.socket"],
             "bpfoom": ["bpfoom.service"]}.get(name, [])
    if not units:
        return
    for unit in units:
        sh("systemctl", "stop", unit, check=False, timeout=300)
    if name == "systemd-oomd":
        for rel in OOMD_DROPINS:
            (RUN_DIR / rel).unlink(missing_ok=True)
    if name == "bpfoom":
        # on_exit = "keep" (the Kubernetes config) leaves its pins: unpinning detaches them,
        # so the next contestant meets the kernel as it was.
        shutil.rmtree("/sys/fs/bpf/bpfoom", ignore_errors=True)
        shutil.rmtree(RUN_DIR / "bpfoom.service.d", ignore_errors=True)
        (RUN_DIR / "bpfoom.service").unlink(missing_ok=True)
    sh("systemctl", "daemon-reload", check=False, timeout=300)


# ---------------------------------------------------------------- one run

def start_process(spec: dict) -> str:
    """A transient unit for `spec`, in the system manager or (`user = "name"`) in that user's
    manager, as a login session's programs run: a service, or (`scope = true`) a scope, the
    unit a terminal or a desktop application gets (no main process; systemd 252 has no
    OOMPolicy for scopes, so a kill in it stops nothing else).  A scope's processes are
    started detached (setsid -f) so that they are not the referee's descendants."""
    kind = "scope" if spec.get("scope") else "service"
    unit = f"{UNIT_PREFIX}{spec['name']}.{kind}"
    command = [part.replace("{arena}", str(ARENA)).replace("{runaway_pid_file}", RUNAWAY_PID_FILE)
               for part in spec["command"]]
    user = spec.get("user")
    # A scope's processes are ours until systemd adopts them: they would inherit the referee's
    # oom_score_adj (-1000, unkillable); a user's get what user@.service gives (100).
    adjust = ["choom", "-n", str(spec.get("oom_score_adj", 100 if user else 0)), "--"]
    if user:
        start_user_manager(user)
    args = [*(adjust if kind == "scope" else []), *(user_manager(user) if user else []),
            *(["setsid", "-f"] if kind == "scope" else []),
            "systemd-run", *(["--user"] if user else []), f"--unit={unit}",
            *(["--scope"] if kind == "scope" else ["--collect"])]
    if "slice" in spec:
        args.append(f"--slice={spec['slice']}")
    if kind == "service" and ("oom_score_adj" in spec or not user):
        args += ["-p", f"OOMScoreAdjust={spec.get('oom_score_adj', 0)}"]
    for prop in spec.get("properties", []):
        args += ["-p", prop]
    args += ["--", *command]
    if kind == "scope":  # its processes outlive this call: they must not hold our pipes open
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
    else:
        sh(*args)
    return unit


def process_alive(pid: int, start: str) -> bool:
    """`pid` still runs as the process that started at `start` (not reused, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] != "Z" and fields[19] == start


def start_culprit(spec: dict, scenario: dict) -> tuple[Path | None, tuple[int, str] | None]:
    """Start the culprit: its own unit (whose every task is the culprit), or (`within =
    "name"`) one more process of another process's unit, whose other tasks are bystanders.
    Returns the culprit's cgroup or its (pid, start time)."""
    if "within" not in spec:
        return unit_cgroup(start_process(spec), spec.get("user")), None
    host = next(p for p in scenario["process"] if p["name"] == spec["within"])
    pid_file = Path(RUNAWAY_PID_FILE)
    pid_file.unlink(missing_ok=True)
    kind = "scope" if host.get("scope") else "service"
    # A scope has no main process: every process of it gets the signal (session.py's idle
    # children ignore it).
    systemctl(host.get("user"), "kill", f"--kill-whom={'all' if kind == 'scope' else 'main'}",
              "--signal=SIGUSR1", f"{UNIT_PREFIX}{host['name']}.{kind}")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), 60,
             "the session to start its runaway")
    pid = int(pid_file.read_text())
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # a contestant killed it already: gone from the first sample on
        return None, (pid, "gone")
    return None, (pid, stat[stat.rindex(")") + 2:].split()[19])


def reset(scenario: dict) -> None:
    units = sh("systemctl", "list-units", "--plain", "--no-legend", "--all",
               f"{UNIT_PREFIX}*", check=False).stdout.split("\n")
    for line in units:
        if line.strip():
            sh("systemctl", "stop", line.split()[0], check=False, timeout=300)
    for user in {p["user"] for p in scenario["process"] if "user" in p}:
        # every process the user's last session left
        sh("systemctl", "stop", f"user@{user_uid(user)}.service", check=False, timeout=300)
    for service in scenario.get("service", []):
        sh("systemctl", "restart", service["unit"], timeout=300)
    for slice_ in scenario.get("slice", []):
        sh("systemctl", "set-property", "--runtime", slice_["name"], *slice_["properties"])
    sh("systemctl", "reset-failed", check=False, timeout=300)
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    setup = scenario.get("machine", {})
    if "zram_swap" in setup:
        machine.zram_swap(setup["zram_swap"])
    else:
        machine.no_swap()
    if "file_set_mb" in setup:
        machine.file_set(setup["file_set_mb"])


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_service_probe(spec: dict) -> tuple[Probe, Callable[[Probe], dict]]:
    """Fill the protected service with its data and start asking it; the callable says after
    the episode whether the data survived."""
    if spec["probe"] == "redis":
        redis_wait()
        before = redis_fill(spec.get("fill_mb", 0))

        def intact(_probe: Probe) -> dict:
            after = redis_dbsize()
            return {"dbsize_before": before, "dbsize_after": after, "data_intact": after == before}
        probe = redis_probe()
    elif spec["probe"] == "postgres":
        scale = spec.get("scale", 10)
        postgres.prepare(scale)

        def intact(probe: Probe) -> dict:
            return postgres.check(probe.answered_ok)
        probe = postgres_probe(scale)
    else:
        raise SystemExit(f"unknown probe {spec['probe']!r}")
    return probe, intact


def one_run(scenario: dict, contestant: str) -> dict:
    kind = scenario.get("kind", "server")
    reset(scenario)
    start_contestant(contestant, kind)
    probe = intact = prober = None
    try:
        culprit_spec = next(p for p in scenario["process"] if p.get("culprit"))
        # Services (real units) first, then the scenario's own processes, the culprit last.
        for spec in [*scenario.get("service", []), *scenario["process"]]:
            if spec is culprit_spec:
                continue
            if "command" in spec:
                unit = start_process(spec)
                holds = spec.get("holds_mb", 0) << 20

                def held(unit: str = unit, user: str | None = spec.get("user"),
                         want: int = holds) -> bool:
                    return memory_current(unit, user) >= want * 0.95
                wait_for(held, 300, f"{unit} to hold its memory")
            if "probe" in spec:
                probe, intact = start_service_probe(spec)
                prober = threading.Thread(target=probe.run, daemon=True)
                prober.start()
        time.sleep(1.0)
        before = processes()
        psi0 = psi_totals()
        t0 = time.monotonic()
        culprit_cgroup, culprit_process = start_culprit(culprit_spec, scenario)
        culprit_pids: set[int] = set()
        samples = []  # (t, some, full)
        onset = last_stall = None
        culprit_gone_at = None
        timeout = scenario.get("episode_timeout_s", 120)
        previous = psi0
        while True:
            time.sleep(SAMPLE_S)
            now = time.monotonic()
            totals = psi_totals()
            samples.append((round(now - t0, 3), totals["some"] - psi0["some"],
                            totals["full"] - psi0["full"]))
            if totals["some"] - previous["some"] > STALL_EPSILON_US:
                onset = onset if onset is not None else now
                last_stall = now
            previous = totals
            if culprit_process is not None:
                alive = {culprit_process[0]} if process_alive(*culprit_process) else set()
            else:
                alive = cgroup_pids(culprit_cgroup)
            culprit_pids |= alive
            if culprit_gone_at is None and not alive and now - t0 > 1.0:
                culprit_gone_at = now
            quiet_since = max(last_stall or t0, culprit_gone_at or 0)
            if culprit_gone_at is not None and now - quiet_since >= QUIET_S:
                break
            if now - t0 > timeout:
                break
        end = time.monotonic()
        if probe is not None and prober is not None:
            probe.stop.set()
            prober.join(timeout=30)
        after = processes()
        psi1 = psi_totals()
        died = [{"pid": pid, "comm": comm} for pid, (start, comm) in before.items()
                if after.get(pid, (None,))[0] != start]
        collateral = [d for d in died if d["pid"] not in culprit_pids]
        relieved = culprit_gone_at is not None or (onset is not None and end - last_stall >= QUIET_S)
        result = {
            "contestant": contestant,
            "culprit_died": culprit_gone_at is not None,
            "collateral": collateral,
            "collateral_count": len(collateral),
            "onset_s": round(onset - t0, 2) if onset else None,
            "relief_s": round(last_stall - onset, 2) if relieved and onset else None,
            "culprit_gone_s": round(culprit_gone_at - t0, 2) if culprit_gone_at else None,
            "timed_out": end - t0 > timeout,
            "psi_some_s": round((psi1["some"] - psi0["some"]) / 1e6, 3),
            "psi_full_s": round((psi1["full"] - psi0["full"]) / 1e6, 3),
            "episode_s": round(end - t0, 2),
            "pressure": samples,
        }
        if probe is not None and intact is not None:
            result["service"] = probe.summary(t0, end)
            result["service"].update(intact(probe))
        kills = sh("dmesg", check=False).stdout
        result["kernel_oom_kills"] = kills.count("Out of memory: Killed process") + \
            kills.count("Memory cgroup out of memory: Killed process")
        return result
    finally:
        if probe is not None:
            probe.stop.set()
        stop_contestant(contestant)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--contestant", action="append", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    scenario = tomllib.loads(args.scenario.read_text())
    Path("/proc/self/oom_score_adj").write_text("-1000\n")  # the referee is not a contestant
    Path("/proc/sys/kernel/printk_ratelimit").write_text("0\n")
    runs = []
    for repeat in range(args.repeats):
        for contestant in args.contestant:  # interleaved: drift hits every contestant alike
            log(f"{scenario['name']}: {contestant}, run {repeat + 1}/{args.repeats}")
            sh("dmesg", "-C", check=False)
            try:
                result = one_run(scenario, contestant)
            except Exception as err:  # one broken run must not lose the others
                result = {"contestant": contestant, "error": f"{type(err).__name__}: {err}"}
            result["repeat"] = repeat
            brief = {k: v for k, v in result.items() if k != "pressure"}
            log(json.dumps(brief))
            runs.append(result)
            args.out.write_text(json.dumps({"scenario": scenario, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
