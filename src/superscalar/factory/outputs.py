"""The three kinds of output a factory creates, as taproot outputs.

1. **Node outputs** (timeout-sig-tree): key path = MuSig2 of exactly the
   signers beneath the node (the LSP and those clients, keys sorted per
   BIP327 KeySort); script path = one leaf
   `<cltv> OP_CHECKLOCKTIMEVERIFY OP_DROP <LSP xonly> OP_CHECKSIG`, so after
   the factory's timeout the LSP alone can recover anything still in the tree.
   The funding output is the root's node output.
2. **Channel outputs**: one per client at its leaf, key path only (BIP86-style
   tweak, no scripts) = MuSig2(client, LSP). The channel layer spends it.
3. **L-stock outputs** (the LSP's liquidity stock, one per leaf state). Each
   time a leaf's state tx is re-signed the leaf's *generation* g increases and
   the new L-stock commits to a fresh per-generation point P_g = s_g·G, where
   s_g is the BOLT-3 shachain secret number g from a per-leaf seed only the
   LSP knows (`lstock.LStockSecrets`). Its taptree has two leaves:

   - burn:  `<P_g> OP_CHECKSIG` — spendable at once by whoever knows s_g;
   - sweep: `<lstock_csv_delay> OP_CHECKSEQUENCEVERIFY OP_DROP <LSP> OP_CHECKSIG`.

   The key path is MuSig2(LSP, the leaf's clients), for a cooperative spend.
   When the leaf moves on to generation g + 1 the LSP reveals s_g to the
   leaf's clients (who store all of them in O(log n) with a shachain store).
   If the LSP ever confirms a superseded leaf state, its L-stock is burnt:
   a client signs with s_g and sends the whole value to an OP_RETURN (i.e. to
   the miners), before the LSP's CSV-delayed sweep can move it. Burning to fees
   rather than paying the client keeps co-clients from racing each other and
   leaves the LSP nothing to gain from cheating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..bitcoin.script import Op, build_script, csv_delay_leaf_script, timeout_leaf_script
from ..bitcoin.taproot import TapLeaf, TaprootSpendInfo, balanced_tree
from ..bitcoin.tx import TxOut
from ..crypto.keys import PublicKey, XOnlyPublicKey
from ..crypto.musig import KeyAggContext, aggregate_keys, sort_keys

__all__ = [
    "LSTOCK_BURN_LEAF",
    "LSTOCK_SWEEP_LEAF",
    "KeyAggCache",
    "MusigOutput",
    "burn_leaf_script",
    "channel_output",
    "lstock_output",
    "timeout_output",
]

LSTOCK_BURN_LEAF = 0
"""Index of the burn leaf in an L-stock output's script tree (depth-first order)."""
LSTOCK_SWEEP_LEAF = 1
"""Index of the LSP's CSV-delayed sweep leaf."""


class KeyAggCache:
    """Memoised BIP327 key aggregation, keyed by the exact (sorted) key list.

    KeyAgg is a pure function of its inputs, so sharing results is exact. The
    in-process ceremony and benchmarks share one cache among simulated parties
    that would each compute the same aggregate; a real client computes its
    path's aggregates once.
    """

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[tuple[bytes, ...], KeyAggContext] = {}

    def aggregate(self, sorted_keys: Sequence[PublicKey]) -> KeyAggContext:
        index = tuple(k.data for k in sorted_keys)
        ctx = self._memo.get(index)
        if ctx is None:
            ctx = self._memo[index] = aggregate_keys(sorted_keys)
        return ctx

    def __len__(self) -> int:
        return len(self._memo)


def _aggregate(keys: Sequence[PublicKey], cache: KeyAggCache | None) -> KeyAggContext:
    ordered = sort_keys(keys)
    return cache.aggregate(ordered) if cache is not None else aggregate_keys(ordered)


@dataclass(frozen=True)
class MusigOutput:
    """A taproot output whose internal key is a MuSig2 aggregate.

    `signing` is the aggregate with the BIP341 output tweak applied: the key a
    key-path MuSig2 session signs for, whose x-only key is the output key.
    """

    keyagg: KeyAggContext
    spend: TaprootSpendInfo
    signing: KeyAggContext

    @property
    def keys(self) -> tuple[PublicKey, ...]:
        """The aggregated keys, in aggregation (sorted) order."""
        return self.keyagg.pubkeys

    @property
    def script_pubkey(self) -> bytes:
        return self.spend.script_pubkey

    def txout(self, value: int) -> TxOut:
        return TxOut(value, self.spend.script_pubkey)


def _musig_output(keyagg: KeyAggContext, leaves: Sequence[bytes]) -> MusigOutput:
    tree = balanced_tree([TapLeaf(s) for s in leaves]) if leaves else None
    spend = TaprootSpendInfo(keyagg.xonly, tree)
    signing = keyagg.taproot_tweak(spend.merkle_root)
    if signing.xonly != spend.output_key:  # pragma: no cover - two BIP341 paths disagree
        raise AssertionError("MuSig2 taproot tweak disagrees with the output key")
    return MusigOutput(keyagg, spend, signing)


def timeout_output(
    signers: Sequence[PublicKey],
    lsp: XOnlyPublicKey,
    cltv_timeout: int,
    cache: KeyAggCache | None = None,
) -> MusigOutput:
    """A node output: MuSig2(signers) key path, CLTV-timeout → LSP script path."""
    return _musig_output(_aggregate(signers, cache), [timeout_leaf_script(cltv_timeout, lsp)])


def channel_output(
    client: PublicKey, lsp: PublicKey, cache: KeyAggCache | None = None
) -> MusigOutput:
    """A leaf channel's funding output: 2-of-2 MuSig2(client, LSP), key path only."""
    return _musig_output(_aggregate((client, lsp), cache), [])


def burn_leaf_script(point: XOnlyPublicKey) -> bytes:
    """`<P_g> OP_CHECKSIG`: spendable by whoever learnt generation g's revealed secret."""
    return build_script(point.data, Op.OP_CHECKSIG)


def lstock_output(
    lsp: PublicKey,
    leaf_clients: Sequence[PublicKey],
    burn_point: XOnlyPublicKey,
    csv_delay: int,
    cache: KeyAggCache | None = None,
) -> MusigOutput:
    """The L-stock of one leaf generation: burn leaf, CSV-delayed LSP sweep leaf."""
    return _musig_output(
        _aggregate((lsp, *leaf_clients), cache),
        [burn_leaf_script(burn_point), csv_delay_leaf_script(csv_delay, lsp.xonly())],
    )
