"""The LSP closes a dying factory alone, once every client has handed over its key.

With the secret key of every client (from PTLC turnover) plus its own, the
LSP is every MuSig2 signer of the funding output's key path. It signs a
cooperative-close-shaped transaction that pays the whole funding amount,
less an exact fee, to its own script: the clients' money already lives in
the next factory. No tree transaction ever reaches the chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..bitcoin.fees import Feerate
from ..bitcoin.tx import Transaction, TxOut
from ..crypto.keys import SecretKey
from ..factory import (
    FactoryScripts,
    FundingRef,
    FundingSpend,
    Signer,
    SigningPlan,
    cooperative_close,
    funding_close,
    run_ceremony,
)
from ..factory.errors import FactoryError
from .errors import LadderError

__all__ = ["LspAloneClose", "StayerClose", "close_with_stayers", "lsp_alone_close", "missing_keys"]


@dataclass(frozen=True)
class LspAloneClose:
    """The signed close and what it cost."""

    tx: Transaction
    fee: int
    funding_amount: int

    @property
    def paid(self) -> int:
        return self.tx.total_out

    @property
    def vsize(self) -> int:
        return self.tx.vsize


def missing_keys(scripts: FactoryScripts, client_keys: Mapping[int, SecretKey]) -> tuple[int, ...]:
    """Client positions whose key the LSP does not (correctly) hold yet."""
    clients = scripts.shape.spec.clients
    return tuple(
        pos
        for pos, c in enumerate(clients)
        if pos not in client_keys or client_keys[pos].public_key != c.key
    )


def lsp_alone_close(
    scripts: FactoryScripts,
    lsp_key: SecretKey,
    client_keys: Mapping[int, SecretKey],
    lsp_script: bytes,
    feerate: Feerate,
) -> LspAloneClose:
    """Sign the funding output's key path with every key, paying everything to `lsp_script`.

    `client_keys` maps client position → its factory secret (extracted at turnover).
    Refuses if any key is missing or wrong, naming the positions.
    """
    spec = scripts.shape.spec
    if lsp_key.public_key != spec.lsp:
        raise LadderError("LSP key does not match the factory's LSP")
    missing = missing_keys(scripts, client_keys)
    if missing:
        raise LadderError(f"cannot close alone: no valid key for client positions {list(missing)}")
    try:
        spend = cooperative_close(scripts, [], lsp_script, feerate)
    except FactoryError as exc:
        raise LadderError(f"cannot close alone: {exc}") from exc
    if not spend.tx.outputs:
        raise LadderError("the funding amount does not cover the close fee above dust")
    keys = {0: lsp_key, **{pos + 1: k for pos, k in client_keys.items()}}
    result = run_ceremony(SigningPlan([spend.session]), keys)
    tx = spend.signed(result.signatures[spend.session.id])
    return LspAloneClose(tx, spend.fee, spec.funding_amount)


@dataclass(frozen=True)
class StayerClose:
    """A close of a dying factory that some clients never left.

    The LSP signs for itself and for every handed-over key (`local_signers`);
    only the `stayers` (participant indices) still take part over the wire,
    each checking that it is paid its balance, as in any cooperative close.
    """

    spend: FundingSpend
    local_signers: dict[int, Signer]
    stayers: tuple[int, ...]


def close_with_stayers(
    scripts: FactoryScripts,
    lsp_key: SecretKey,
    client_keys: Mapping[int, SecretKey],
    stayer_payouts: Mapping[int, TxOut],
    lsp_script: bytes,
    feerate: Feerate,
    spent: FundingRef | None = None,
) -> StayerClose:
    """Pay each client that stayed (position → payout), the rest to the LSP, less the fee.

    Every client must be either a key holder (moved out, key handed over) or a
    stayer being paid: a client in neither set would be left out of the close.
    `spent`: another output under the funding key to close from instead of the
    funding output (the root kickoff's, after the LSP kicked the tree off).
    """
    spec = scripts.shape.spec
    if lsp_key.public_key != spec.lsp:
        raise LadderError("LSP key does not match the factory's LSP")
    missing = set(missing_keys(scripts, client_keys))
    if missing != set(stayer_payouts):
        raise LadderError(
            f"clients without a handed-over key {sorted(missing)} must be exactly the ones "
            f"paid {sorted(stayer_payouts)}"
        )
    try:
        payouts = [stayer_payouts[p] for p in sorted(stayer_payouts)]
        if spent is None:
            spend = cooperative_close(scripts, payouts, lsp_script, feerate)
        else:
            spend = funding_close(scripts.funding, spent, payouts, lsp_script, feerate)
    except FactoryError as exc:
        raise LadderError(f"cannot close: {exc}") from exc
    local = {0: lsp_key, **{pos + 1: k for pos, k in client_keys.items() if pos not in missing}}
    signers = {i: Signer(i, k, [spend.session]) for i, k in local.items()}
    return StayerClose(spend, signers, tuple(sorted(p + 1 for p in missing)))
