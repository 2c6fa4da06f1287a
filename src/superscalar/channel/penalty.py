"""Penalties: taking every output of a revoked commitment the peer broadcast.

Once the peer has revealed the per-commitment secret of commitment n, we know
its revocation secret `r·SHA256(R||P) + p·SHA256(P||R)`. Every revocable
output (its to_local, each HTLC, and any second-stage output it already
spent an HTLC into) has that key as its taproot *internal* key, so each is
swept with one key-path signature; the tapscript root needed for the tweak
is rebuilt from the revoked commitment's content, which the channel handed
out as a `RevokedCommitment` when the peer revoked it. Our own to_remote
output (1-block delay) and a non-empty anchor go into the same transaction,
so the penalty sweeps everything at once.
"""

from __future__ import annotations

from ..bitcoin.fees import Feerate
from ..bitcoin.tx import OutPoint, Transaction
from ..crypto.keys import SecretKey
from .commitment import Commitment, OutputKind, build_commitment, commitment_number_from_tx
from .errors import ChannelError
from .keys import ChannelSecrets, CommitmentKeys, derive_revocation_privkey
from .onchain import SpendInput, build_sweep, sweep_to_remote
from .record import ChannelState
from .revocation import RevokedCommitment

__all__ = [
    "build_penalty",
    "penalty_inputs",
    "revoked_commitment",
    "revoked_number",
    "second_stage_penalty_input",
]


def revoked_number(state: ChannelState, tx: Transaction) -> int | None:
    """If `tx` is one of the peer's revoked commitments, its number; else None."""
    if not tx.inputs or tx.inputs[0].prevout != state.funding.outpoint:
        return None
    number = commitment_number_from_tx(tx, state.obscuring)
    if number is None or state.revocations.secret(number) is None:
        return None
    return number


def revoked_commitment(
    state: ChannelState, revoked: RevokedCommitment, secret: bytes
) -> Commitment:
    """Rebuild the peer's revoked commitment from its record and revealed secret."""
    point = SecretKey(secret).public_key
    keys = CommitmentKeys.derive(state.remote, state.local, point)
    commitment = build_commitment(
        state.funding,
        state.funding_output.script_pubkey,
        revoked.number,
        revoked.spec,
        keys,
        state.config,
        state.obscuring,
    )
    if commitment.txid != revoked.txid:
        raise ChannelError(f"rebuilt commitment {revoked.number} does not match its txid")
    return commitment


def _secret(state: ChannelState, number: int) -> bytes:
    secret = state.revocations.secret(number)
    if secret is None:
        raise ChannelError(f"remote commitment {number} is not revoked")
    return secret


def penalty_inputs(
    secrets: ChannelSecrets,
    state: ChannelState,
    revoked: RevokedCommitment,
    *,
    include_anchor: bool = True,
    exclude: frozenset[OutPoint] = frozenset(),
) -> list[SpendInput]:
    """Every output of the revoked commitment we can take, as sweep inputs.

    `exclude` names outputs already spent (the anchor by the cheater's CPFP
    child, HTLC outputs by its second-stage txs: take those with
    `second_stage_penalty_input`).
    """
    secret = _secret(state, revoked.number)
    commitment = revoked_commitment(state, revoked, secret)
    revocation_key = derive_revocation_privkey(secrets.revocation, secret)
    inputs: list[SpendInput] = []
    for vout, out in enumerate(commitment.outputs):
        outpoint = OutPoint(commitment.txid, vout)
        if outpoint in exclude:
            continue
        if out.kind in (OutputKind.TO_LOCAL, OutputKind.OFFERED_HTLC, OutputKind.RECEIVED_HTLC):
            inputs.append(SpendInput(outpoint, out.txout, key=revocation_key, spend=out.spend))
        elif out.kind is OutputKind.TO_REMOTE:
            inputs.append(sweep_to_remote(secrets, commitment))
        elif include_anchor and out.txout.value > 0:
            inputs.append(SpendInput(outpoint, out.txout))
    return inputs


def second_stage_penalty_input(
    secrets: ChannelSecrets,
    state: ChannelState,
    revoked: RevokedCommitment,
    second_stage: Transaction,
) -> SpendInput:
    """The output of an HTLC-success/-timeout tx the peer spent from a revoked commitment."""
    secret = _secret(state, revoked.number)
    commitment = revoked_commitment(state, revoked, secret)
    info = commitment.second_stage_output()
    if second_stage.outputs[0].script_pubkey != info.script_pubkey:
        raise ChannelError("not a second-stage transaction of this revoked commitment")
    key = derive_revocation_privkey(secrets.revocation, secret)
    return SpendInput(OutPoint(second_stage.txid, 0), second_stage.outputs[0], key=key, spend=info)


def build_penalty(
    secrets: ChannelSecrets,
    state: ChannelState,
    revoked: RevokedCommitment,
    destination: bytes,
    feerate: Feerate,
    *,
    include_anchor: bool = True,
    exclude: frozenset[OutPoint] = frozenset(),
    extra: tuple[SpendInput, ...] = (),
) -> Transaction:
    """One signed transaction sweeping the whole revoked commitment (plus `extra`) to us."""
    inputs = penalty_inputs(secrets, state, revoked, include_anchor=include_anchor, exclude=exclude)
    return build_sweep([*inputs, *extra], destination, feerate)
