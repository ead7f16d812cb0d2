"""Whether a port can be bound now, and who holds it when not (seedcore.runtime.ports): what `seedcore up` says
instead of starting the MLflow UI on a taken port, and what makes a local Ray's dashboard give way. Real sockets
on loopback, held by this process."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from contextlib import contextmanager

import psutil
import pytest

from bench._ports import free_port
from seedcore.config import Settings
from seedcore.runtime.ports import port_problem
from seedcore.server.mlflow_ui import start_mlflow_ui, stop_process
from seedcore.tuning.cluster import _dashboard_port

pytestmark = pytest.mark.integration

IN_USE = os.strerror(errno.EADDRINUSE)  # "Address already in use"
OUR_COMMAND = psutil.Process().cmdline()[0]  # this process's program: what the reason names after its pid


@contextmanager
def listening(host: str = "127.0.0.1"):
    """A server socket of this process listening on an ephemeral port of `host`; yields the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((host, 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_port_nobody_holds_has_no_problem():
    assert port_problem("127.0.0.1", free_port()) is None


def test_a_port_someone_listens_on_is_refused_naming_the_listeners_pid_and_command():
    with listening() as port:
        problem = port_problem("127.0.0.1", port)
    assert problem is not None and problem.startswith(f"{IN_USE}; listening: pid {os.getpid()} "), problem
    assert OUR_COMMAND in problem and len(problem) <= len(f"{IN_USE}; listening: pid {os.getpid()} ") + 160


def test_the_port_is_free_again_once_its_listener_closed():
    with listening() as port:
        assert port_problem("127.0.0.1", port) is not None
    assert port_problem("127.0.0.1", port) is None


def test_binding_every_interface_is_refused_while_someone_listens_on_loopback():
    with listening() as port:
        problem = port_problem("0.0.0.0", port)
    assert problem is not None and problem.startswith(f"{IN_USE}; listening: pid {os.getpid()} "), problem


def test_a_port_whose_last_connection_is_in_time_wait_is_free_as_a_server_binds_it():
    """A server (SO_REUSEADDR, as uvicorn and aiohttp set it) closed its side of a connection first and ended: the
    port stays in TIME_WAIT for a minute. A plain bind fails on it, the next server's bind does not, nor the check."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its end of the connection goes to TIME_WAIT
            assert client.recv(1) == b""  # the server's FIN; the client's close answers it
    deadline = time.monotonic() + 5
    while not _in_time_wait(port):
        assert time.monotonic() < deadline, "the connection never reached TIME_WAIT"
        time.sleep(0.05)
    with socket.socket() as plain, pytest.raises(OSError) as refused:
        plain.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE  # the premise: TIME_WAIT holds the port for a plain bind
    assert port_problem("127.0.0.1", port) is None


def test_a_port_bound_without_a_listener_is_refused_naming_no_listener():
    with socket.socket() as holder:  # bound (no SO_REUSEADDR), not listening: e.g. a server still starting
        holder.bind(("127.0.0.1", 0))
        problem = port_problem("127.0.0.1", holder.getsockname()[1])
    assert problem == IN_USE


def test_an_address_this_machine_does_not_have_is_refused_with_the_systems_reason():
    problem = port_problem("192.0.2.1", free_port())  # TEST-NET-1: documentation only, never a local address
    assert problem is not None and problem.startswith(os.strerror(errno.EADDRNOTAVAIL)), problem


def test_an_ipv6_address_is_checked_as_ipv6():
    with listening("::1") as port:
        problem = port_problem("::1", port)
    assert problem is not None and problem.startswith(f"{IN_USE}; listening: pid {os.getpid()} "), problem
    assert port_problem("::1", port) is None


def test_the_mlflow_ui_is_not_started_on_a_taken_port_and_the_message_says_who_holds_it(tmp_path, capsys):
    with listening() as port:
        settings = Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns", host="127.0.0.1",
                            mlflow_ui_port=port)
        ui = start_mlflow_ui(settings)
        stop_process(ui)  # nothing to stop unless it wrongly started
    assert ui is None
    err = capsys.readouterr().err
    assert f"MLflow UI not started: 127.0.0.1:{port} cannot be bound ({IN_USE}; listening: pid {os.getpid()} " in err
    assert "--mlflow-ui-port" in err and "--no-mlflow-ui" in err


def test_a_taken_ray_dashboard_port_gives_way_to_rays_choice_and_the_log_says_why(caplog):
    caplog.set_level(logging.WARNING, logger="seedcore.tuning.cluster")
    with listening() as port:
        assert _dashboard_port(port) is None  # Ray picks 8265 or the next free port
    said = [r.getMessage() for r in caplog.records if r.name == "seedcore.tuning.cluster"]
    assert any(f"Ray dashboard port {port} cannot be bound ({IN_USE}; listening: pid {os.getpid()}" in line
               for line in said), said


def test_a_free_ray_dashboard_port_is_kept_and_off_or_unset_pass_through():
    port = free_port()
    assert _dashboard_port(port) == port
    assert _dashboard_port(0) == 0 and _dashboard_port(None) is None


def _in_time_wait(port: int) -> bool:
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
               for c in psutil.net_connections("tcp"))
