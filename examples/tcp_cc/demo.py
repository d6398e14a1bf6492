#!/usr/bin/env python3
"""Register a BPF TCP congestion control with bpfoom, use it, and remove it.

Runs on any kernel with tcp_congestion_ops struct_ops (root needed):

    python3 examples/tcp_cc/demo.py [--name NAME] [--min-ssthresh N] [--keep-seconds S]

It opens examples/tcp_cc/tcp_cc.bpf.o, sets the .rodata tunable
`min_ssthresh` and the congestion control's name (both only possible
before load), loads it, attaches the `bpfoom_demo` struct_ops map system-wide, shows the name in the kernel's
list of available congestion controls, opens one loopback TCP connection
that uses it (the BPF `init` callback counts it in .bss), and detaches.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import bpfoom

OBJECT = Path(__file__).resolve().with_name("tcp_cc.bpf.o")
AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
STRUCT_OPS_MAP = "bpfoom_demo"


def available() -> list[str]:
    return AVAILABLE.read_text().split()


def connect_with(cc_name: str) -> str:
    """Open one loopback TCP connection using `cc_name`; return what the kernel says it uses."""
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc_name.encode())
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        accepted.close()
        return client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bpfoom_demo",
                        help="register under this name (at most 15 characters; the struct_ops `name` field)")
    parser.add_argument("--min-ssthresh", type=int, default=4,
                        help="floor for ssthresh after a loss (a .rodata tunable, set before load)")
    parser.add_argument("--keep-seconds", type=float, default=0,
                        help="stay registered this long before detaching (to look around)")
    args = parser.parse_args(argv)

    try:
        with bpfoom.BpfObject.open(OBJECT) as obj:
            ops = obj.struct_ops[STRUCT_OPS_MAP]
            ops.fields["name"] = args.name
            obj.rodata["min_ssthresh"] = args.min_ssthresh
            obj.load()
            print(f"loaded {OBJECT.name}: struct_ops map {ops.name} (id {ops.id}) as "
                  f"{ops.fields['name']!r}, min_ssthresh={obj.rodata['min_ssthresh']}")
            with ops.attach() as link:
                info = link.info()
                print(f"attached: link {info.id} ({info.type}) -> map {info.map_id}")
                print(f"available congestion controls: {' '.join(available())}")
                print(f"a loopback connection uses: {connect_with(args.name)}")
                print(f"connections initialised by the BPF code: {obj.bss['connections_initialized']}")
                time.sleep(args.keep_seconds)
            print(f"detached; available now: {' '.join(available())}")
    except bpfoom.BpfError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
