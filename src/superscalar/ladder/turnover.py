"""PTLC key turnover: a departing client hands the LSP its key in a dying factory.

The LSP pre-signs a message committing to (old factory, new factory, client
key, LSP key) with the adaptor point T = the client's factory public key.
Only the holder of T's secret can complete it into a valid BIP340 signature
by the LSP's key, and the completed signature reveals that secret to the
LSP (`adaptor.extract`). Once the LSP holds every client's key of a factory
it signs the funding output's MuSig2 key path alone (`ladder.close`).

T is the client's full compressed key (parity kept), so the extracted scalar
t satisfies t·G == T exactly; no BIP340 even-y negation is involved on the
adaptor side (the signature's own nonce parity is handled by `adaptor`).

Both sides are sans-IO step functions: `lsp_step` and `client_step` take a
state and an event and return the new state plus effects. The daemon must
persist the new state before carrying out a `SendPresig`/`SendSignature`.
A client hands over its key only once its balance sits in its channel in the
new factory and it has no HTLC pending in the old one.

The client's factory key must be used for nothing else: see
`factory_key`, which derives a distinct key per factory from the node key, so
the key handed over never unlocks the node identity or another factory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from ..crypto import adaptor, schnorr
from ..crypto.adaptor import AdaptorSignature
from ..crypto.errors import CryptoError
from ..crypto.hashes import tagged_hash
from ..crypto.keys import PublicKey, SecretKey
from .errors import TurnoverError

__all__ = [
    "ClientStage",
    "ClientTransition",
    "ClientTurnover",
    "Deferred",
    "KeyRecovered",
    "LspStage",
    "LspTransition",
    "LspTurnover",
    "PresigReceived",
    "ReadinessChanged",
    "RefusalReceived",
    "Refuse",
    "Rejected",
    "SendPresig",
    "SendSignature",
    "SignatureReceived",
    "TurnoverContext",
    "client_step",
    "complete_turnover",
    "extract_turnover_key",
    "factory_key",
    "lsp_step",
    "presign_turnover",
]

_TAG = "SuperScalar/ladder/turnover"


def factory_key(node_key: SecretKey, rung: int) -> SecretKey:
    """A client's key for the factory at ladder rung `rung`: handed over at turnover, so it
    must differ from the node key and from every other rung's key."""
    if rung < 0:
        raise TurnoverError("rung must not be negative")
    return SecretKey(
        tagged_hash("SuperScalar/ladder/factory-key", node_key.to_bytes() + rung.to_bytes(8, "big"))
    )


@dataclass(frozen=True, slots=True)
class TurnoverContext:
    """What a turnover signature commits to: which key leaves which factory for which."""

    old_factory: bytes
    new_factory: bytes
    client_key: PublicKey
    """The client's key in the old factory: the adaptor point."""
    lsp_key: PublicKey

    def __post_init__(self) -> None:
        if len(self.old_factory) != 32 or len(self.new_factory) != 32:
            raise TurnoverError("factory ids must be 32 bytes")
        if self.old_factory == self.new_factory:
            raise TurnoverError("a turnover must move to a different factory")

    @property
    def message(self) -> bytes:
        return tagged_hash(
            _TAG,
            self.old_factory + self.new_factory + self.client_key.data + self.lsp_key.data,
        )


def presign_turnover(lsp_secret: SecretKey, ctx: TurnoverContext) -> AdaptorSignature:
    """LSP: the pre-signature only the client's factory key can complete."""
    if lsp_secret.public_key != ctx.lsp_key:
        raise TurnoverError("LSP secret does not match the context's LSP key")
    return adaptor.presign(lsp_secret, ctx.message, ctx.client_key)


def complete_turnover(
    client_secret: SecretKey, ctx: TurnoverContext, presig: AdaptorSignature
) -> bytes:
    """Client: check the LSP's pre-signature, then complete it (revealing our factory key)."""
    if client_secret.public_key != ctx.client_key:
        raise TurnoverError("turnover is for another client's key")
    if not adaptor.verify_presignature(ctx.lsp_key.xonly(), ctx.message, ctx.client_key, presig):
        raise TurnoverError("LSP pre-signature does not verify for this turnover")
    return adaptor.adapt(presig, client_secret)


def extract_turnover_key(
    ctx: TurnoverContext, presig: AdaptorSignature, signature: bytes
) -> SecretKey:
    """LSP: the client's factory secret from its completed signature, checked against its key."""
    if not schnorr.verify(ctx.lsp_key.xonly(), ctx.message, signature):
        raise TurnoverError("completed turnover signature is not valid")
    try:
        secret = adaptor.extract(presig, signature, ctx.client_key)
    except CryptoError as exc:
        raise TurnoverError(f"completed signature does not reveal the client key: {exc}") from exc
    if secret.public_key != ctx.client_key:  # pragma: no cover - extract already checks
        raise TurnoverError("extracted secret is not the client's factory key")
    return secret


# -- LSP side state machine -------------------------------------------------------------


class LspStage(StrEnum):
    WAITING = "waiting"
    """The client's balance is not (yet) in the new factory, or an old HTLC is pending."""
    PRESIGNED = "presigned"
    DONE = "done"
    REFUSED = "refused"
    """The client said no (reason kept); a later readiness check may ask again."""


@dataclass(frozen=True, slots=True)
class LspTurnover:
    """The LSP's turnover with one client of a dying factory."""

    ctx: TurnoverContext
    stage: LspStage = LspStage.WAITING
    presig: AdaptorSignature | None = None
    secret: SecretKey | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReadinessChanged:
    """The daemon's view of the client changed: `moved` = its new channel holds its balance."""

    moved: bool
    pending_htlcs: int


@dataclass(frozen=True, slots=True)
class SignatureReceived:
    signature: bytes


@dataclass(frozen=True, slots=True)
class RefusalReceived:
    reason: str


@dataclass(frozen=True, slots=True)
class SendPresig:
    presig: AdaptorSignature


@dataclass(frozen=True, slots=True)
class Deferred:
    """Nothing sent yet, and why (shown to the operator)."""

    reason: str


@dataclass(frozen=True, slots=True)
class KeyRecovered:
    secret: SecretKey


@dataclass(frozen=True, slots=True)
class Rejected:
    """The peer's message was refused; the state is unchanged."""

    reason: str


LspEvent = ReadinessChanged | SignatureReceived | RefusalReceived
LspEffect = SendPresig | Deferred | KeyRecovered | Rejected


@dataclass(frozen=True, slots=True)
class LspTransition:
    state: LspTurnover
    effects: tuple[LspEffect, ...]


def _blocker(moved: bool, pending_htlcs: int) -> str | None:
    if not moved:
        return "the client's balance is not yet in its new-factory channel"
    if pending_htlcs:
        return f"{pending_htlcs} HTLC(s) still pending in the old factory"
    return None


def lsp_step(secret: SecretKey, state: LspTurnover, event: LspEvent) -> LspTransition:
    """Advance the LSP's turnover with one client. `secret` is the LSP's factory key."""
    if isinstance(event, ReadinessChanged):
        if state.stage is LspStage.DONE:
            return LspTransition(state, ())
        if state.stage is LspStage.PRESIGNED and state.presig is not None:
            return LspTransition(state, (SendPresig(state.presig),))  # resend, same nonce
        blocker = _blocker(event.moved, event.pending_htlcs)
        if blocker is not None:
            return LspTransition(replace(state, reason=blocker), (Deferred(blocker),))
        presig = presign_turnover(secret, state.ctx)
        new = replace(state, stage=LspStage.PRESIGNED, presig=presig, reason="")
        return LspTransition(new, (SendPresig(presig),))
    if isinstance(event, RefusalReceived):
        if state.stage is LspStage.DONE:
            return LspTransition(state, (Rejected("turnover already complete"),))
        reason = event.reason or "client refused the turnover"
        return LspTransition(replace(state, stage=LspStage.REFUSED, reason=reason), ())
    if state.stage is not LspStage.PRESIGNED or state.presig is None:
        return LspTransition(state, (Rejected(f"unexpected turnover signature ({state.stage})"),))
    try:
        key = extract_turnover_key(state.ctx, state.presig, event.signature)
    except TurnoverError as exc:
        return LspTransition(state, (Rejected(str(exc)),))
    done = replace(state, stage=LspStage.DONE, secret=key, reason="")
    return LspTransition(done, (KeyRecovered(key),))


# -- client side state machine ----------------------------------------------------------


class ClientStage(StrEnum):
    HOLDING = "holding"
    """The client still relies on the old factory (its key is its own)."""
    HANDED_OVER = "handed_over"


@dataclass(frozen=True, slots=True)
class ClientTurnover:
    """A client's position in one (old) factory with respect to turnover."""

    old_factory: bytes
    stage: ClientStage = ClientStage.HOLDING
    new_factory: bytes | None = None


@dataclass(frozen=True, slots=True)
class PresigReceived:
    ctx: TurnoverContext
    presig: AdaptorSignature
    moved: bool
    """Our balance sits, signed, in our channel of `ctx.new_factory`."""
    pending_htlcs: int
    """HTLCs still pending on our old-factory channel."""
    willing: bool = True
    """Operator policy: False makes the client refuse every turnover."""


@dataclass(frozen=True, slots=True)
class SendSignature:
    signature: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


ClientEffect = SendSignature | Refuse


@dataclass(frozen=True, slots=True)
class ClientTransition:
    state: ClientTurnover
    effects: tuple[ClientEffect, ...]


def client_step(
    factory_secret: SecretKey, state: ClientTurnover, event: PresigReceived
) -> ClientTransition:
    """Decide on a turnover request; hand over the key only when it is safe to."""
    ctx = event.ctx
    if ctx.old_factory != state.old_factory:
        return ClientTransition(state, (Refuse("turnover names another factory"),))
    if state.stage is ClientStage.HANDED_OVER and state.new_factory != ctx.new_factory:
        return ClientTransition(state, (Refuse("key already handed over for another factory"),))
    if not event.willing:
        return ClientTransition(state, (Refuse("client declines key turnover"),))
    if state.stage is ClientStage.HOLDING:
        blocker = _blocker(event.moved, event.pending_htlcs)
        if blocker is not None:
            return ClientTransition(state, (Refuse(blocker),))
    try:
        sig = complete_turnover(factory_secret, ctx, event.presig)
    except TurnoverError as exc:
        return ClientTransition(state, (Refuse(str(exc)),))
    new = ClientTurnover(state.old_factory, ClientStage.HANDED_OVER, ctx.new_factory)
    return ClientTransition(new, (SendSignature(sig),))
