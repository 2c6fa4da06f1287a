"""A client that joins claiming a balance it never paid for is turned away at the door, and
the honest clients' factory goes ahead without it (issue 14, attack 11)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Cluster, wait_for

AMOUNT = 100_000
CREDIT = 30_000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 2)
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.slow
def test_a_join_claiming_a_balance_is_refused_and_newcomers_get_only_the_credit(
    cluster: Cluster,
) -> None:
    cluster.start_lsp("--client-credit-sat", str(CREDIT))  # the last flag wins
    cluster.start_client(2, AMOUNT, "--dev-tools", "--dev-misbehave", "free-balance")
    cheat = cluster.client_dir(2)

    def refused() -> str | None:
        snap = cluster.status(cheat)
        err = None if snap is None else snap.get("last_error")
        return err if err and "unasked-balance" in err else None

    wait_for("the cheat's join refused", refused, 60)
    for i in range(2):
        cluster.start_client(i, AMOUNT)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, 2), 120)
    for i in range(2):
        snap = cluster.status(cluster.client_dir(i))
        assert snap is not None
        (chan,) = snap["channels"]
        # the operator's credit, not the join's amount: the rest of the channel is inbound
        assert (chan["local_msat"], chan["remote_msat"]) == (
            CREDIT * 1000,
            (2 * AMOUNT - CREDIT) * 1000,
        )
    snap = cluster.status(cheat)
    assert snap is not None and not [f for f in snap["factories"] if f["state"] != "aborted"]
