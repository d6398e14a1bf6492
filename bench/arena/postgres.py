"""PostgreSQL as the protected service: pgbench's tables, a TPC-B transaction every 50 ms
over one psql session, and the consistency check pgbench's schema allows.

Standard library only (the runner's interpreter has no driver): the probe keeps one
`psql` process and writes each transaction to its stdin, followed by a marker query;
the marker coming back without an error in between means the transaction committed.
A lost connection ends that psql (non-interactive psql does not reconnect), and the
next question starts a new one.
"""
from __future__ import annotations

import random
import select
import subprocess
import time

DATABASE = "arena"
CLUSTER_UNIT = "postgresql@15-main.service"  # Debian's postgresql.service only wraps it
CONNECT_TIMEOUT_S = 30.0  # a new session: runuser, psql and a backend; counted as unanswered
ANSWER_TIMEOUT_S = 5.0  # one transaction with its commit's fsync, on a slow (TCG) machine


def _as_postgres(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                          capture_output=True, text=True, timeout=timeout)


def prepare(scale: int) -> None:
    """A fresh pgbench database of `scale` (100,000 accounts each) and a clean history."""
    _as_postgres("dropdb", "--if-exists", DATABASE)
    _as_postgres("createdb", DATABASE)
    _as_postgres("pgbench", "-i", "-q", "-s", str(scale), DATABASE)


class Session:
    """One psql process; `ask(sql)` is True when the statements ran without an error."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=0", DATABASE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1)
        self.serial = 0

    def ask(self, sql: str, timeout: float) -> bool:
        self.serial += 1
        marker = f"arena-ok-{self.serial}"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{sql}\nSELECT '{marker}';\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        failed = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError("no answer")
            line = self.proc.stdout.readline()
            if not line:
                raise ConnectionError("psql ended")
            if line.strip() == marker:
                return not failed
            if "ERROR" in line or "FATAL" in line or "server closed" in line:
                failed = True

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def transaction(scale: int) -> str:
    """pgbench's built-in TPC-B-like script, with the values chosen here."""
    aid = random.randint(1, 100_000 * scale)
    bid = random.randint(1, scale)
    tid = random.randint(1, 10 * scale)
    delta = random.randint(-5000, 5000)
    return (f"BEGIN; UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid}; "
            f"UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid}; "
            f"UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid}; "
            f"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
            f"VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP); COMMIT;")


CONSISTENT = ("SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) = "
              "(SELECT coalesce(sum(delta), 0) FROM pgbench_history) AND "
              "(SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) = "
              "(SELECT coalesce(sum(delta), 0) FROM pgbench_history) AND "
              "(SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) = "
              "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
              "(SELECT count(*) FROM pgbench_history);")


def check(committed: int) -> dict[str, object]:
    """After the episode: the balances agree with the history, and the history holds every
    transaction the probe saw committed.  A cluster that died is started again first (what is
    on disk is the question, not whether the service still runs)."""
    restarted = subprocess.run(["systemctl", "is-active", "--quiet", CLUSTER_UNIT],
                               check=False).returncode != 0
    if restarted:
        subprocess.run(["systemctl", "start", CLUSTER_UNIT], check=False, timeout=300)
    deadline = time.monotonic() + 60
    while True:
        try:
            out = _as_postgres("psql", "-X", "-A", "-t", "-F", " ", "-c", CONSISTENT, DATABASE,
                               timeout=60).stdout.split()
            break
        except subprocess.SubprocessError:
            if time.monotonic() > deadline:
                return {"committed": committed, "data_intact": False, "restarted": restarted,
                        "check": "the database did not answer within 60 s"}
            time.sleep(1)
    consistent, rows = out[0] == "t", int(out[1])
    return {"committed": committed, "history_rows": rows, "restarted": restarted,
            "data_intact": consistent and rows >= committed}
