"""A TCP proxy a test owns, between the app and a real server, to stage network faults.

Modes:
- forward: bytes pass both ways (the healthy network);
- refuse: the listening socket is closed and every open connection reset, as when the
  server's host is up but the server is not (connect gets ECONNREFUSED at once);
- blackhole: connections are still accepted, and every byte either way is dropped, as
  when a server or a firewall stops answering without closing anything. The proxy's
  kernel still acknowledges the client's packets, so only a client-side deadline ends
  the wait (TCP keepalives and tcp_user_timeout do not fire): the hardest case.
- mute: what the client sends still reaches the server, and the server's answers are
  dropped: a COMMIT that the server carries out and the client never hears of.

Back in forward mode, connections that lost bytes are closed (their protocol state is
garbage), connections that did not keep working.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.tainted = upstream is None  # accepted in blackhole mode: never connected
        self.tainted_up = False  # bytes from the client were dropped (not in mute mode)
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for s in (self.client, self.upstream):
            if s is None:
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    # -- control ---------------------------------------------------------------------

    def forward(self) -> None:
        with self._lock:
            self.mode = "forward"
            for link in [x for x in self._links if x.tainted]:
                link.close()
                self._links.remove(link)
        if self._listener is None:
            self._listen()

    def blackhole(self) -> None:
        with self._lock:
            self.mode = "blackhole"
        if self._listener is None:
            self._listen()

    def mute(self) -> None:
        with self._lock:
            self.mode = "mute"

    def refuse(self) -> None:
        with self._lock:
            self.mode = "refuse"
            listener, self._listener = self._listener, None
            links, self._links = self._links, []
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave the
            # socket listening (that thread holds it) until the next client came.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for link in links:
            link.close()

    def close(self) -> None:
        self.refuse()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            upstream = None
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
            link = _Link(client, upstream)
            with self._lock:
                if self.mode == "refuse":
                    link.close()
                    return
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link, True), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(link, False), daemon=True).start()

    def _pump(self, link: _Link, from_client: bool) -> None:
        src = link.client if from_client else link.upstream
        assert src is not None
        while not link.closed:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                link.close()
                return
            passes = self.mode == "forward" and not link.tainted
            if self.mode == "mute" and from_client and not link.tainted_up:
                passes = True  # the server still hears the client
            if not passes:
                link.tainted = True
                link.tainted_up = link.tainted_up or from_client
                continue
            dst = link.upstream if from_client else link.client
            try:
                assert dst is not None
                dst.sendall(data)
            except OSError:
                link.close()
                return
