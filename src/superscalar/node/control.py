"""The daemons' local control socket: bitcoind-style JSON-RPC with a cookie in the datadir.

Why reuse `chain.rpc`: it already does cookie auth, strict JSON-RPC and errors,
and `BitcoindClient.call` is a ready-made client for the operator commands.
The daemon writes its port to `datadir/control.port` (the cookie is
`datadir/.cookie`), so `superscalar status --datadir D` needs nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from superscalar.chain.bitcoind import BitcoindClient

__all__ = ["CONTROL_PORT_FILE", "ControlUnavailable", "call_control", "write_control_port"]

CONTROL_PORT_FILE = "control.port"


class ControlUnavailable(Exception):
    """No daemon is serving the control RPC for this datadir."""


def write_control_port(datadir: Path, port: int) -> None:
    tmp = datadir / (CONTROL_PORT_FILE + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, datadir / CONTROL_PORT_FILE)


def call_control(datadir: Path, method: str, *params: Any, timeout: float = 150.0) -> Any:
    """Call `method` on the daemon owning `datadir`; `ControlUnavailable` if none runs."""
    port_file = datadir / CONTROL_PORT_FILE
    cookie = datadir / ".cookie"
    if not port_file.exists() or not cookie.exists():
        raise ControlUnavailable(f"no daemon running for {datadir} (no {port_file.name}/.cookie)")
    port = int(port_file.read_text().strip())
    client = BitcoindClient(f"http://127.0.0.1:{port}/", cookie_file=cookie, timeout=timeout)
    try:
        return client.call(method, *params)
    finally:
        client.close()
