"""The listening socket of ``clipzero serve`` and ``clipzero mcp --http``, opened before the model loads.

A port that is taken, a host that is not this machine's or a port that needs administrator rights then fails in
milliseconds with a clear message (exit 2), instead of after the model has loaded; and the address printed as
"serving on" is one the server already holds (``--port 0`` prints the port the system picked).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from .errors import ConfigError

__all__ = ["open_port", "port_of", "run_on"]


def open_port(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (IPv4 or IPv6, as ``host`` resolves).

    Raises:
        ConfigError: the port is in use or needs administrator rights, or ``host`` is not an address here.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host}: not a name or address this machine can listen on ({exc})") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT binds at once
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(_bind_problem(host, port, exc)) from exc
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another server is listening there): stop it, or choose "
                "another port with --port")  # fmt: skip
    if exc.errno == errno.EACCES:
        return f"port {port} needs administrator rights here: choose one from 1024 up with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine (use 127.0.0.1, or 0.0.0.0 for every interface)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def port_of(sock: socket.socket) -> int:
    """The port ``sock`` listens on (the one the system picked for port 0)."""
    return int(sock.getsockname()[1])


def run_on(app: Any, sock: socket.socket, **options: Any) -> None:
    """Run the ASGI ``app`` with uvicorn on the already-listening ``sock`` until interrupted; closes ``sock``."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **options))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
