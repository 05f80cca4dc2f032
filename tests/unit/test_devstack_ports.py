"""gateway.devstack: the ports chosen for one tritonserver are distinct and free (CI once saw the same port chosen
for HTTP and gRPC, and Triton refused to start)."""

from __future__ import annotations

import socket

from gateway.devstack import TritonPorts
from gateway.devstack.triton_server import free_ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_ports_chosen_together_never_repeat_and_are_free() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    assert all(_bindable(port) for port in ports)


def test_a_servers_three_ports_are_distinct() -> None:
    for _ in range(100):
        ports = TritonPorts.free()
        assert len({ports.grpc, ports.http, ports.metrics}) == 3
