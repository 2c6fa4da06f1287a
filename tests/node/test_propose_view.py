"""A client checks its path-only PROPOSE before it generates a single nonce.

The daemon is real (its own SQLite datadir); the PROPOSE is cut from a real
tree with `extract_view`, then tampered with as a cheating LSP would. A refused
PROPOSE leaves no factory row, no nonce use and no signer behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from superscalar.bitcoin.script import p2tr_script
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.factory import (
    ClientView,
    DWParams,
    FactoryParams,
    FeePolicy,
    extract_view,
)
from superscalar.factory.outputs import timeout_output
from superscalar.node.client import FINAL_EXPIRY_SLACK, ClientConfig, ClientDaemon, Refused
from superscalar.node.distribution import new_terms, stored_terms
from superscalar.wire.codec import Hex, Hex32, decode
from superscalar.wire.messages import DistributionTerms, FactoryNonces, FactoryPropose, Payout

from ..factory.helpers import CHANNEL, make_tree, secret

PARAMS = FactoryParams(
    cltv_timeout=1_000, arity=(2,), dw=DWParams(4, 10), fees=FeePolicy(anchor_value=240)
)
TREE = make_tree(8, PARAMS)
CLIENT = 2
SCRIPTS = [p2tr_script(secret(c + 1).xonly_public_key) for c in range(8)]
"""Each client's payout script (the daemon under test has `SCRIPTS[CLIENT]`)."""
HEIGHT = 500
"""The tip the daemon reads (its own view of the chain, never the LSP's)."""
LOCKTIME = PARAMS.cltv_timeout - 100
"""Before the CLTV by more than the exit window: 3 DW layers of 30 blocks + 4 to confirm."""


class StubChain(BitcoindClient):
    """A regtest chain at `HEIGHT`: the height and network are all a PROPOSE check reads."""

    def __init__(self) -> None:
        super().__init__("http://u:p@127.0.0.1:1/")

    def get_block_count(self) -> int:
        return HEIGHT

    def get_blockchain_info(self) -> dict[str, Any]:
        return {"chain": "regtest", "blocks": HEIGHT}


def honest_terms(locktime: int = LOCKTIME) -> DistributionTerms:
    """Every client's opening balance (half its channel) to its script, the rest to the LSP."""
    opening = [(s, CHANNEL // 2 * 1000) for s in SCRIPTS]
    return new_terms(opening, p2tr_script(secret(0).xonly_public_key), locktime)


def propose(
    view: ClientView | bytes,
    distribution: DistributionTerms | None = None,
    params: FactoryParams = PARAMS,
) -> FactoryPropose:
    raw = view if isinstance(view, bytes) else view.to_bytes()
    return FactoryPropose(
        factory_id=Hex32(b"\x11" * 32),
        attempt=1,
        cltv_timeout=params.cltv_timeout,
        arity=params.arity,
        states_per_layer=params.dw.states_per_layer,
        step_blocks=params.dw.step_blocks,
        anchor_value=params.fees.anchor_value,
        view=Hex(raw),
        distribution=honest_terms() if distribution is None else distribution,
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[ClientDaemon]:
    config = ClientConfig(tmp_path, "127.0.0.1", 1, secret(0).public_key, CHANNEL // 2)
    # the chain is asked nothing but its height and network before funding
    d = ClientDaemon(config, secret(CLIENT + 1), StubChain())
    with d.db.transaction() as c:
        c.execute("INSERT INTO node_kv VALUES ('payout_script', ?)", (SCRIPTS[CLIENT].hex(),))
    try:
        yield d
    finally:
        d.db.close()


def assert_refused_before_nonces(daemon: ClientDaemon, msg: FactoryPropose, match: str) -> None:
    with pytest.raises(Refused, match=match):
        daemon._on_propose(msg)
    assert daemon._signer is None
    assert daemon.db.execute("SELECT COUNT(*) FROM factories").fetchone()[0] == 0
    assert daemon.db.execute("SELECT COUNT(*) FROM nonce_use").fetchone()[0] == 0


def with_step_tx(view: ClientView, index: int, tx: Transaction) -> ClientView:
    steps = list(view.steps)
    steps[index] = replace(steps[index], tx=tx)
    return replace(view, steps=tuple(steps))


def test_honest_propose_gets_nonces_and_the_view_is_stored(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    reply = daemon._on_propose(propose(view))
    assert isinstance(reply, FactoryNonces)
    row = daemon._current()
    assert row["state"] == "nonces_sent" and row["position"] == CLIENT
    stored = decode(row["propose"])
    assert isinstance(stored, FactoryPropose) and bytes(stored.view) == view.to_bytes()
    assert row["funding_txid"] == TREE.shape.spec.funding_outpoint.txid[::-1].hex()
    assert stored_terms(daemon.db, b"\x11" * 32) == honest_terms()


def paying_us(amount_sat: int) -> DistributionTerms:
    terms = honest_terms()
    payouts = list(terms.payouts)
    payouts[CLIENT] = Payout(script=payouts[CLIENT].script, amount_sat=amount_sat)
    return DistributionTerms(payouts=tuple(payouts), lsp_script=terms.lsp_script, locktime=LOCKTIME)


def test_a_smaller_credit_opens_our_channel_with_exactly_what_the_distribution_pays(
    daemon: ClientDaemon,
) -> None:
    """What a newcomer opens with is the LSP's credit (a join never sets it): the client
    takes any, as long as its channel and its distribution payout agree to the sat."""
    view = extract_view(TREE, CLIENT)
    assert isinstance(daemon._on_propose(propose(view, paying_us(CHANNEL // 2 - 1))), FactoryNonces)
    assert daemon.ladder.opening_msat(b"\x11" * 32) == (CHANNEL // 2 - 1) * 1000


def test_distribution_paying_more_than_our_channel_holds_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    assert_refused_before_nonces(daemon, propose(view, paying_us(CHANNEL + 1)), "does not pay us")


def test_distribution_valid_only_after_the_cltv_timeout_is_refused(daemon: ClientDaemon) -> None:
    late = honest_terms(PARAMS.cltv_timeout)
    view = extract_view(TREE, CLIENT)
    assert_refused_before_nonces(daemon, propose(view, late), "not before the factory's CLTV")


def test_own_channel_amount_changed_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    leaf = view.steps[-1].tx
    mine = CLIENT - view.steps[-1].signers[0]
    outs = list(leaf.outputs)
    outs[mine] = replace(outs[mine], value=outs[mine].value - 1_000)
    outs[-2] = replace(outs[-2], value=outs[-2].value + 1_000)  # still conserves value
    evil = with_step_tx(view, len(view.steps) - 1, replace(leaf, outputs=tuple(outs)))
    assert_refused_before_nonces(daemon, propose(evil), "own channel capacity")


def test_sibling_output_paid_to_the_wrong_key_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    root_state = view.steps[1]
    other = 1 - (root_state.next_vout or 0)
    outs = list(root_state.tx.outputs)
    thief = timeout_output([secret(0).public_key], secret(0).xonly_public_key, 1_000)
    outs[other] = thief.txout(outs[other].value)
    evil = with_step_tx(view, 1, replace(root_state.tx, outputs=tuple(outs)))
    assert_refused_before_nonces(daemon, propose(evil), "not the node output")


def test_our_key_swapped_out_of_the_participants_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    parts = list(view.participants)
    parts[CLIENT] = secret(99).public_key
    assert_refused_before_nonces(
        daemon, propose(replace(view, participants=tuple(parts))), "claimed position"
    )


def test_state_sequence_off_the_dw_grid_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    state = view.steps[1].tx
    txin = replace(state.inputs[0], sequence=state.inputs[0].sequence + 1)
    evil = with_step_tx(view, 1, replace(state, inputs=(txin,)))
    assert_refused_before_nonces(daemon, propose(evil), "not a DW state")


def test_path_not_spending_the_funding_outpoint_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    elsewhere = OutPoint(b"\x22" * 32, 0)
    kickoff = view.steps[0].tx
    evil = with_step_tx(view, 0, replace(kickoff, inputs=(TxIn(elsewhere, sequence=0xFFFFFFFF),)))
    assert_refused_before_nonces(daemon, propose(evil), "previous path output")


def test_funding_amount_that_does_not_match_the_path_is_refused(daemon: ClientDaemon) -> None:
    view = extract_view(TREE, CLIENT)
    evil = replace(view, funding_amount=view.funding_amount + 10_000)
    assert_refused_before_nonces(daemon, propose(evil), "conserve value")


def test_malformed_view_bytes_are_refused(daemon: ClientDaemon) -> None:
    raw = extract_view(TREE, CLIENT).to_bytes()
    assert_refused_before_nonces(daemon, propose(raw[:-5]), "malformed")


def test_view_for_another_position_is_refused(daemon: ClientDaemon) -> None:
    assert_refused_before_nonces(daemon, propose(extract_view(TREE, CLIENT + 1)), "position")


def test_new_factory_not_at_dw_state_zero_is_refused(daemon: ClientDaemon) -> None:
    """A valid DW nSequence, but a later state: the factory would start with its updates
    used up."""
    view = extract_view(TREE, CLIENT)
    state = view.steps[1].tx
    txin = replace(state.inputs[0], sequence=PARAMS.dw.sequence(2))
    evil = with_step_tx(view, 1, replace(state, inputs=(txin,)))
    assert_refused_before_nonces(daemon, propose(evil), "DW state 0")


# -- the client's own bounds (factory.safety): from its config and the height it reads --------


def _tree_propose(params: FactoryParams, locktime: int | None = None) -> FactoryPropose:
    """A consistent PROPOSE for `params` (the view is really built with them): only the
    client's own policy can refuse it."""
    view = extract_view(make_tree(8, params), CLIENT)
    terms = honest_terms(params.cltv_timeout - 100 if locktime is None else locktime)
    return propose(view, terms, params)


def test_a_cltv_25_blocks_away_is_refused(daemon: ClientDaemon) -> None:
    short = replace(PARAMS, cltv_timeout=HEIGHT + 25)
    msg = _tree_propose(short, locktime=HEIGHT + 1)
    assert_refused_before_nonces(daemon, msg, "refused: cltv-too-soon: ")


def test_a_cltv_the_exit_cannot_reach_is_refused(daemon: ClientDaemon) -> None:
    # 3 layers × 30 blocks + 4 to confirm = 94 blocks: 93 leave the exit one block short
    near = replace(PARAMS, cltv_timeout=HEIGHT + 93)
    msg = _tree_propose(near, locktime=HEIGHT + 1)
    assert_refused_before_nonces(daemon, msg, "refused: exit-window-too-short: ")


def test_a_dw_step_too_long_for_the_life_is_refused(daemon: ClientDaemon) -> None:
    long = replace(PARAMS, dw=DWParams(4, 100))  # 3 layers × 300 blocks > the 500 left
    assert_refused_before_nonces(daemon, _tree_propose(long), "refused: exit-window-too-short: ")
    longer = replace(PARAMS, dw=DWParams(4, 145))
    assert_refused_before_nonces(daemon, _tree_propose(longer), "refused: dw-step-too-long: ")


def test_a_distribution_locktime_that_leaves_no_exit_window_is_refused(
    daemon: ClientDaemon,
) -> None:
    """The LSP's old locktime (a third of the dying period before the CLTV): after a root
    kickoff there, the exit could not finish before the timeout sweep."""
    msg = _tree_propose(PARAMS, locktime=PARAMS.cltv_timeout - 10)
    assert_refused_before_nonces(daemon, msg, "refused: distribution-too-late: ")


def test_the_exit_window_boundary_is_accepted(daemon: ClientDaemon) -> None:
    msg = _tree_propose(PARAMS, locktime=PARAMS.cltv_timeout - 94)
    assert isinstance(daemon._on_propose(msg), FactoryNonces)


def test_the_clients_own_config_bounds_the_terms(tmp_path: Path) -> None:
    config = ClientConfig(
        tmp_path, "127.0.0.1", 1, secret(0).public_key, CHANNEL // 2,
        safety=(("min_factory_life", 501),),
    )  # fmt: skip
    d = ClientDaemon(config, secret(CLIENT + 1), StubChain())
    try:
        with d.db.transaction() as c:
            c.execute("INSERT INTO node_kv VALUES ('payout_script', ?)", (SCRIPTS[CLIENT].hex(),))
        assert_refused_before_nonces(d, _tree_propose(PARAMS), "refused: cltv-too-soon: ")
    finally:
        d.db.close()


def test_a_payee_fails_an_htlc_whose_on_chain_claim_would_already_be_due(
    daemon: ClientDaemon,
) -> None:
    """A preimage is revealed only for an HTLC we could still claim on chain: expiry −
    height must leave our path's exit delay + margin, plus our reaction slack."""
    assert isinstance(daemon._on_propose(propose(extract_view(TREE, CLIENT))), FactoryNonces)
    delay, margin = daemon.ladder.claim_budget(daemon._current())
    last_refused = HEIGHT + FINAL_EXPIRY_SLACK + delay + margin
    shell = SimpleNamespace(factory_id=b"\x11" * 32, state=SimpleNamespace(chain_height=HEIGHT))
    assert daemon._too_late_to_claim(shell, last_refused)  # type: ignore[arg-type]
    assert not daemon._too_late_to_claim(shell, last_refused + 1)  # type: ignore[arg-type]
