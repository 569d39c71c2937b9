"""Serve the review application with uvicorn until Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable

from .folder import ReviewFolder
from .store import DecisionStore


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def free_port(host: str) -> int:
    """A port the system has free on ``host`` now (for ``--port 0``)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serve(
    folder: ReviewFolder, store: DecisionStore, reviewer: str, host: str, port: int, say: Callable[[str], None] = print
) -> None:
    """Serve ``folder``'s review on ``host:port``; prints the URL, returns on Ctrl-C."""
    import uvicorn

    from .app import create_app

    port = port or free_port(host)
    hosts = ["127.0.0.1", "localhost", host] if host not in ("0.0.0.0", "::") else ["*"]
    app = create_app(folder, store, reviewer, hosts)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    say(f"reviewing {len(folder.patients)} patients of {folder.path} as {reviewer}; decisions -> {store.path}")
    say(f"open {url_of(host, port)} (Ctrl-C stops)")
    server.run()
    say(f"stopped; {store.count()} actions recorded in {store.path}")
