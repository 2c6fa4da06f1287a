"""Issue 14, attack 2: an LSP proposing factory terms its clients could not exit under.

The LSP runs `--dev-misbehave short-cltv` (a CLTV timeout 25 blocks away), then, restarted,
`--dev-misbehave long-dw-step` (DW steps so long that the tree's exit outlasts the factory's
life). Unmodified clients bound the terms by their own policy (`factory.safety`: their
config and the height they read) and refuse each PROPOSE before generating a nonce: no
client stores a factory or uses a nonce, every LSP attempt is aborted, and no funding tx
reaches the chain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.chain.bitcoind import ChainResponseError
from superscalar.chain.rpc import RpcError

from .support import Cluster, wait_for

AMOUNTS = [100_000, 120_000]
CODE = re.compile(r"proposed factory refused: ([a-z-]+): ")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _refusal_code(cluster: Cluster, i: int) -> str | None:
    snap = cluster.status(cluster.client_dir(i)) or {}
    found = CODE.search(str(snap.get("last_error") or ""))
    return found.group(1) if found else None


def _lsp_attempts(cluster: Cluster) -> list[dict[str, Any]]:
    snap = cluster.status(cluster.lsp_dir) or {"factories": []}
    return list(snap["factories"])


def _assert_nothing_signed_or_funded(cluster: Cluster) -> None:
    for i in range(len(AMOUNTS)):
        snap = cluster.status(cluster.client_dir(i))
        assert snap is not None
        assert snap["factories"] == [] and snap["nonce_uses"] == 0  # refused before a nonce
        assert snap["channels"] == []
    attempts = _lsp_attempts(cluster)
    assert attempts and all(f["state"] == "aborted" for f in attempts)
    assert all(f["signatures"] == 0 for f in attempts)
    mempool = set(cluster.chain.get_raw_mempool())
    for f in attempts:  # the funding tx was never signed, let alone broadcast
        assert f["funding_txid"] not in mempool
        with pytest.raises((RpcError, ChainResponseError)):
            cluster.chain.get_raw_transaction(str(f["funding_txid"]))


def _refused_by_every_client(cluster: Cluster, code: str) -> None:
    for i in range(len(AMOUNTS)):
        wait_for(f"client {i} refuses: {code}", lambda i=i: _refusal_code(cluster, i) == code, 90)
    wait_for("the LSP aborted an attempt", lambda: bool(_lsp_attempts(cluster)), 30)


@pytest.mark.slow
def test_clients_refuse_a_short_cltv_and_a_long_dw_step_before_signing(cluster: Cluster) -> None:
    cluster.start_lsp("--dev-tools", "--dev-misbehave", "short-cltv")
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    _refused_by_every_client(cluster, "cltv-too-soon")
    _assert_nothing_signed_or_funded(cluster)

    # the same LSP, restarted with DW steps longer than its factory's life allows: the
    # regtest ladder (60 + 30 blocks) with one DW layer of 3 × 31 blocks
    assert cluster.lsp is not None
    cluster.lsp.kill()
    cluster.start_lsp(
        "--dev-tools", "--dev-misbehave", "long-dw-step",
        "--active-blocks", "60", "--dying-blocks", "30",
    )  # fmt: skip
    _refused_by_every_client(cluster, "exit-window-too-short")
    _assert_nothing_signed_or_funded(cluster)
