"""The LSP's HTLC enforcement rules (issue 14, attack 10): when it must go on chain, and the
forwarding delta that leaves it room to (pure functions of heights and delays)."""

from __future__ import annotations

import pytest

from superscalar.channel.htlc import (
    CommitmentSpec,
    Direction,
    Htlc,
    SpecHtlc,
    ptlc_payment_hash,
)
from superscalar.crypto.hashes import sha256
from superscalar.crypto.keys import SecretKey
from superscalar.ladder.enforce import (
    ENFORCE_SLACK_BLOCKS,
    Claim,
    claims_due,
    confirmation_margin,
    enforce_height,
    enforce_lead,
    forward_cltv_delta,
    htlc_expiry_limit,
    must_enforce,
    revealed_claims,
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


# -- the client's side: a secret it revealed, an update the LSP withholds -----------------------


def _spec() -> tuple[CommitmentSpec, bytes, SecretKey]:
    preimage = bytes(range(32))
    key = SecretKey(bytes([7]) * 32)
    paid = Htlc(0, 5_000_000, sha256(preimage), 900)
    moved = Htlc(1, 100_000_000, ptlc_payment_hash(key.public_key), 950, point=key.public_key)
    ours = Htlc(0, 1_000_000, sha256(b"x" * 32), 800)  # one we offered: never a claim
    spec = CommitmentSpec(
        0,
        0,
        (
            SpecHtlc(Direction.RECEIVED, paid),
            SpecHtlc(Direction.RECEIVED, moved),
            SpecHtlc(Direction.OFFERED, ours),
        ),
    )
    return spec, preimage, key


def test_claims_are_the_received_htlcs_and_ptlcs_whose_secret_we_hold() -> None:
    spec, preimage, key = _spec()
    secrets = {
        sha256(preimage): preimage,
        ptlc_payment_hash(key.public_key): key.to_bytes(),
        sha256(b"x" * 32): b"x" * 32,  # the preimage of an HTLC we offered
    }
    assert revealed_claims(spec, secrets) == [
        Claim(0, 5_000_000, 900, preimage),
        Claim(1, 100_000_000, 950, key.to_bytes()),
    ]
    assert revealed_claims(spec, {}) == []
    # a wrong secret under the right id is no claim (it could not spend the output)
    wrong = {ptlc_payment_hash(key.public_key): SecretKey(bytes([8]) * 32).to_bytes()}
    assert revealed_claims(spec, wrong) == []


def test_a_claim_is_due_when_only_the_clients_exit_and_margin_remain() -> None:
    spec, preimage, key = _spec()
    claims = revealed_claims(
        spec, {sha256(preimage): preimage, ptlc_payment_hash(key.public_key): key.to_bytes()}
    )
    margin = confirmation_margin(2)
    first = enforce_height(900, EXIT_DELAY, margin)
    assert claims_due(first - 1, claims, EXIT_DELAY, margin) == []
    assert [c.htlc_id for c in claims_due(first, claims, EXIT_DELAY, margin)] == [0]
    later = enforce_height(950, EXIT_DELAY, margin)
    assert [c.htlc_id for c in claims_due(later, claims, EXIT_DELAY, margin)] == [0, 1]
