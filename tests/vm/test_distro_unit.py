"""The shipped unit file under real systemd 252 (the Debian guest, bpfoom.testing.distro): the
daemon starts from examples/systemd/bpfoom.service with its shipped virtualenv drop-in
(bpfoom.service.d/local.conf), reports its status to systemd, attaches a policy to a unit's
cgroup when the unit starts, writes a kill to the journal with its MESSAGE_ID at a real OOM of
that unit, naming the victim's cgroup and unit (in the kill and in the policy's decision) though
systemd removed that cgroup as soon as the unit's process died; `bpfoom attach --unit` attaches
to a running unit and `bpfoom status` lists both.  With on_exit = "keep", a unit that stops
while no daemon runs leaves a pin on a link the kernel detached: the next daemon drops it,
reports the entry pending, passes `bpfoom status --probe ready`, and attaches when the unit
starts again.  The guest's output is kept in the test's tmp_path (guest-output.txt): the
journal, metrics and status samples of docs/operators.md come from it.

Opt-in like test_distro.py (BPFOOM_TEST_DISTRO=1 in scripts/test): one boot, 3-6 min under TCG.
bpfoom is the wheel from ./scripts/dist (the test says so when there is none), installed in the
guest as local.conf expects: a virtualenv at /opt/bpfoom of Debian's python3, with
`pip install --no-index` from dist/ (pip itself borrowed from the checkout's interpreter, which
only the install step runs: the unit's ProtectHome= hides it).
"""
from __future__ import annotations

import json
from pathlib import Path

from bpfoom.testing import distro
from facts import require

REPO = Path(__file__).resolve().parents[2]
KILL_MESSAGE_ID = "c4a938d5b82d4e2f9eed25edae10de4d"
DECISION_MESSAGE_ID = "c2799c0a4adb4a18af88ce2c645e718d"

CONFIG = """
[daemon]
log_format = "json"
metrics_file = "/var/lib/node_exporter/textfile_collector/bpfoom.prom"
on_exit = "keep"

[[attach]]
id = "oomtest"
policy = "largest_leaf"
unit = "oomtest.service"

[[attach]]
id = "kept"
policy = "largest_task"
unit = "kept.service"
"""

# Waits are bounded loops on what the system reports (no fixed sleeps standing in for them).
SCRIPT = f"""
set -u
wait_for() {{  # wait_for SECONDS COMMAND...: until COMMAND succeeds
    n=$(( $1 * 5 )); shift
    while ! "$@" >/dev/null 2>&1; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.2; done
}}
/usr/bin/python3 -m venv --without-pip /opt/bpfoom
mkdir -p /tmp/pip && ln -s {{PIP}} /tmp/pip/pip
PYTHONPATH=/tmp/pip /opt/bpfoom/bin/python -m pip install -q --no-index \
    --find-links {REPO}/dist/wheelhouse {{WHEEL}}; echo "install-exit=$?"
ln -s /opt/bpfoom/bin/bpfoom /usr/local/bin/bpfoom
cp {REPO}/examples/systemd/bpfoom.service /etc/systemd/system/
mkdir -p /etc/systemd/system/bpfoom.service.d /etc/bpfoom /var/lib/node_exporter/textfile_collector
cp {REPO}/examples/systemd/bpfoom.service.d/local.conf /etc/systemd/system/bpfoom.service.d/
cat > /etc/bpfoom/node.toml <<'EOF'
{CONFIG}
EOF
printf '[Service]\nExecStart=/bin/sleep infinity\n' > /etc/systemd/system/kept.service
systemctl daemon-reload
systemctl start kept.service
attached_to() {{  # attached_to UNIT: the kernel's link list has a policy on UNIT's cgroup
    bpfoom status --json | python3 -c 'import json, sys; sys.exit(not any(
        (a["cgroup"] or "").endswith("/" + sys.argv[1]) for a in json.load(sys.stdin)["attachments"]))' "$1"
}}
echo "=== bpfoom run --check /etc/bpfoom/node.toml"
bpfoom run --check /etc/bpfoom/node.toml; echo "check-exit=$?"
systemctl start bpfoom.service; echo "start-exit=$?"
echo "bpfoom-active=$(systemctl is-active bpfoom.service)"
echo "status-text=$(systemctl show -p StatusText --value bpfoom.service)"

# A unit that waits for /run/go, then allocates past its MemoryMax.
systemd-run --unit=oomtest.service -p MemoryMax=64M -p MemorySwapMax=0 /bin/sh -c \\
    'while [ ! -e /run/go ]; do sleep 0.1; done; exec python3 -c "x = b\\"x\\" * (256 << 20)"'
wait_for 240 attached_to oomtest.service; echo "daemon-attached-unit=$?"
echo "kept-attached=$(attached_to kept.service && echo yes || echo no)"
touch /run/go
oomtest_done() {{ ! systemctl is-active -q oomtest.service; }}
wait_for 240 oomtest_done; echo "oomtest-result=$(systemctl show -p Result --value oomtest.service)"

systemctl start redis-server.service
bpfoom attach largest_task --unit redis-server.service --pin /sys/fs/bpf/redis-policy --json \\
    > /tmp/attach.json; echo "attach-unit-exit=$?"
echo "attach-json=$(tr -d '\\n' < /tmp/attach.json)"
bpfoom status --json > /tmp/status.json; echo "status-exit=$?"
echo "status-json=$(tr -d '\\n' < /tmp/status.json)"
echo "=== bpfoom status /sys/fs/cgroup/system.slice/redis-server.service"
bpfoom status /sys/fs/cgroup/system.slice/redis-server.service
bpfoom detach --unit redis-server.service; echo "detach-unit-exit=$?"

kills() {{ journalctl -b -o json MESSAGE_ID={KILL_MESSAGE_ID} | grep -q BPFOOM_VICTIM; }}
wait_for 60 kills
echo "journal-kill=$(journalctl -b -o json MESSAGE_ID={KILL_MESSAGE_ID} | head -n 1)"
echo "=== journalctl MESSAGE_ID={KILL_MESSAGE_ID} -o verbose"
journalctl -b MESSAGE_ID={KILL_MESSAGE_ID} -o verbose
decisions() {{ journalctl -b -o json MESSAGE_ID={DECISION_MESSAGE_ID} BPFOOM_ACTION=killed | grep -q .; }}
wait_for 60 decisions
echo "journal-decision=$(journalctl -b -o json MESSAGE_ID={DECISION_MESSAGE_ID} BPFOOM_ACTION=killed | head -n 1)"
echo "=== journalctl MESSAGE_ID={DECISION_MESSAGE_ID} BPFOOM_ACTION=killed -o verbose"
journalctl -b MESSAGE_ID={DECISION_MESSAGE_ID} BPFOOM_ACTION=killed -o verbose
echo "=== cat /var/lib/node_exporter/textfile_collector/bpfoom.prom"
cat /var/lib/node_exporter/textfile_collector/bpfoom.prom
echo "=== journalctl -u bpfoom.service -o cat"
journalctl -b -u bpfoom.service -o cat
echo "=== end"
systemctl stop bpfoom.service; echo "stop-exit=$?"
echo "after-stop=$(systemctl show -p Result --value bpfoom.service)"

# on_exit = "keep" left kept.service's link pinned; the unit stops while no daemon runs (its
# cgroup goes, the kernel detaches the link): the next daemon must call the entry pending,
# not keep a pin on a detached link, and be ready; the unit's next start gets the policy.
echo "kept-pin=$(ls /sys/fs/bpf/bpfoom/daemon | tr '\n' ' ')"
systemctl stop kept.service
systemctl start bpfoom.service; echo "restart-exit=$?"
echo "=== bpfoom status (kept.service stopped)"
bpfoom status
bpfoom status --probe ready --json > /tmp/ready.json; echo "ready-exit=$?"
echo "ready-json=$(tr -d '\n' < /tmp/ready.json)"
echo "pins-while-pending=$(ls /sys/fs/bpf/bpfoom/daemon | tr '\n' ' ')"
systemctl start kept.service
wait_for 240 attached_to kept.service; echo "kept-reattached=$?"
bpfoom status --probe ready --json > /dev/null; echo "ready-after-exit=$?"
echo "=== journalctl -u bpfoom.service -o cat (the restart)"
journalctl -b -u bpfoom.service -o cat | tail -n 14
echo "=== end"
exit 0
"""


def field(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(f"{name}=")]
    assert lines, f"{name}= missing from the guest's output:\n{output}"
    return lines[-1].split("=", 1)[1]


def test_the_shipped_unit_runs_the_daemon_and_attach_unit_works(vm_kernel: Path,
                                                                 tmp_path: Path) -> None:
    wheels = sorted((REPO / "dist").glob("bpfoom-*.whl"))
    require(bool(wheels), "a wheel in dist/ (./scripts/dist) to install in the guest")
    import pip
    script = SCRIPT.replace("{PIP}", str(Path(pip.__file__).parent)).replace(
        "{WHEEL}", str(wheels[-1]))
    result = distro.run(script, kernel=vm_kernel, cwd=REPO, memory="1G", timeout=1200)
    out = result.output
    (tmp_path / "guest-output.txt").write_text(out)  # what docs/operators.md quotes
    assert result.returncode == 0, out
    assert field(out, "install-exit") == "0", out
    assert field(out, "start-exit") == "0" and field(out, "bpfoom-active") == "active", out
    assert field(out, "daemon-attached-unit") == "0", out + result.journal[-4000:]
    assert field(out, "oomtest-result") == "oom-kill", out

    attached = json.loads(field(out, "attach-json"))["attachment"]
    assert field(out, "attach-unit-exit") == "0", out
    assert attached["cgroup"].endswith("/system.slice/redis-server.service"), attached
    status = json.loads(field(out, "status-json"))
    text = json.dumps(status)
    assert "redis-server.service" in text and "oomtest.service" in text, status
    assert field(out, "detach-unit-exit") == "0", out

    assert field(out, "check-exit") == "0", out
    assert field(out, "kept-attached") == "yes", out

    # The kill (the kernel marked the victim) and the policy's decision each name the victim's
    # cgroup and unit, as docs/operators.md says, though systemd removed that cgroup as soon as
    # the unit's process died (often before the daemon read the kill).
    victim_cgroup = "/sys/fs/cgroup/system.slice/oomtest.service"
    kill = json.loads(field(out, "journal-kill"))
    assert kill.get("MESSAGE_ID") == KILL_MESSAGE_ID and kill.get("PRIORITY") == "4", kill
    assert kill.get("BPFOOM_KIND") == "kill" and kill.get("BPFOOM_POLICY") == "largest_leaf", kill
    assert kill.get("BPFOOM_VICTIM_CGROUP") == victim_cgroup, kill
    assert kill.get("BPFOOM_VICTIM_UNIT") == "oomtest.service", kill
    assert "(oomtest.service)" in str(kill.get("MESSAGE")), kill
    assert kill.get("_SYSTEMD_UNIT") == "bpfoom.service", kill  # written by the unit's daemon
    decision = json.loads(field(out, "journal-decision"))
    assert decision.get("MESSAGE_ID") == DECISION_MESSAGE_ID and decision.get("PRIORITY") == "4", decision
    assert decision.get("BPFOOM_ENTRY") == "oomtest", decision
    assert decision.get("BPFOOM_VICTIM_CGROUP") == victim_cgroup, decision
    assert decision.get("BPFOOM_VICTIM_UNIT") == "oomtest.service", decision
    assert field(out, "stop-exit") == "0" and field(out, "after-stop") == "success", out

    # A kept pin whose unit stopped meanwhile: pending again, its pin gone, the daemon ready.
    assert "kept" in field(out, "kept-pin").split(), out
    assert field(out, "restart-exit") == "0", out
    ready = json.loads(field(out, "ready-json"))
    [daemon] = ready["daemons"]
    # both units are stopped now (oomtest.service ended at its OOM): both legitimately pending
    assert sorted(item["entry"] for item in daemon["pending"]) == ["kept", "oomtest"], daemon
    assert daemon["entries"] == [], daemon  # no pin left on the detached link
    assert ready["probe"] == {"ready": True, "why": None}, ready
    assert field(out, "ready-exit") == "0", out
    assert field(out, "pins-while-pending") == "", out
    assert field(out, "kept-reattached") == "0" and field(out, "ready-after-exit") == "0", out
    assert result.kernel_log_problems == []
