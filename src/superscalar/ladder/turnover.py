"""PTLC key turnover: a departing client hands the LSP its key in a dying factory.

In the daemons the handover IS the move (`ladder.move`, `channel.ptlc`): the
client's balance arrives in the new factory as a PTLC locked to its old
factory key, and fulfilling it reveals that key. This module keeps what that
needs around it: `factory_key` (one key per factory, so the key handed over
never unlocks the node identity or another factory), the records of who
handed over (`LspTurnover`, `LspStage`, `ClientStage`, keyed by
`TurnoverContext`), and the same exchange as a single adaptor-signed message
(`presign_turnover` / `complete_turnover` / `extract_turnover_key`, the
primitive the kernel-chain close tests use).

T is the client's full compressed key (parity kept), so the extracted scalar
t satisfies t·G == T exactly; no BIP340 even-y negation is involved on the
adaptor side (the signature's own nonce parity is handled by `adaptor`).
Once the LSP holds every client's key of a factory it signs the funding
output's MuSig2 key path alone (`ladder.close`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..crypto import adaptor, schnorr
from ..crypto.adaptor import AdaptorSignature
from ..crypto.errors import CryptoError
from ..crypto.hashes import tagged_hash
from ..crypto.keys import PublicKey, SecretKey
from .errors import TurnoverError

__all__ = [
    "ClientStage",
    "LspStage",
    "LspTurnover",
    "TurnoverContext",
    "complete_turnover",
    "extract_turnover_key",
    "factory_key",
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


class ClientStage(StrEnum):
    HOLDING = "holding"
    """The client still relies on the old factory (its key is its own)."""
    HANDED_OVER = "handed_over"
