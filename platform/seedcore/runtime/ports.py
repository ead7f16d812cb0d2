"""Whether a port can be bound now, and who holds it when not: said before a server we start would fail on it."""

from __future__ import annotations

import socket

import psutil


def port_problem(host: str, port: int) -> str | None:
    """None when a server could bind `host:port` now; else why not, and who listens there (if we may see)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
            return None
        except OSError as exc:
            reason = exc.strerror or str(exc)
    try:
        holders = sorted({c.pid for c in psutil.net_connections("tcp")
                          if c.pid and c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN})
    except psutil.Error:
        holders = []
    for pid in holders[:1]:
        try:
            reason += f"; listening: pid {pid} {' '.join(psutil.Process(pid).cmdline())[:160]}"
        except psutil.Error:
            reason += f"; listening: pid {pid}"
    return reason
