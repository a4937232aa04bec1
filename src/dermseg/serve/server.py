"""Running the web app with uvicorn: in the foreground (``dermseg serve``) or in a thread (tests, scripts).

The connection limits are uvicorn's own settings where it has them (:class:`ConnectionLimits`):
``timeout_keep_alive`` (idle connections between requests), ``limit_concurrency`` (connections
and tasks; beyond it uvicorn answers 503), ``timeout_graceful_shutdown`` (on SIGTERM or Ctrl-C,
requests in flight get this long to finish, then they are cancelled and the server stops) and
``h11_max_incomplete_event_size`` (the size of a request's headers). uvicorn has no deadline for
a request's headers, so :mod:`dermseg.serve.protocol` adds one; the body's deadline is the
upload's (:func:`dermseg.serve.upload.receive_upload`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from dermseg.errors import ConfigError
from dermseg.serve.protocol import with_header_timeout

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


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many connections are served at once.

    Attributes:
        header_timeout: seconds a connection has to send a request's complete headers (from when
            it opens, and again after each response); then it is closed.
        keep_alive_timeout: seconds an idle connection is kept open between requests.
        max_connections: open connections (and tasks) served at once; beyond it, 503.
        shutdown_grace: seconds requests in flight get to finish on SIGTERM or Ctrl-C before the
            server stops regardless.
        max_header_bytes: the largest request head (request line and headers), bytes.
    """

    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 64
    shutdown_grace: int = 30
    max_header_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")


def _server(app: ASGIApp, log_level: str, limits: ConnectionLimits) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        http=with_header_timeout(limits.header_timeout),
        timeout_keep_alive=limits.keep_alive_timeout,
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=limits.shutdown_grace,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    return uvicorn.Server(config)


def serve_forever(
    app: ASGIApp, sock: socket.socket, log_level: str = "warning", limits: ConnectionLimits | None = None
) -> None:
    """Serve ``app`` on a bound socket until interrupted (Ctrl-C, SIGTERM)."""
    _server(app, log_level, limits or ConnectionLimits()).run(sockets=[sock])


class BackgroundServer:
    """Serve an app from a thread on a free loopback port; a context manager.

    Example::

        with BackgroundServer(create_app(segmenter)) as server:
            urllib.request.urlopen(server.url + "api/info")
    """

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, limits: ConnectionLimits | None = None
    ) -> None:
        self._sock = listen(host, port)
        self.url = url_of(self._sock)
        self._server = _server(app, "warning", limits or ConnectionLimits())
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
