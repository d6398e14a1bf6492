"""close() racing readers: fields, maps, globals, programs and links read in loops while
another thread closes the object (and the link): nothing crashes, the only error is ClosedError.

Each round opens a fresh object, so every reader's first access still has to read the
object's BTF (nothing cached yet) while close() may be freeing it.  The races run in a
child interpreter with glibc's MALLOC_PERTURB_ (freed memory is overwritten, so a read
after free shows as garbage instead of passing by luck) and a tiny switch interval (the
threads interleave between almost every bytecode); a crash fails the test with its signal.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import facts

RACE = textwrap.dedent("""
    import random, sys, threading
    import bpfoom

    sys.setswitchinterval(1e-6)
    path, rounds, attach_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    unexpected, closed_seen = [], [0]

    def reader(steps):
        def run(start):
            start.wait()
            for _ in range(200):
                for step in steps:
                    try:
                        step()
                    except bpfoom.ClosedError:
                        closed_seen[0] += 1
                        return
                    except Exception as error:
                        unexpected.append(f"{step.__name__}: {error!r}")
                        return
        return run

    def one_round(number):
        obj = bpfoom.BpfObject.open(path)
        ops = obj.struct_ops["bpfoom_demo"]
        link = None
        if attach_name and number % 10 == 0:
            ops.fields["name"] = attach_name
            obj.load()
            link = ops.attach()

        def fields(): ops.fields["name"]; list(ops.fields.items())
        def programs(): ops.programs; ops.struct_name; ops.is_link
        def maps(): [(m.type, m.max_entries, m.key_size) for m in obj.maps.values()]
        def map_ids(): obj.state == "loaded" and [m.id for m in obj.maps.values()]
        def globals_(): dict(obj.rodata), dict(obj.data), dict(obj.bss)
        def program_info(): [(p.type, p.autoload) for p in obj.programs.values()]
        def links(): link is not None and (link.info(), link.id, link.pinned_path)
        def reprs(): repr(obj), repr(ops), [repr(m) for m in obj.maps.values()], repr(link)

        steps = [fields, programs, maps, map_ids, globals_, program_info, links, reprs]
        start = threading.Barrier(5)
        threads = [threading.Thread(target=reader(random.sample(steps, len(steps))), args=(start,))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        start.wait()
        for _ in range(random.randrange(0, 50)):
            pass
        if link is not None:
            link.close()
        obj.close()
        for thread in threads:
            thread.join()

    for number in range(rounds):
        one_round(number)
    print("unexpected:", unexpected)
    print("closed_seen:", closed_seen[0])
    sys.exit(1 if unexpected else 0)
""")


@pytest.mark.usefixtures("tcp_struct_ops")
def test_close_races_readers_of_fields_maps_programs_and_links():
    name = facts.unique_cc_name()
    env = dict(os.environ, MALLOC_PERTURB_="165")
    done = subprocess.run([sys.executable, "-P", "-c", RACE, str(facts.TCP_CC_OBJECT), "300", name],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert "unexpected: []" in done.stdout
    assert int(done.stdout.split("closed_seen:")[1]) > 0  # the races did happen
