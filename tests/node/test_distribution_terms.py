"""The distribution tx as a client sees it: rebuilt from its path view, refused unless it
pays the client's opening balance to its own script before the factory's timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from superscalar.bitcoin.script import p2tr_script
from superscalar.chain.consensus import verify_transaction
from superscalar.factory import SigningPlan, extract_view, run_ceremony, verify_view
from superscalar.factory.tree import FactoryTree
from superscalar.ladder.turnover import ClientStage
from superscalar.node.client import ClientConfig, ClientDaemon
from superscalar.node.common import now
from superscalar.node.distribution import (
    DISTRIBUTION_SESSION,
    client_payout_sat,
    client_terms_refusal,
    lsp_distribution,
    new_terms,
    view_distribution,
)
from superscalar.node.lsp import LspConfig, LspDaemon
from superscalar.store.db import Database
from superscalar.wire.codec import Hex
from superscalar.wire.messages import DistributionTerms, Payout

from ..factory.helpers import CLTV, keys_for, make_tree, secret
from ..factory.test_view import expectation

SCRIPTS = [p2tr_script(secret(c + 1).xonly_public_key) for c in range(4)]
LSP_SCRIPT = p2tr_script(secret(0).xonly_public_key)
OPENING_MSAT = [100_000_000, 120_000_500, 90_000_000, 150_000_000]


def _terms(locktime: int = CLTV - 2) -> DistributionTerms:
    return new_terms(list(zip(SCRIPTS, OPENING_MSAT, strict=True)), LSP_SCRIPT, locktime)


def _refusal(terms: DistributionTerms | None, client: int = 1) -> str | None:
    return client_terms_refusal(terms, client, 4, SCRIPTS[client], OPENING_MSAT[client], CLTV)


@pytest.fixture(scope="module")
def tree() -> FactoryTree:
    return make_tree(4)


def test_every_client_rebuilds_the_lsps_distribution_tx_from_its_view(tree: FactoryTree) -> None:
    terms = _terms()
    lsp = lsp_distribution(tree, terms)
    for c in range(4):
        verified = verify_view(extract_view(tree, c), expectation(c, tree))
        ours = view_distribution(verified, terms)
        assert ours.tx == lsp.tx and ours.session == lsp.session


def test_the_distribution_session_signed_with_the_tree_is_valid_by_consensus(
    tree: FactoryTree,
) -> None:
    dist = lsp_distribution(tree, _terms())
    plan = SigningPlan.for_tree(tree, extra=[dist.session])
    tx = dist.signed(run_ceremony(plan, keys_for(4)).signatures[DISTRIBUTION_SESSION])
    verify_transaction(tx, [dist.spent])
    assert [o.value for o in tx.outputs[:4]] == [100_000, 120_000, 90_000, 150_000]
    assert tx.locktime == CLTV - 2 and dist.fee == 0


def test_client_accepts_its_exact_opening_balance_before_the_timeout() -> None:
    assert _refusal(_terms()) is None


def test_client_refuses_a_proposal_without_a_distribution_tx() -> None:
    assert _refusal(None) == "the proposal has no distribution tx"


def test_client_refuses_a_payout_short_by_one_sat() -> None:
    terms = _terms()
    payouts = list(terms.payouts)
    payouts[1] = Payout(script=payouts[1].script, amount_sat=payouts[1].amount_sat - 1)
    short = DistributionTerms(payouts=tuple(payouts), lsp_script=terms.lsp_script, locktime=1)
    assert "does not pay us 120000 sat" in (_refusal(short) or "")


def test_client_refuses_its_payout_to_another_script() -> None:
    terms = _terms()
    payouts = list(terms.payouts)
    payouts[1] = Payout(script=Hex(LSP_SCRIPT), amount_sat=payouts[1].amount_sat)
    stolen = DistributionTerms(payouts=tuple(payouts), lsp_script=terms.lsp_script, locktime=1)
    assert "to our payout script" in (_refusal(stolen) or "")


def test_client_refuses_a_locktime_at_or_after_the_cltv_timeout() -> None:
    assert "not before the factory's CLTV timeout" in (_refusal(_terms(CLTV)) or "")


def test_client_refuses_terms_missing_a_client() -> None:
    terms = _terms()
    fewer = DistributionTerms(payouts=terms.payouts[:3], lsp_script=terms.lsp_script, locktime=1)
    assert "one payout per client" in (_refusal(fewer) or "")


def test_a_dust_opening_balance_gets_no_output() -> None:
    assert client_payout_sat(329_999, SCRIPTS[0]) == 0
    assert client_payout_sat(330_999, SCRIPTS[0]) == 330


class _NoChain:
    """Nothing here asks the chain anything."""


def _factory_rows(db: Database, role: str, rows: list[tuple[str, str]]) -> None:
    with db.transaction() as c:
        for fid, state in rows:
            c.execute(
                "INSERT INTO factories (factory_id, role, attempt, state, position, propose,"
                " created, updated) VALUES (?, ?, 1, ?, 0, '{}', ?, ?)",
                (fid, role, state, now(), now()),
            )


def test_a_client_never_broadcasts_the_default_of_a_factory_it_handed_its_key_over_in(
    tmp_path: Path,
) -> None:
    """Joining a newer factory disarms nothing (a move whose PTLC never came left our
    balance in the old one, attack 3); the handover recorded with the fulfil does."""
    config = ClientConfig(tmp_path, "127.0.0.1", 1, secret(0).public_key, 100_000)
    daemon = ClientDaemon(config, secret(1), _NoChain())  # type: ignore[arg-type]
    try:
        _factory_rows(daemon.db, "client", [("aa" * 32, "funded"), ("bb" * 32, "funded")])
        assert daemon._may_distribute(bytes.fromhex("bb" * 32))
        assert daemon._may_distribute(bytes.fromhex("aa" * 32))  # joined bb, key not given
        with daemon.db.transaction() as c:
            c.execute(
                "INSERT INTO turnovers VALUES (?, ?, 'client', ?, ?, ?, NULL, NULL, '', 0)",
                ("aa" * 32, "02" * 33, "bb" * 32, "03" * 33, ClientStage.HANDED_OVER.value),
            )
        assert not daemon._may_distribute(bytes.fromhex("aa" * 32))
        assert daemon._may_distribute(bytes.fromhex("bb" * 32))
    finally:
        daemon.db.close()


def test_the_lsp_pays_no_default_for_a_factory_whose_clients_moved(tmp_path: Path) -> None:
    config = LspConfig(tmp_path, "127.0.0.1", 0, 2)
    daemon = LspDaemon(config, secret(0), _NoChain())  # type: ignore[arg-type]
    try:
        rows = [("aa" * 32, "funded"), ("bb" * 32, "funded"), ("cc" * 32, "funded")]
        _factory_rows(daemon.db, "lsp", rows)
        with daemon.db.transaction() as c:
            members = [("aa", 0, "02"), ("aa", 1, "03"), ("bb", 0, "02"), ("cc", 0, "04")]
            for fid, pos, key in members:  # client "02" moved from aa to bb
                c.execute(
                    "INSERT INTO factory_clients VALUES (?, ?, ?, 1000, '')",
                    (fid * 32, pos, key * 33),
                )
        assert not daemon.may_distribute(bytes.fromhex("aa" * 32))  # one of its clients moved
        assert daemon.may_distribute(bytes.fromhex("bb" * 32))
        assert daemon.may_distribute(bytes.fromhex("cc" * 32))
    finally:
        daemon.db.close()
