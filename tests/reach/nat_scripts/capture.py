"""Capture every frame on an interface of this namespace (a raw AF_PACKET socket, as tcpdump
reads them) and append it to a file, until stdin closes. Prints {"capturing": IFACE} once
the socket is bound.

    capture.py IFACE OUT
"""

from __future__ import annotations

import json
import select
import socket
import sys

ETH_P_ALL = 0x0003


def main(iface: str, out: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    print(json.dumps({"capturing": iface}), flush=True)
    with open(out, "ab") as sink:
        for _ in range(10_000_000):  # bounded
            ready, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
            if sys.stdin in ready and not sys.stdin.readline():
                return
            if sock in ready:
                sink.write(sock.recv(65536))
                sink.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
