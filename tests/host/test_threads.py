"""Several threads on one object, map and link: operations serialize, close() races raise, nothing crashes.

The stress runs in a child interpreter so that a crash (a use of freed C
memory) fails this test with its signal instead of killing the test run.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import facts

STRESS = textwrap.dedent("""
    import sys, threading
    import bpfoom

    obj = bpfoom.BpfObject.open(sys.argv[1])
    obj.load()
    counts = obj.maps["counts"]
    unexpected = []
    closed_seen = [0]
    start = threading.Barrier(9)
    warmed = threading.Semaphore(0)  # one release per worker 500 operations in

    def hammer(worker):
        start.wait()
        for i in range(10**7):  # until the close reaches it: every worker must meet it
            if i == 500:
                warmed.release()
            try:
                counts[worker] = i
                assert counts[worker] == i
                obj.data["data_u32"] = i
                obj.bss["bss_u64"]
            except bpfoom.ClosedError:
                closed_seen[0] += 1
                return
            except Exception as error:
                unexpected.append(repr(error))
                return
        unexpected.append(f"worker {worker} never saw the close")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    for _ in threads:   # every worker is busy on the object: close under all of them
        warmed.acquire(timeout=60)
    obj.close()
    for thread in threads:
        thread.join()
    print("unexpected:", unexpected)
    print("closed_seen:", closed_seen[0])
    sys.exit(1 if unexpected else 0)
""")


@pytest.mark.usefixtures("bpf_privileges")
def test_concurrent_use_and_close_do_not_crash():
    done = subprocess.run([sys.executable, "-P", "-c", STRESS, str(facts.GLOBALS_OBJECT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "unexpected: []" in done.stdout
    assert "closed_seen: 8" in done.stdout, f"not every worker met the close: {done.stdout}"


LINK_STRESS = textwrap.dedent("""
    import sys, threading
    import bpfoom

    obj = bpfoom.BpfObject.open(sys.argv[1])
    obj.struct_ops["bpfoom_demo"].fields["name"] = sys.argv[2]
    obj.load()
    link = obj.struct_ops["bpfoom_demo"].attach()
    unexpected = []
    start = threading.Barrier(9)

    def hammer():
        start.wait()
        for _ in range(5000):
            try:
                link.info()
                link.id
            except bpfoom.ClosedError:
                link.close()  # closing again from another thread is harmless
                return
            except Exception as error:
                unexpected.append(repr(error))
                return

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    link.close()
    for thread in threads:
        thread.join()
    names = open("/proc/sys/net/ipv4/tcp_available_congestion_control").read().split()
    print("unexpected:", unexpected)
    print("still registered:", sys.argv[2] in names)
    obj.close()
    sys.exit(1 if unexpected else 0)
""")


@pytest.mark.usefixtures("tcp_struct_ops")
def test_closing_a_link_while_threads_use_it():
    name = facts.unique_cc_name()
    done = subprocess.run([sys.executable, "-P", "-c", LINK_STRESS, str(facts.TCP_CC_OBJECT), name],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "unexpected: []" in done.stdout
    assert "still registered: False" in done.stdout
