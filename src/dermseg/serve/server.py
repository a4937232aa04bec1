"""Running the web app with uvicorn: in the foreground (``dermseg serve``) or in a thread (tests, scripts)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from dermseg.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

#: ``Host`` headers a loopback-only server answers (others are refused: DNS-rebinding guard).
LOCAL_HOST_HEADERS = ["localhost", "127.0.0.1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0 picks a free one).

    Raises:
        ConfigError: the address cannot be resolved or bound (in use, not this machine's, ...).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise ConfigError(f"cannot resolve host {host!r} ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket (IPv6 hosts in brackets; this machine's loopback
    address for a socket bound to all interfaces)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def _server(app: ASGIApp, log_level: str) -> uvicorn.Server:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off"))


def serve_forever(app: ASGIApp, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on a bound socket until interrupted (Ctrl-C)."""
    _server(app, log_level).run(sockets=[sock])


class BackgroundServer:
    """Serve an app from a thread on a free loopback port; a context manager.

    Example::

        with BackgroundServer(create_app(segmenter)) as server:
            urllib.request.urlopen(server.url + "api/info")
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = listen(host, port)
        self.url = url_of(self._sock)
        self._server = _server(app, "warning")
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="dermseg-serve", daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
