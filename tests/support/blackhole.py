"""A loopback TCP proxy in front of a real server that can stop answering: the realistic
hang of an object store (a load balancer or a stalled server that accepts connections and
never replies), which a store that raises at once does not reproduce.

Modes: "pass" forwards both ways; "hang" accepts new connections and never answers on
them, and drops whatever is sent on connections already open (pooled ones too): like a
black hole, those connections stay dead after the store comes back, and only new ones
work again. "refuse" closes new connections at once. Runs on threads of its own,
independent of the event loop under test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

_CHUNK = 65536


class HangingProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self._mode = "pass"
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._sockets: list[socket.socket] = []
        # One flag per connection: once set, nothing on it is ever forwarded again.
        self._dead: list[threading.Event] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="hanging-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in ("pass", "hang", "refuse"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
            if mode == "hang":
                for dead in self._dead:
                    dead.set()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._mode == "refuse":
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._sockets.append(client)
        if self._mode != "pass":
            return  # accepted, and never answered: the socket stays open until close()
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets.append(upstream)
        dead = threading.Event()
        with self._lock:
            self._dead.append(dead)
            if self._mode != "pass":
                dead.set()
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst, dead), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, dead: threading.Event) -> None:
        try:
            while not self._closed:
                data = src.recv(_CHUNK)
                if not data:
                    break
                if dead.is_set():
                    continue  # dropped, as a black hole drops packets
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not dead.is_set():
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def hanging_proxy(upstream: str) -> Iterator[HangingProxy]:
    proxy = HangingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
