"""The LSP's HTLC enforcement rules (issue 14, attack 10): when it must go on chain, and the
forwarding delta that leaves it room to (pure functions of heights and delays)."""

from __future__ import annotations

import pytest

from superscalar.ladder.enforce import (
    ENFORCE_SLACK_BLOCKS,
    confirmation_margin,
    enforce_height,
    enforce_lead,
    forward_cltv_delta,
    htlc_expiry_limit,
    must_enforce,
)

# a regtest two-level tree: two DW layers of (4 - 1) x 2 blocks, four path txs
EXIT_DELAY = 12
PATH_TXS = 4
MIN_CLTV_DELTA = 18


def test_the_margin_gives_every_tx_of_the_claim_a_block_and_slack() -> None:
    # 4 path txs + the commitment + the HTLC-success tx, each a block, + slack
    assert confirmation_margin(PATH_TXS) == PATH_TXS + 2 + ENFORCE_SLACK_BLOCKS
    assert confirmation_margin(PATH_TXS, slack=0) == 6


def test_the_lsp_goes_on_chain_exactly_when_the_payers_exit_and_margin_remain() -> None:
    margin = confirmation_margin(PATH_TXS)
    expiry = 1_000
    start = enforce_height(expiry, EXIT_DELAY, margin)
    assert start == expiry - EXIT_DELAY - margin == expiry - enforce_lead(EXIT_DELAY, margin)
    assert not must_enforce(start - 1, expiry, EXIT_DELAY, margin)  # one block early: wait
    assert must_enforce(start, expiry, EXIT_DELAY, margin)
    assert must_enforce(expiry + 5, expiry, EXIT_DELAY, margin)  # late is still "now"


def test_a_deeper_tree_or_a_longer_margin_starts_earlier() -> None:
    expiry, height = 1_000, 975
    assert not must_enforce(height, expiry, EXIT_DELAY, confirmation_margin(PATH_TXS))
    assert must_enforce(height, expiry, 3 * EXIT_DELAY, confirmation_margin(6))
    assert must_enforce(height, expiry, EXIT_DELAY, 20)


def test_the_forwarding_delta_covers_both_exit_paths_margins_and_the_claim_budget() -> None:
    payer, payee = (EXIT_DELAY, confirmation_margin(PATH_TXS)), (6, confirmation_margin(2))
    delta = forward_cltv_delta(*payer, *payee, MIN_CLTV_DELTA)
    assert delta == (12 + 8) + (6 + 6) + 18
    # the old constant (40 blocks) is shorter than one two-level exit on each side
    assert delta > 40
    # symmetric in payer and payee
    assert forward_cltv_delta(*payee, *payer, MIN_CLTV_DELTA) == delta
    # the downstream HTLC's latest on-chain claim (its expiry + the payee's lead) still
    # leaves the payer's whole lead before the upstream expiry
    e_in = 2_000
    e_out = e_in - delta
    payee_claim_by = e_out + enforce_lead(*payee)
    assert payee_claim_by + MIN_CLTV_DELTA <= enforce_height(e_in, *payer)


def test_an_incoming_htlc_must_let_enforcement_start_before_the_distribution_locktime() -> None:
    margin = confirmation_margin(PATH_TXS)
    locktime = 500
    limit = htlc_expiry_limit(locktime, EXIT_DELAY, margin)
    assert limit == locktime + EXIT_DELAY + margin
    assert enforce_height(limit - 1, EXIT_DELAY, margin) == locktime - 1  # last accepted
    assert enforce_height(limit, EXIT_DELAY, margin) == locktime  # first refused


@pytest.mark.parametrize("bad", [-1, True, 1.5, "3"])
def test_heights_and_delays_are_non_negative_ints(bad: object) -> None:
    with pytest.raises(ValueError):
        must_enforce(bad, 10, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        forward_cltv_delta(1, 1, 1, 1, bad)  # type: ignore[arg-type]
