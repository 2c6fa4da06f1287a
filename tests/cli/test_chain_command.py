"""`superscalar chain` and `chain-cli` as separate processes: serve, pay, stop, restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChainProcess:
    def __init__(self, datadir: Path, port: int) -> None:
        self.datadir, self.port = datadir, port
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "superscalar",
                "chain",
                "--datadir",
                str(datadir),
                "--rpcport",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        cookie = datadir / ".cookie"
        stale = cookie.read_text() if cookie.exists() else None  # left by a killed chain
        while not cookie.exists() or cookie.read_text() == stale:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chain did not start: {self.proc.communicate()[1]}")
            time.sleep(0.05)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "superscalar",
                "chain-cli",
                "--datadir",
                str(self.datadir),
                "--rpcport",
                str(self.port),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return err


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "chain"


def test_chain_survives_a_restart_with_height_and_utxos(datadir: Path) -> None:
    port = _free_port()
    chain = ChainProcess(datadir, port)
    try:
        address = chain.cli("getnewaddress").stdout.strip()
        assert chain.cli("generatetoaddress", "101", address).returncode == 0
        assert chain.cli("getbalance").stdout.strip() == "50.00000000"
        unspent = json.loads(chain.cli("listunspent").stdout)
    finally:
        err = chain.stop()
    assert "stopped at height 101" in err
    assert not (datadir / ".cookie").exists()
    chain = ChainProcess(datadir, port)
    try:
        assert chain.cli("getblockcount").stdout.strip() == "101"
        assert json.loads(chain.cli("listunspent").stdout) == unspent
    finally:
        chain.stop()


def test_chain_cli_reports_bitcoind_errors_and_exit_code(datadir: Path) -> None:
    chain = ChainProcess(datadir, _free_port())
    try:
        out = chain.cli("sendrawtransaction", "zz")
        assert out.returncode == 1
        assert "error code: -22" in out.stderr
        assert chain.cli("getblockcount").stdout.strip() == "0"
    finally:
        chain.stop()


def test_chain_cli_without_a_running_chain_says_so(datadir: Path) -> None:
    datadir.mkdir()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "superscalar",
            "chain-cli",
            "--datadir",
            str(datadir),
            "--rpcport",
            str(_free_port()),
            "getblockcount",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "Error" in out.stderr


def test_chain_recovers_blocks_and_mempool_after_kill_9(datadir: Path) -> None:
    port = _free_port()
    chain = ChainProcess(datadir, port)
    try:
        address = chain.cli("getnewaddress").stdout.strip()
        chain.cli("generatetoaddress", "120", address)
        txid = chain.cli("sendtoaddress", address, "1.25").stdout.strip()
        balance = chain.cli("getbalance").stdout.strip()
    finally:
        chain.stop(signal.SIGKILL)  # no flush, no cookie cleanup
    chain = ChainProcess(datadir, port)
    try:
        assert chain.cli("getblockcount").stdout.strip() == "120"
        assert chain.cli("getbalance").stdout.strip() == balance
        assert txid in json.loads(chain.cli("getrawmempool").stdout)
    finally:
        chain.stop()
