"""The ports tests and benchmarks give their servers: never one the kernel hands out on its own, never one another
process drawing at the same time is given, never one a listener holds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _ports
from bench._ports import free_port

pytestmark = pytest.mark.integration  # a second process draws beside this one

DRAWN = 300
WINDOW_START = 31_000  # ports other processes hold in the window are skipped by both draws
ROOT = Path(__file__).resolve().parents[2]


def test_ports_come_from_below_the_kernels_ephemeral_range_and_are_not_given_twice():
    ports = [free_port() for _ in range(DRAWN)]
    assert len(set(ports)) == DRAWN
    assert all(_ports.LOWEST <= port < _ports._ephemeral_low() for port in ports)


def test_two_processes_drawing_together_never_get_the_same_port(monkeypatch):
    """Both draw 20 ports from one window of 60: drawn without the reservation, their picks would overlap."""
    window = f"_ports.LOWEST = {WINDOW_START}; _ports._ephemeral_low = lambda: {WINDOW_START + 60}"
    monkeypatch.setattr(_ports, "LOWEST", WINDOW_START)
    monkeypatch.setattr(_ports, "_ephemeral_low", lambda: WINDOW_START + 60)
    ours = {free_port() for _ in range(20)}  # held (reserved) while this process lives
    code = f"from bench import _ports; {window}; print(' '.join(str(_ports.free_port()) for _ in range(20)))"
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert len(theirs) == 20
    assert not ours & {int(port) for port in theirs}


def test_a_port_a_listener_holds_on_any_address_is_not_free():
    port = free_port()
    assert _ports._free_on_every_address(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", port))  # another loopback address: a server on 0.0.0.0 could not bind it
        listener.listen()
        assert not _ports._free_on_every_address(port)


def test_a_name_is_reserved_once():
    name = f"loopback-test-{free_port()}"
    assert _ports.reserve(name)
    assert not _ports.reserve(name)  # this process holds it already
