"""The leaf channel's BOLT-2 update state machine: events in, effects out, no I/O.

`step(secrets, state, event)` is a pure function. It returns a `Transition`
(new state + effects) or raises a `ChannelError`; on a raise the caller's
state object is unchanged (every value here is immutable), so refusing bad
input can never corrupt a channel.

Bookkeeping follows the well-trodden "change log" model. Our updates move
proposed → signed (in a commitment_signed we sent) → acked (the peer revoked
its old commitment, so they are in its commitment) → gone (in ours too). The
peer's updates move proposed → acked (in our commitment, we revoked) → signed
(in its next commitment) → gone when it revokes. Each side builds the other's
next commitment as `reduce(their latest, their acked updates, our proposed)`
and checks incoming signatures against `reduce(ours, our acked, their
proposed)` — the same logs replayed in the same order on both sides, so the
two views of every commitment are identical.

Signing (simple taproot channels, 2-of-2 MuSig2 on the funding key path): the
signer of the peer's commitment makes a fresh nonce, signs at once and sends
the partial signature with the nonce; the holder's half uses its
deterministic verification nonce (see `nonces`), announced one commitment
ahead, and is only produced at force-close time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..bitcoin.sighash import SighashContext
from ..bitcoin.tx import Transaction
from ..crypto import musig, schnorr
from ..crypto.errors import CryptoError
from ..crypto.keys import PublicKey, SecretKey
from ..crypto.musig import PartialSignature, PublicNonce, SecretNonce, SigningSession
from .close import closing_transaction
from .commitment import Commitment, OutputKind, build_commitment, obscuring_factor
from .config import ChannelConfig, Funding
from .errors import (
    ChannelError,
    CltvExpiryError,
    DataLossError,
    HtlcLimitError,
    InsufficientBalanceError,
    InvalidCommitmentSignatureError,
    InvalidHtlcSignatureError,
    InvalidRevocationError,
    PeerBehindError,
    StaleCommitmentError,
    UnexpectedMessageError,
    UnknownHtlcError,
)
from .htlc import (
    CommitmentSpec,
    Direction,
    Htlc,
    Update,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFulfillHtlc,
    check_preimage,
    reduce,
)
from .keys import ChannelSecrets, CommitmentKeys, derive_privkey
from .messages import (
    AddHtlc,
    BroadcastTransaction,
    ChainTip,
    ChannelClosed,
    ChannelOpen,
    ChannelReady,
    ChannelReestablish,
    ClosingComplete,
    ClosingSig,
    CommitmentSigned,
    DataLossDetected,
    Effect,
    Event,
    FailHtlc,
    ForceClose,
    FulfillHtlc,
    FundingSigned,
    IncomingHtlcCommitted,
    InitiateShutdown,
    Message,
    OutgoingHtlcFailed,
    OutgoingHtlcFulfilled,
    PersistRevokedCommitment,
    PersistState,
    Reestablish,
    RevokeAndAck,
    SendMessage,
    Shutdown,
    SignCommitment,
)
from .nonces import verification_nonce
from .ptlc import (
    claim_presignatures,
    second_stage_signatures,
    verify_claim_presignatures,
    verify_second_stage_signature,
)
from .record import (
    ChannelState,
    CloseNegotiation,
    LocalChanges,
    LocalCommit,
    RemoteChanges,
    RemoteCommit,
    Status,
    has_changes_to_sign,
    is_quiescent,
)
from .revocation import RevokedCommitment
from .scripts import funding_output

__all__ = [
    "DROPPED_ON_RECONNECT",
    "ChannelState",
    "CloseNegotiation",
    "LocalChanges",
    "LocalCommit",
    "RemoteChanges",
    "RemoteCommit",
    "Status",
    "Transition",
    "accept_open",
    "has_changes_to_sign",
    "is_quiescent",
    "local_commitment",
    "open_message",
    "reestablish_message",
    "remote_commitment",
    "resend_funding_signed",
    "signed_local_commitment",
    "start_reestablish",
    "step",
]

_LOCKTIME_THRESHOLD = 500_000_000
DROPPED_ON_RECONNECT = b"dropped on reconnect"
"""The reason of an `OutgoingHtlcFailed` for an add no commitment covered: not the
peer's refusal, so the offerer may simply offer it again."""


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of one step: the state to keep and the effects to carry out, in order."""

    state: ChannelState
    effects: tuple[Effect, ...]


# -- building and signing commitments -------------------------------------------------


def _build(
    state: ChannelState, holder_is_local: bool, number: int, spec: CommitmentSpec, point: PublicKey
) -> Commitment:
    holder, other = (state.local, state.remote) if holder_is_local else (state.remote, state.local)
    keys = CommitmentKeys.derive(holder, other, point)
    return build_commitment(
        state.funding,
        state.funding_output.script_pubkey,
        number,
        spec,
        keys,
        state.config,
        state.obscuring,
    )


def local_commitment(state: ChannelState) -> Commitment:
    """Our latest commitment transaction (unsigned)."""
    lc = _require_local(state)
    return _build(state, True, lc.number, lc.spec, lc.point)


def remote_commitment(state: ChannelState, *, latest: bool = True) -> Commitment:
    """The peer's latest signed commitment (or, `latest=False`, its last unrevoked-by-us one)."""
    rc = state.remote_next_commit if latest and state.remote_next_commit else state.remote_commit
    return _build(state, False, rc.number, rc.spec, rc.point)


def _session(state: ChannelState, sighash: bytes, nonces: Sequence[PublicNonce]) -> SigningSession:
    return SigningSession(
        state.funding_output.signing, musig.aggregate_nonces(list(nonces)), sighash
    )


def _verification_nonce(
    secrets: ChannelSecrets, state: ChannelState, number: int
) -> tuple[SecretNonce, PublicNonce]:
    return verification_nonce(secrets.funding, state.funding.outpoint, number)


def _sign_remote(
    secrets: ChannelSecrets, state: ChannelState, commitment: Commitment, remote_nonce: PublicNonce
) -> tuple[PartialSignature, PublicNonce, tuple[bytes, ...]]:
    """Our partial signature on a peer commitment (fresh nonce) and our HTLC signatures."""
    sighash = commitment.funding_sighash()
    secnonce, pubnonce = musig.generate_nonce(
        secrets.funding.public_key,
        secret_key=secrets.funding,
        keyagg=state.funding_output.signing,
        msg=sighash,
    )
    psig = _session(state, sighash, (pubnonce, remote_nonce)).sign(secnonce, secrets.funding)
    htlc_key = derive_privkey(secrets.htlc, commitment.keys.per_commitment_point)
    return psig, pubnonce, second_stage_signatures(htlc_key, commitment)


def _verify_local(
    state: ChannelState,
    commitment: Commitment,
    ours: PublicNonce,
    psig: PartialSignature,
    nonce: PublicNonce,
    htlc_sigs: Sequence[bytes],
) -> None:
    """Check the peer's signatures on our commitment; raise a typed error if any fails.

    `ours` is the verification nonce we announced for this commitment number.
    """
    try:
        session = _session(state, commitment.funding_sighash(), (nonce, ours))
        ok = session.verify(psig, nonce, state.remote.funding)
    except CryptoError as exc:
        raise InvalidCommitmentSignatureError(f"bad nonce for commitment: {exc}") from exc
    if not ok:
        raise InvalidCommitmentSignatureError(
            f"partial signature on commitment {commitment.number} does not verify"
        )
    sighashes = commitment.second_stage_sighashes()
    if len(htlc_sigs) != len(sighashes):
        raise InvalidHtlcSignatureError(
            f"{len(htlc_sigs)} HTLC signatures for {len(sighashes)} HTLC outputs"
        )
    key = commitment.keys.remote_htlc.xonly()
    vouts = commitment.htlc_vouts
    for i, (sig, sighash) in enumerate(zip(htlc_sigs, sighashes, strict=True)):
        if not verify_second_stage_signature(key, commitment, vouts[i], sighash, sig):
            raise InvalidHtlcSignatureError(f"HTLC signature {i} does not verify")


def signed_local_commitment(
    secrets: ChannelSecrets, state: ChannelState
) -> tuple[Commitment, Transaction]:
    """Our latest commitment, completed with our half of the MuSig2 signature.

    Deterministic: the verification nonce is regenerated from the commitment
    number, and this commitment's content is fixed, so calling it again
    yields the same signature and never signs two messages with one nonce.
    """
    lc = _require_local(state)
    commitment = local_commitment(state)
    secnonce, pubnonce = _verification_nonce(secrets, state, lc.number)
    session = _session(state, commitment.funding_sighash(), (lc.nonce, pubnonce))
    ours = session.sign(secnonce, secrets.funding)
    signature = session.aggregate([ours, lc.partial_sig])
    if not schnorr.verify(
        state.funding_output.signing.xonly, commitment.funding_sighash(), signature
    ):
        raise InvalidCommitmentSignatureError("aggregate commitment signature does not verify")
    return commitment, commitment.tx.with_witness(0, [signature])


# -- opening -----------------------------------------------------------------------------


def open_message(
    secrets: ChannelSecrets,
    funding: Funding,
    config: ChannelConfig,
    *,
    is_initiator: bool,
    balance_msat: int,
    close_script: bytes,
) -> ChannelOpen:
    """Our half of the channel parameters, to send to the peer."""
    nonces = tuple(verification_nonce(secrets.funding, funding.outpoint, n)[1] for n in (0, 1))
    points = (secrets.per_commitment_point(0), secrets.per_commitment_point(1))
    return ChannelOpen(
        secrets.basepoints(),
        config,
        is_initiator,
        balance_msat,
        points,
        (nonces[0], nonces[1]),
        close_script,
    )


def accept_open(
    secrets: ChannelSecrets,
    funding: Funding,
    ours: ChannelOpen,
    theirs: ChannelOpen,
    *,
    chain_height: int = 0,
) -> Transition:
    """Both halves known: sign the peer's commitment 0 (funding_signed)."""
    if ours.basepoints != secrets.basepoints():
        raise ChannelError("our open message does not match our secrets")
    if theirs.config != ours.config:
        raise ChannelError("the peer proposes different channel limits")
    if theirs.is_initiator == ours.is_initiator:
        raise ChannelError("exactly one side must be the initiator")
    if min(ours.balance_msat, theirs.balance_msat) < 0:
        raise ChannelError("negative opening balance")
    if ours.balance_msat + theirs.balance_msat != funding.amount_msat:
        raise ChannelError(
            f"opening balances ({ours.balance_msat} + {theirs.balance_msat} msat) do not add up"
            f" to the funding amount ({funding.amount_msat} msat)"
        )
    if theirs.basepoints.funding == ours.basepoints.funding:
        raise ChannelError("the two funding keys must differ")
    initiator, acceptor = (ours, theirs) if ours.is_initiator else (theirs, ours)
    spec = CommitmentSpec(theirs.balance_msat, ours.balance_msat)
    state = ChannelState(
        funding=funding,
        config=ours.config,
        is_initiator=ours.is_initiator,
        local=ours.basepoints,
        remote=theirs.basepoints,
        local_close_script=ours.close_script,
        funding_output=funding_output(ours.basepoints.funding, theirs.basepoints.funding),
        obscuring=obscuring_factor(initiator.basepoints.payment, acceptor.basepoints.payment),
        status=Status.AWAITING_FUNDING_SIGNATURE,
        local_commit=None,
        remote_commit=RemoteCommit(0, spec, b"", theirs.first_points[0]),
        remote_next_commit=None,
        remote_next_point=theirs.first_points[1],
        remote_next_nonce=theirs.first_nonces[1],
        local_next_nonce=ours.first_nonces[1],
        chain_height=chain_height,
    )
    commitment = _build(state, False, 0, spec, theirs.first_points[0])
    psig, nonce, _ = _sign_remote(secrets, state, commitment, theirs.first_nonces[0])
    state = replace(state, remote_commit=replace(state.remote_commit, txid=commitment.txid))
    return Transition(state, (PersistState(state), SendMessage(FundingSigned(psig, nonce))))


def resend_funding_signed(
    secrets: ChannelSecrets, state: ChannelState, ours: ChannelOpen, theirs: ChannelOpen
) -> FundingSigned:
    """Our funding_signed again, for a peer that lost it (it died before storing it).

    Only while the peer's commitment 0 is the only one we ever signed, and only for
    that very commitment: the open is redone from both (deterministic) open
    messages and must rebuild the commitment 0 we already signed, or we refuse.
    The partial signature uses a fresh nonce, like any re-sent commitment.
    """
    _require_operating(state)
    if state.remote_commit.number != 0 or state.remote_next_commit is not None:
        raise UnexpectedMessageError("the channel moved past its opening commitment")
    redo = accept_open(secrets, state.funding, ours, theirs, chain_height=state.chain_height)
    if redo.state.remote_commit != state.remote_commit or redo.state.remote != state.remote:
        raise ChannelError("the redone open differs from the commitment 0 we signed")
    (signed,) = [e.message for e in redo.effects if isinstance(e, SendMessage)]
    assert isinstance(signed, FundingSigned)
    return signed


def _on_funding_signed(
    secrets: ChannelSecrets, state: ChannelState, msg: FundingSigned
) -> Transition:
    if state.status is not Status.AWAITING_FUNDING_SIGNATURE:
        raise UnexpectedMessageError("funding_signed after the channel opened")
    spec = state.remote_commit.spec.mirror()
    point = secrets.per_commitment_point(0)
    commitment = _build(state, True, 0, spec, point)
    _, ours = _verification_nonce(secrets, state, 0)
    _verify_local(state, commitment, ours, msg.partial_sig, msg.nonce, ())
    local = LocalCommit(0, spec, point, commitment.txid, msg.partial_sig, msg.nonce, ())
    new = replace(state, status=Status.OPEN, local_commit=local)
    return Transition(new, (PersistState(new), ChannelReady()))


# -- checks -------------------------------------------------------------------------------


def _require_local(state: ChannelState) -> LocalCommit:
    if state.local_commit is None:
        raise UnexpectedMessageError("the channel is not open yet")
    return state.local_commit


def _require_operating(state: ChannelState) -> LocalCommit:
    lc = _require_local(state)
    if state.status not in (Status.OPEN, Status.SHUTTING_DOWN):
        raise UnexpectedMessageError(f"channel is {state.status.value}")
    return lc


def _check_new_htlc(config: ChannelConfig, height: int, htlc: Htlc) -> None:
    if htlc.amount_msat == 0 or htlc.amount_msat < config.htlc_minimum_msat:
        raise HtlcLimitError(
            f"HTLC of {htlc.amount_msat} msat is below the minimum {config.htlc_minimum_msat}"
        )
    expiry = htlc.cltv_expiry
    if expiry >= _LOCKTIME_THRESHOLD:
        raise CltvExpiryError(f"cltv_expiry {expiry} is not a block height")
    if expiry < height + config.min_cltv_delta:
        raise CltvExpiryError(
            f"cltv_expiry {expiry} leaves less than the exit budget of {config.min_cltv_delta}"
            f" blocks after height {height}"
        )
    if expiry > height + config.max_cltv_delta:
        raise CltvExpiryError(
            f"cltv_expiry {expiry} is more than {config.max_cltv_delta} blocks after {height}"
        )
    if config.cltv_deadline is not None and expiry > config.cltv_deadline:
        raise CltvExpiryError(
            f"cltv_expiry {expiry} is past the factory deadline {config.cltv_deadline}"
        )


def _check_offerer(view: CommitmentSpec, config: ChannelConfig) -> None:
    """Limits on the HTLCs the holder's *counterparty* offered, in the holder's next commitment."""
    offered = view.received()
    if len(offered) > config.max_accepted_htlcs:
        raise HtlcLimitError(f"{len(offered)} HTLCs exceed max_accepted_htlcs")
    in_flight = sum(h.amount_msat for h in offered)
    if in_flight > config.max_htlc_value_in_flight_msat:
        raise HtlcLimitError(f"{in_flight} msat in flight exceeds the limit")
    if view.to_remote_msat < config.channel_reserve_sat * 1000:
        raise InsufficientBalanceError(
            f"offerer keeps {view.to_remote_msat} msat, below its reserve of"
            f" {config.channel_reserve_sat} sat"
        )


def _is_settle_pending(updates: Sequence[Update], htlc_id: int) -> bool:
    return any(not isinstance(u, UpdateAddHtlc) and u.id == htlc_id for u in updates)


def _cross_signed(state: ChannelState, ours: Direction, htlc_id: int) -> Htlc:
    """An HTLC in both latest revoked-to commitments (`ours`: its direction on our side)."""
    lc = _require_local(state)
    htlc = lc.spec.find(ours, htlc_id)
    if htlc is None or state.remote_commit.spec.find(ours.flip(), htlc_id) is None:
        raise UnknownHtlcError(f"no irrevocably committed {ours.value} HTLC {htlc_id}")
    return htlc


# -- update handlers ------------------------------------------------------------------------


def _persist_send(state: ChannelState, *messages: Message) -> Transition:
    return Transition(state, (PersistState(state), *(SendMessage(m) for m in messages)))


def _cmd_add(state: ChannelState, cmd: AddHtlc) -> Transition:
    _require_local(state)
    if state.status is not Status.OPEN or state.close is not None:
        raise UnexpectedMessageError("no new HTLCs once the channel is shutting down")
    try:
        htlc = Htlc(
            state.local_next_htlc_id,
            cmd.amount_msat,
            cmd.payment_hash,
            cmd.cltv_expiry,
            cmd.onion,
            cmd.point,
        )
    except ValueError as exc:
        raise ChannelError(f"bad HTLC: {exc}") from exc
    _check_new_htlc(state.config, state.chain_height, htlc)
    update = UpdateAddHtlc(htlc)
    latest = state.remote_next_commit or state.remote_commit
    view = reduce(latest.spec, state.remote_changes.acked, (*state.local_changes.proposed, update))
    _check_offerer(view, state.config)
    new = replace(
        state,
        local_changes=replace(
            state.local_changes, proposed=(*state.local_changes.proposed, update)
        ),
        local_next_htlc_id=state.local_next_htlc_id + 1,
    )
    return _persist_send(new, update)


def _on_add(state: ChannelState, msg: UpdateAddHtlc) -> Transition:
    lc = _require_local(state)
    if state.status is not Status.OPEN or state.close is not None:
        raise UnexpectedMessageError("update_add_htlc after shutdown")
    if msg.htlc.id != state.remote_next_htlc_id:
        raise UnexpectedMessageError(f"HTLC id {msg.htlc.id}, expected {state.remote_next_htlc_id}")
    _check_new_htlc(state.config, state.chain_height, msg.htlc)
    view = reduce(lc.spec, state.local_changes.acked, (*state.remote_changes.proposed, msg))
    _check_offerer(view, state.config)
    new = replace(
        state,
        remote_changes=replace(
            state.remote_changes, proposed=(*state.remote_changes.proposed, msg)
        ),
        remote_next_htlc_id=state.remote_next_htlc_id + 1,
    )
    return Transition(new, (PersistState(new),))


def _cmd_settle(state: ChannelState, update: UpdateFulfillHtlc | UpdateFailHtlc) -> Transition:
    _require_operating(state)
    htlc = _cross_signed(state, Direction.RECEIVED, update.id)
    if _is_settle_pending(state.local_changes.all(), update.id):
        raise UnknownHtlcError(f"HTLC {update.id} is already being settled")
    if isinstance(update, UpdateFulfillHtlc):
        check_preimage(htlc, update.preimage)
        if htlc.is_ptlc:
            _require_claim_signatures(state, htlc)
    new = replace(
        state,
        local_changes=replace(
            state.local_changes, proposed=(*state.local_changes.proposed, update)
        ),
    )
    return _persist_send(new, update)


def _on_settle(state: ChannelState, msg: UpdateFulfillHtlc | UpdateFailHtlc) -> Transition:
    _require_operating(state)
    htlc = _cross_signed(state, Direction.OFFERED, msg.id)
    if _is_settle_pending(state.remote_changes.all(), msg.id):
        raise UnknownHtlcError(f"HTLC {msg.id} is already being settled")
    effects: list[Effect] = []
    if isinstance(msg, UpdateFulfillHtlc):
        check_preimage(htlc, msg.preimage)
        effects.append(OutgoingHtlcFulfilled(htlc, msg.preimage))
    new = replace(
        state,
        remote_changes=replace(
            state.remote_changes, proposed=(*state.remote_changes.proposed, msg)
        ),
    )
    return Transition(new, (PersistState(new), *effects))


def _cmd_sign(secrets: ChannelSecrets, state: ChannelState) -> Transition:
    lc_number = _require_operating(state).number
    if state.remote_next_commit is not None:
        raise UnexpectedMessageError("waiting for revoke_and_ack before signing again")
    local, remote = state.local_changes, state.remote_changes
    if not (local.proposed or remote.acked):
        raise UnexpectedMessageError("no updates to sign")
    spec = reduce(state.remote_commit.spec, remote.acked, local.proposed)
    number = state.remote_commit.number + 1
    point = state.remote_next_point
    commitment = _build(state, False, number, spec, point)
    psig, nonce, htlc_sigs = _sign_remote(secrets, state, commitment, state.remote_next_nonce)
    new = replace(
        state,
        remote_next_commit=RemoteCommit(number, spec, commitment.txid, point, lc_number),
        local_changes=LocalChanges((), local.proposed, local.acked),
        remote_changes=RemoteChanges(remote.proposed, (), remote.acked),
    )
    return _persist_send(new, CommitmentSigned(number, psig, nonce, htlc_sigs))


def _on_commitment_signed(
    secrets: ChannelSecrets, state: ChannelState, msg: CommitmentSigned
) -> Transition:
    lc = _require_operating(state)
    number = lc.number + 1
    if msg.commitment_number != number:
        raise StaleCommitmentError(
            f"commitment_signed for {msg.commitment_number}, expected {number}"
        )
    local, remote = state.local_changes, state.remote_changes
    if not (remote.proposed or local.acked):
        raise UnexpectedMessageError("commitment_signed without updates")
    spec = reduce(lc.spec, local.acked, remote.proposed)
    point = secrets.per_commitment_point(number)
    commitment = _build(state, True, number, spec, point)
    _verify_local(
        state, commitment, state.local_next_nonce, msg.partial_sig, msg.nonce, msg.htlc_signatures
    )
    _, next_nonce = _verification_nonce(secrets, state, number + 1)
    revoke = RevokeAndAck(
        lc.number,
        secrets.per_commitment_secret(lc.number),
        secrets.per_commitment_point(number + 1),
        next_nonce,
        _claim_presignatures(secrets, commitment),
    )
    new = replace(
        state,
        local_commit=LocalCommit(
            number, spec, point, commitment.txid, msg.partial_sig, msg.nonce, msg.htlc_signatures
        ),
        local_next_nonce=next_nonce,
        local_changes=LocalChanges(local.proposed, local.signed, ()),
        remote_changes=RemoteChanges((), (*remote.acked, *remote.proposed), remote.signed),
    )
    return _persist_send(new, revoke)


def _claim_presignatures(secrets: ChannelSecrets, commitment: Commitment) -> tuple[bytes, ...]:
    """Our adaptor signatures on the peer's claims of the PTLCs we offered in `commitment`."""
    if not commitment.ptlc_claim_vouts:
        return ()
    key = derive_privkey(secrets.htlc, commitment.keys.per_commitment_point)
    return claim_presignatures(key, commitment)


def _offers_ptlc(spec: CommitmentSpec) -> bool:
    return any(h.point is not None for h in spec.offered())


def _with_claim_signatures(
    state: ChannelState, pending: RemoteCommit, sigs: tuple[bytes, ...]
) -> RemoteCommit:
    """The peer's commitment now current, with its verified PTLC claim signatures."""
    if not isinstance(sigs, tuple):
        raise InvalidHtlcSignatureError("PTLC claim signatures must be a list")
    if not _offers_ptlc(pending.spec):
        if sigs:
            raise InvalidHtlcSignatureError("PTLC claim signatures for a commitment without PTLCs")
        return pending
    commitment = _build(state, False, pending.number, pending.spec, pending.point)
    verify_claim_presignatures(commitment, sigs)
    return replace(pending, ptlc_claim_signatures=sigs)


def _require_claim_signatures(state: ChannelState, htlc: Htlc) -> None:
    """Before we reveal a PTLC's scalar: every unrevoked commitment of the peer's holding it
    must come with its adaptor signature on our claim, or the peer could broadcast it,
    learn the scalar from our off-chain fulfil and still time the PTLC out."""
    pending = state.remote_next_commit
    if pending is not None and pending.spec.find(Direction.OFFERED, htlc.id) is not None:
        raise UnexpectedMessageError(
            f"PTLC {htlc.id}: the peer has not yet revoked for its newest commitment"
            " (no claim signature yet): fulfil after its revoke_and_ack"
        )
    current = state.remote_commit
    commitment = _build(state, False, current.number, current.spec, current.point)
    vout = commitment.htlc_vout(Direction.OFFERED, htlc.id)
    if vout is not None and vout in commitment.ptlc_claim_vouts:
        index = commitment.ptlc_claim_vouts.index(vout)
        if index >= len(current.ptlc_claim_signatures):
            raise UnexpectedMessageError(f"PTLC {htlc.id}: no claim signature from the peer")


def _on_revoke_and_ack(
    secrets: ChannelSecrets, state: ChannelState, msg: RevokeAndAck
) -> Transition:
    _require_operating(state)
    pending = state.remote_next_commit
    if pending is None:
        raise UnexpectedMessageError("revoke_and_ack without a pending commitment")
    old = state.remote_commit
    if msg.commitment_number != old.number:
        raise StaleCommitmentError(
            f"revoke_and_ack for {msg.commitment_number}, expected {old.number}"
        )
    try:
        point = SecretKey(msg.per_commitment_secret).public_key
    except (CryptoError, TypeError) as exc:
        raise InvalidRevocationError("per-commitment secret is not a valid secret key") from exc
    if point != old.point:
        raise InvalidRevocationError(f"secret does not match the point of commitment {old.number}")
    pending = _with_claim_signatures(state, pending, msg.ptlc_claim_signatures)
    revocations = state.revocations.insert(old.number, msg.per_commitment_secret)
    local, remote = state.local_changes, state.remote_changes
    new = replace(
        state,
        remote_commit=pending,
        remote_next_commit=None,
        remote_next_point=msg.next_per_commitment_point,
        remote_next_nonce=msg.next_nonce,
        local_changes=LocalChanges(local.proposed, (), (*local.acked, *local.signed)),
        remote_changes=RemoteChanges(remote.proposed, remote.acked, ()),
        revocations=revocations,
    )
    effects: list[Effect] = [
        PersistRevokedCommitment(RevokedCommitment(old.number, old.txid, old.spec)),
        PersistState(new),
    ]
    for update in remote.signed:  # now in both commitments, both old ones revoked
        if isinstance(update, UpdateAddHtlc):
            effects.append(IncomingHtlcCommitted(update.htlc))
        elif isinstance(update, UpdateFailHtlc):
            htlc = old.spec.find(Direction.RECEIVED, update.id)
            if htlc is not None:
                effects.append(OutgoingHtlcFailed(htlc, update.reason))
    return Transition(new, tuple(effects))


# -- reconnection (channel_reestablish) ---------------------------------------------------

_NO_SECRET = bytes(32)


def _drop_uncommitted(state: ChannelState) -> tuple[ChannelState, list[Effect]]:
    """BOLT-2: on disconnect both sides forget updates no commitment_signed covers yet.

    A dropped HTLC of ours was never in any commitment, so it simply failed
    (the daemon gets `OutgoingHtlcFailed`); a dropped settle of ours is
    re-issued by the daemon after the reestablish (see `_resumable`).
    """
    local, remote = state.local_changes, state.remote_changes
    effects: list[Effect] = [
        OutgoingHtlcFailed(u.htlc, DROPPED_ON_RECONNECT)
        for u in local.proposed
        if isinstance(u, UpdateAddHtlc)
    ]
    ours = sum(isinstance(u, UpdateAddHtlc) for u in local.proposed)
    theirs = sum(isinstance(u, UpdateAddHtlc) for u in remote.proposed)
    new = replace(
        state,
        local_changes=replace(local, proposed=()),
        remote_changes=replace(remote, proposed=()),
        local_next_htlc_id=state.local_next_htlc_id - ours,
        remote_next_htlc_id=state.remote_next_htlc_id - theirs,
    )
    return new, effects


def reestablish_message(secrets: ChannelSecrets, state: ChannelState) -> ChannelReestablish:
    """What we tell the peer about our side on a new connection."""
    lc = _require_local(state)
    r = state.remote_commit.number
    last = state.revocations.secret(r - 1) if r > 0 else _NO_SECRET
    if last is None:
        raise ChannelError(f"missing the peer's revocation secret for commitment {r - 1}")
    return ChannelReestablish(lc.number + 1, r, last, lc.point, state.local_next_nonce)


def start_reestablish(secrets: ChannelSecrets, state: ChannelState) -> Transition:
    """A new connection: drop uncommitted updates, send our reestablish, await the peer's."""
    _require_operating(state)
    dropped, notices = _drop_uncommitted(state)
    new = replace(dropped, reestablishing=True)
    msg = reestablish_message(secrets, new)
    return Transition(new, (PersistState(new), SendMessage(msg), *notices))


def _resumable(state: ChannelState) -> list[Effect]:
    """Irrevocably committed incoming HTLCs we have not (or no longer) started to settle.

    Re-announced after every reestablish so the daemon resumes them (forward,
    fulfill, fail) — its handling must be idempotent.
    """
    lc = _require_local(state)
    pending = state.local_changes.all()
    return [
        IncomingHtlcCommitted(htlc)
        for htlc in lc.spec.received()
        if state.remote_commit.spec.find(Direction.OFFERED, htlc.id) is not None
        and not _is_settle_pending(pending, htlc.id)
    ]


def _check_their_revocations(
    secrets: ChannelSecrets, state: ChannelState, msg: ChannelReestablish
) -> bool:
    """Validate `next_revocation_number`; True if our last revoke_and_ack must be re-sent.

    A `DataLossError` from here is *proven* (the peer showed our own secret),
    so the caller marks the channel instead of just refusing the message.
    """
    lc = _require_local(state)
    nr = msg.next_revocation_number
    if nr > 0 and msg.last_remote_secret != secrets.per_commitment_secret(nr - 1):
        raise InvalidRevocationError(
            f"channel_reestablish: wrong secret for our revoked commitment {nr - 1}"
        )
    if nr > lc.number:
        raise DataLossError(
            f"the peer holds our revocation of commitment {nr - 1}, but our latest is"
            f" {lc.number}: our state is outdated"
        )
    if nr < lc.number - 1:
        raise PeerBehindError(
            f"the peer expects our revocation of commitment {nr}; we revoked up to"
            f" {lc.number - 1}: the peer lost state"
        )
    return nr == lc.number - 1


def _check_their_commitment(state: ChannelState, msg: ChannelReestablish) -> bool:
    """Validate `next_commitment_number`; True if our last commitment_signed must be re-sent."""
    theirs = msg.next_commitment_number - 1
    r, pending = state.remote_commit, state.remote_next_commit
    latest = pending.number if pending is not None else r.number
    if theirs < r.number:
        raise PeerBehindError(
            f"the peer's latest commitment is {theirs}; it revoked up to {r.number - 1}:"
            " the peer lost state"
        )
    if theirs > latest:
        raise DataLossError(
            f"the peer holds commitment {theirs}, we only ever signed {latest}:"
            " our state may be outdated"
        )
    point = r.point if theirs == r.number else pending.point  # type: ignore[union-attr]
    if msg.current_point != point:
        raise InvalidRevocationError(
            f"channel_reestablish: wrong per-commitment point for commitment {theirs}"
        )
    if theirs == r.number and msg.next_nonce != state.remote_next_nonce:
        raise InvalidCommitmentSignatureError(
            f"channel_reestablish: a different verification nonce for commitment {theirs + 1}"
        )
    return pending is not None and theirs == r.number


def _resend_commitment(secrets: ChannelSecrets, state: ChannelState) -> list[Message]:
    """Our updates and commitment_signed the peer never got: the *same* commitment,
    re-signed with a fresh nonce (never a different commitment under one number)."""
    pending = state.remote_next_commit
    assert pending is not None
    commitment = _build(state, False, pending.number, pending.spec, pending.point)
    if commitment.txid != pending.txid:
        raise ChannelError(f"rebuilt commitment {pending.number} differs from the one we signed")
    psig, nonce, htlc_sigs = _sign_remote(secrets, state, commitment, state.remote_next_nonce)
    return [*state.local_changes.signed, CommitmentSigned(pending.number, psig, nonce, htlc_sigs)]


def _resend_revocation(secrets: ChannelSecrets, state: ChannelState) -> RevokeAndAck:
    lc = _require_local(state)
    _, next_nonce = _verification_nonce(secrets, state, lc.number + 1)
    return RevokeAndAck(
        lc.number - 1,
        secrets.per_commitment_secret(lc.number - 1),
        secrets.per_commitment_point(lc.number + 1),
        next_nonce,
        _claim_presignatures(secrets, local_commitment(state)),
    )


def _on_reestablish(
    secrets: ChannelSecrets, state: ChannelState, msg: ChannelReestablish
) -> Transition:
    lc = _require_operating(state)
    if not state.reestablishing:
        raise UnexpectedMessageError("channel_reestablish before we sent ours")
    for value in (msg.next_commitment_number, msg.next_revocation_number):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ChannelError("channel_reestablish numbers must be non-negative ints")
    if not isinstance(msg.last_remote_secret, bytes) or len(msg.last_remote_secret) != 32:
        raise ChannelError("channel_reestablish secret must be 32 bytes")
    try:
        resend_revoke = _check_their_revocations(secrets, state, msg)
    except DataLossError as exc:  # proven with our own secret: never operate (or force close)
        new = replace(state, status=Status.DATA_LOSS, reestablishing=False)
        return Transition(new, (PersistState(new), DataLossDetected(str(exc))))
    resend_commit = _check_their_commitment(state, msg)
    messages: list[Message] = []
    if resend_commit:
        messages += _resend_commitment(secrets, state)
    if resend_revoke:
        raa = _resend_revocation(secrets, state)
        pending = state.remote_next_commit
        # re-send in the original order: the revocation went out when `lc` became ours
        if pending is not None and resend_commit and pending.signed_at_local == lc.number:
            messages.insert(0, raa)
        else:
            messages.append(raa)
    new = replace(state, reestablishing=False)
    return Transition(
        new, (PersistState(new), *(SendMessage(m) for m in messages), *_resumable(new))
    )


# -- cooperative close ------------------------------------------------------------------------


def _closing_tx(
    state: ChannelState, closer_is_local: bool, fee_sat: int, remote_script: bytes
) -> Transaction:
    lc = _require_local(state)
    return closing_transaction(
        state.funding,
        lc.spec,
        closer_is_local=closer_is_local,
        fee_sat=fee_sat,
        local_script=state.local_close_script,
        remote_script=remote_script,
        dust_limit_sat=state.config.dust_limit_sat,
    )


def _cmd_shutdown(state: ChannelState, cmd: InitiateShutdown) -> Transition:
    _require_local(state)
    if state.status is not Status.OPEN or state.close is not None:
        raise UnexpectedMessageError("a close is already under way")
    if state.local_changes.proposed:
        raise UnexpectedMessageError("sign pending updates before shutdown")
    if isinstance(cmd.fee_sat, bool) or not isinstance(cmd.fee_sat, int) or cmd.fee_sat < 0:
        raise ChannelError("closing fee must be a non-negative int")
    new = replace(
        state,
        status=Status.SHUTTING_DOWN,
        close=CloseNegotiation(we_are_closer=True, fee_sat=cmd.fee_sat),
    )
    return _persist_send(new, Shutdown(state.local_close_script))


def _on_shutdown(secrets: ChannelSecrets, state: ChannelState, msg: Shutdown) -> Transition:
    _require_operating(state)
    close = state.close
    if close is None:
        if state.remote_changes.proposed:
            raise UnexpectedMessageError("shutdown with unsigned updates pending")
        secnonce, pubnonce = musig.generate_nonce(
            secrets.funding.public_key,
            secret_key=secrets.funding,
            keyagg=state.funding_output.signing,
        )
        new = replace(
            state,
            status=Status.SHUTTING_DOWN,
            close=CloseNegotiation(
                we_are_closer=False,
                remote_script=msg.script_pubkey,
                closee_secnonce=secnonce,
                closee_nonce=pubnonce,
            ),
        )
        return _persist_send(new, Shutdown(state.local_close_script, pubnonce))
    if not close.we_are_closer or close.remote_script is not None:
        raise UnexpectedMessageError("duplicate shutdown")
    if msg.nonce is None:
        raise UnexpectedMessageError("the closee's shutdown must carry its nonce")
    new = replace(
        state, close=replace(close, remote_script=msg.script_pubkey, remote_nonce=msg.nonce)
    )
    return Transition(new, (PersistState(new),))


def _maybe_send_closing(secrets: ChannelSecrets, transition: Transition) -> Transition:
    """As closer, sign the closing tx once the shutdowns are exchanged and no HTLC is left."""
    state = transition.state
    close = state.close
    if (
        close is None
        or not close.we_are_closer
        or close.remote_script is None
        or close.remote_nonce is None
        or close.closing_tx is not None
        or not is_quiescent(state)
    ):
        return transition
    lc = _require_local(state)
    fee = min(close.fee_sat, lc.spec.to_local_msat // 1000)
    try:
        tx = _closing_tx(state, True, fee, close.remote_script)
    except ChannelError:
        return transition  # nothing closable (all dust): the event itself still stands
    sighash = _closing_sighash(state, tx)
    secnonce, pubnonce = musig.generate_nonce(
        secrets.funding.public_key,
        secret_key=secrets.funding,
        keyagg=state.funding_output.signing,
        msg=sighash,
    )
    psig = _session(state, sighash, (pubnonce, close.remote_nonce)).sign(secnonce, secrets.funding)
    new = replace(
        state,
        close=replace(close, fee_sat=fee, closing_tx=tx, closer_nonce=pubnonce, closer_psig=psig),
    )
    effects = tuple(e for e in transition.effects if not isinstance(e, PersistState))
    return Transition(
        new, (PersistState(new), *effects, SendMessage(ClosingComplete(fee, psig, pubnonce)))
    )


def _closing_sighash(state: ChannelState, tx: Transaction) -> bytes:
    return SighashContext(tx, (state.funding_output.txout(state.funding.amount_sat),)).key_path(0)


def _on_closing_complete(
    secrets: ChannelSecrets, state: ChannelState, msg: ClosingComplete
) -> Transition:
    close = state.close
    if close is None or close.we_are_closer or close.closee_nonce is None:
        raise UnexpectedMessageError("closing_complete without our shutdown")
    secnonce = close.closee_secnonce
    if secnonce is None or secnonce.used:
        raise UnexpectedMessageError("our closing nonce is gone: restart the shutdown")
    if not is_quiescent(state):
        raise UnexpectedMessageError("closing_complete with HTLCs or updates in flight")
    lc = _require_local(state)
    if isinstance(msg.fee_sat, bool) or not 0 <= msg.fee_sat <= lc.spec.to_remote_msat // 1000:
        raise InsufficientBalanceError(f"the closer cannot pay a fee of {msg.fee_sat} sat")
    assert close.remote_script is not None
    tx = _closing_tx(state, False, msg.fee_sat, close.remote_script)
    sighash = _closing_sighash(state, tx)
    try:
        session = _session(state, sighash, (msg.nonce, close.closee_nonce))
        ok = session.verify(msg.partial_sig, msg.nonce, state.remote.funding)
    except CryptoError as exc:
        raise InvalidCommitmentSignatureError(f"bad closing nonce: {exc}") from exc
    if not ok:
        raise InvalidCommitmentSignatureError("closing partial signature does not verify")
    ours = session.sign(secnonce, secrets.funding)
    final = tx.with_witness(0, [session.aggregate([ours, msg.partial_sig])])
    new = replace(state, status=Status.CLOSED, close=replace(close, closing_tx=final))
    return Transition(
        new,
        (
            PersistState(new),
            SendMessage(ClosingSig(ours)),
            BroadcastTransaction(final),
            ChannelClosed(final, True),
        ),
    )


def _on_closing_sig(state: ChannelState, msg: ClosingSig) -> Transition:
    close = state.close
    if (
        close is None
        or not close.we_are_closer
        or close.closing_tx is None
        or close.closer_nonce is None
        or close.closer_psig is None
        or close.remote_nonce is None
        or state.status is Status.CLOSED
    ):
        raise UnexpectedMessageError("closing_sig without our closing_complete")
    sighash = _closing_sighash(state, close.closing_tx)
    session = _session(state, sighash, (close.closer_nonce, close.remote_nonce))
    if not session.verify(msg.partial_sig, close.remote_nonce, state.remote.funding):
        raise InvalidCommitmentSignatureError("closing partial signature does not verify")
    final = close.closing_tx.with_witness(
        0, [session.aggregate([close.closer_psig, msg.partial_sig])]
    )
    new = replace(state, status=Status.CLOSED, close=replace(close, closing_tx=final))
    return Transition(
        new, (PersistState(new), BroadcastTransaction(final), ChannelClosed(final, True))
    )


def _cmd_force_close(secrets: ChannelSecrets, state: ChannelState) -> Transition:
    if state.status in (Status.CLOSED, Status.FORCE_CLOSED):
        raise UnexpectedMessageError(f"channel is already {state.status.value}")
    commitment, tx = signed_local_commitment(secrets, state)
    new = replace(state, status=Status.FORCE_CLOSED)
    anchor = commitment.vout(OutputKind.ANCHOR)
    return Transition(
        new, (PersistState(new), BroadcastTransaction(tx, anchor), ChannelClosed(tx, False))
    )


# -- dispatch -------------------------------------------------------------------------------


def step(secrets: ChannelSecrets, state: ChannelState, event: Event) -> Transition:
    """Apply one event; returns the new state and effects, or raises `ChannelError`."""
    transition = _dispatch(secrets, state, event)
    if transition.state.close is not None and transition.state.status is Status.SHUTTING_DOWN:
        # Whatever event made the channel quiescent, the closer then signs the close.
        transition = _maybe_send_closing(secrets, transition)
    return transition


def _dispatch(secrets: ChannelSecrets, state: ChannelState, event: Event) -> Transition:
    if state.status in (Status.CLOSED, Status.FORCE_CLOSED) and not isinstance(event, ChainTip):
        raise UnexpectedMessageError(f"channel is {state.status.value}")
    if state.status is Status.DATA_LOSS and not isinstance(event, ChainTip):
        raise DataLossError("the peer proved our channel state is outdated: refusing to operate")
    if isinstance(event, Reestablish):
        return start_reestablish(secrets, state)
    if isinstance(event, ChannelReestablish):
        return _on_reestablish(secrets, state, event)
    if state.reestablishing and not isinstance(event, ChainTip | ForceClose):
        raise UnexpectedMessageError(
            f"{type(event).__name__} before the peer's channel_reestablish"
        )
    if isinstance(event, UpdateAddHtlc):
        return _on_add(state, event)
    if isinstance(event, UpdateFulfillHtlc | UpdateFailHtlc):
        return _on_settle(state, event)
    if isinstance(event, CommitmentSigned):
        return _on_commitment_signed(secrets, state, event)
    if isinstance(event, RevokeAndAck):
        return _on_revoke_and_ack(secrets, state, event)
    if isinstance(event, AddHtlc):
        return _cmd_add(state, event)
    if isinstance(event, FulfillHtlc):
        return _cmd_settle(state, UpdateFulfillHtlc(event.id, event.preimage))
    if isinstance(event, FailHtlc):
        return _cmd_settle(state, UpdateFailHtlc(event.id, event.reason))
    if isinstance(event, SignCommitment):
        return _cmd_sign(secrets, state)
    if isinstance(event, ChainTip):
        new = replace(state, chain_height=event.height)
        return Transition(new, (PersistState(new),))
    if isinstance(event, FundingSigned):
        return _on_funding_signed(secrets, state, event)
    if isinstance(event, InitiateShutdown):
        return _cmd_shutdown(state, event)
    if isinstance(event, Shutdown):
        return _on_shutdown(secrets, state, event)
    if isinstance(event, ClosingComplete):
        return _on_closing_complete(secrets, state, event)
    if isinstance(event, ClosingSig):
        return _on_closing_sig(state, event)
    if isinstance(event, ForceClose):
        return _cmd_force_close(secrets, state)
    if isinstance(event, ChannelOpen):
        raise UnexpectedMessageError("channel parameters are exchanged before the state exists")
    raise UnexpectedMessageError(f"unknown event {type(event).__name__}")
