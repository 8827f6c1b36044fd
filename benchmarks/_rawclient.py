"""Raw stdlib extmodule peers shared by the benchmarks that drive a real Yate.

``RAW_HANDLER``: the code of a handler process (``python -c RAW_HANDLER port name quickack
priority``) that installs ``name`` and answers every message handled at once.
``RawClient``: the driver's socket (TCP_NODELAY, TCP_QUICKACK re-armed after every read).
"""

from __future__ import annotations

import socket
from typing import List

QUICKACK = getattr(socket, "TCP_QUICKACK", None)

RAW_HANDLER = '''
import socket, sys
port, name, quickack = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3] == "1"
priority = sys.argv[4].encode() if len(sys.argv) > 4 else b"100"
QA = getattr(socket, "TCP_QUICKACK", None) if quickack else None
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b"%%>install:" + priority + b":" + name + b"\\n")
buf = b""
while True:
    data = s.recv(65536)
    if not data:
        break
    if QA is not None:
        s.setsockopt(socket.IPPROTO_TCP, QA, 1)
    buf += data
    out = []
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
        if line.startswith(b"%%>message:"):
            out.append(b"%%<message:" + line.split(b":", 2)[1] + b":true:\\n")
        elif line.startswith(b"%%<install:"):
            print("ready", flush=True)
    if out:
        s.sendall(b"".join(out))
'''


class RawClient:
    """A stdlib socket on an extmodule listener, with TCP_NODELAY and TCP_QUICKACK."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack()
        self.buf = b""
        self.n = 0

    def _quickack(self) -> None:
        if QUICKACK is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)

    def read_lines(self) -> List[bytes]:
        """Block for at least one line; return the complete lines received (re-arming
        TCP_QUICKACK after every read)."""
        while b"\n" not in self.buf:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("Yate closed the driver connection")
            self._quickack()
            self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return lines

    def close(self) -> None:
        self.sock.close()
