"""The regtest node's mempool: Bitcoin Core's acceptance rules that SuperScalar relies on.

A transaction is admitted only if its scripts verify through the kernel, it is
final for the next block (nLockTime, BIP68 sequence locks), it conflicts with
nothing, and it pays the minimum relay fee — except a zero-fee parent carried
by a fee-paying child in a 1-parent-1-child package (`submitpackage`), which is
how pre-signed zero-fee tree transactions get out through their P2A anchors.
Reject reasons are Bitcoin Core's strings, so callers can match on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from superscalar.bitcoin.fees import Feerate, dust_threshold
from superscalar.bitcoin.locktime import (
    LOCKTIME_THRESHOLD,
    SEQUENCE_FINAL,
    SEQUENCE_LOCKTIME_DISABLE_FLAG,
    SEQUENCE_LOCKTIME_GRANULARITY,
    SEQUENCE_LOCKTIME_MASK,
    SEQUENCE_LOCKTIME_TYPE_FLAG,
)
from superscalar.bitcoin.tx import OutPoint, Transaction, TxOut
from superscalar.chain.consensus import ScriptVerifyError, verify_transaction
from superscalar.chain.index import Coin

__all__ = [
    "COINBASE_MATURITY",
    "DEFAULT_MIN_RELAY_FEERATE",
    "ChainState",
    "Mempool",
    "MempoolEntry",
    "PackageResult",
    "RejectKind",
    "TxRejectedError",
]

COINBASE_MATURITY = 100
DEFAULT_MIN_RELAY_FEERATE = Feerate(1000)
"""1 sat/vB: Bitcoin Core's classic -minrelaytxfee (sat per 1000 vB)."""
MAX_STANDARD_VERSION = 3
TRUC_VERSION = 3
TRUC_MAX_VSIZE = 10_000
TRUC_CHILD_MAX_VSIZE = 1_000
MAX_REPLACEMENT_EVICTIONS = 100
MAX_PACKAGE_COUNT = 25


class RejectKind(Enum):
    """How bitcoind classifies a rejection (it picks the RPC error code from this)."""

    REJECTED = "rejected"  # policy or consensus: RPC_VERIFY_REJECTED (-26)
    MISSING_INPUTS = "missing-inputs"  # RPC_VERIFY_ERROR (-25)
    ALREADY_IN_CHAIN = "already-in-chain"  # RPC_VERIFY_ALREADY_IN_CHAIN (-27)
    FEE_ONLY = "fee"  # rejected only for its fee: a package child may carry it


class TxRejectedError(ValueError):
    """A transaction the mempool refuses, with bitcoind's reject reason."""

    def __init__(self, reason: str, detail: str = "", kind: RejectKind = RejectKind.REJECTED):
        super().__init__(f"{reason}, {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.kind = kind


class ChainState(Protocol):
    """What the mempool needs to know about the confirmed chain."""

    @property
    def height(self) -> int: ...

    def coin(self, outpoint: OutPoint) -> Coin | None: ...

    def median_time_past(self) -> int:
        """MTP of the tip (the clock the next block's time locks are judged by)."""
        ...

    def median_time_past_at(self, height: int) -> int: ...

    def has_transaction(self, txid: bytes) -> bool: ...


@dataclass(slots=True)
class MempoolEntry:
    tx: Transaction
    fee: int
    time: int
    height: int
    parents: set[bytes] = field(default_factory=set)
    children: set[bytes] = field(default_factory=set)
    replaces: frozenset[bytes] = frozenset()
    """Mempool txs (and, implicitly, their descendants) this one evicts when added (RBF)."""

    @property
    def vsize(self) -> int:
        return self.tx.vsize

    @property
    def txid(self) -> bytes:
        return self.tx.txid


@dataclass(frozen=True, slots=True)
class PackageResult:
    """Per-transaction outcome of a package, keyed by wtxid in submission order."""

    accepted: dict[bytes, MempoolEntry]
    errors: dict[bytes, TxRejectedError]
    already: set[bytes]
    package_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.package_error is None and not self.errors


@dataclass(slots=True)
class _Checked:
    tx: Transaction
    fee: int
    parents: set[bytes]
    spent: list[TxOut]
    dust: list[int]
    conflicts: set[bytes] = field(default_factory=set)


class Mempool:
    """Unconfirmed transactions in arrival order (parents always precede children)."""

    def __init__(
        self,
        chain: ChainState,
        min_relay: Feerate = DEFAULT_MIN_RELAY_FEERATE,
        clock: Callable[[], int] | None = None,
    ) -> None:
        import time

        self.chain = chain
        self.min_relay = min_relay
        self._clock = clock or (lambda: int(time.time()))
        self.entries: dict[bytes, MempoolEntry] = {}
        self.spends: dict[OutPoint, bytes] = {}
        self.removed: list[bytes] = []
        """Txids removed since the owner last drained this (to keep a saved copy in step)."""

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, txid: object) -> bool:
        return txid in self.entries

    def __iter__(self) -> Iterator[MempoolEntry]:
        return iter(self.entries.values())

    def output(self, outpoint: OutPoint) -> TxOut | None:
        entry = self.entries.get(outpoint.txid)
        if entry is None or outpoint.vout >= len(entry.tx.outputs):
            return None
        return entry.tx.outputs[outpoint.vout]

    # -- checks ----------------------------------------------------------------------

    def _check(self, tx: Transaction, pending: dict[bytes, _Checked]) -> _Checked:
        """Everything but the fee floor; `pending` are package members not yet admitted."""
        chain = self.chain
        if tx.is_coinbase:
            raise TxRejectedError("coinbase")
        if not tx.inputs:
            raise TxRejectedError("bad-txns-vin-empty")
        if not tx.outputs:
            raise TxRejectedError("bad-txns-vout-empty")
        if len(tx.serialize(include_witness=False)) < 65:
            raise TxRejectedError("tx-size-small")
        if not 1 <= tx.version <= MAX_STANDARD_VERSION:
            raise TxRejectedError("version")
        if tx.txid in self.entries or tx.txid in pending:
            raise TxRejectedError("txn-already-in-mempool")
        if chain.has_transaction(tx.txid):
            raise TxRejectedError("txn-already-known", "", RejectKind.ALREADY_IN_CHAIN)
        prevouts = [txin.prevout for txin in tx.inputs]
        if len(set(prevouts)) != len(prevouts):
            raise TxRejectedError("bad-txns-inputs-duplicate")
        if any(p.is_null for p in prevouts):
            raise TxRejectedError("bad-txns-prevout-null")

        next_height = chain.height + 1
        tip_mtp = chain.median_time_past()
        if not _final(tx, next_height, tip_mtp):
            raise TxRejectedError("non-final")

        spent: list[TxOut] = []
        heights: list[int] = []
        parents: set[bytes] = set()
        pending_spends = {txin.prevout for p in pending.values() for txin in p.tx.inputs}
        conflicts = {self.spends[p] for p in prevouts if p in self.spends}
        if conflicts and pending:
            raise TxRejectedError("txn-mempool-conflict")  # no package RBF here
        evicted = self._with_descendants(conflicts)
        for prevout in prevouts:
            if prevout.txid in evicted:
                raise TxRejectedError("bad-txns-spends-conflicting-tx")
            if prevout in pending_spends:
                raise TxRejectedError("bad-txns-spends-conflicting-tx")
            parent = pending.get(prevout.txid)
            out = (
                parent.tx.outputs[prevout.vout]
                if parent is not None and prevout.vout < len(parent.tx.outputs)
                else self.output(prevout)
            )
            if out is not None:
                parents.add(prevout.txid)
                spent.append(out)
                heights.append(next_height)
                continue
            coin = chain.coin(prevout)
            if coin is None:
                raise TxRejectedError(
                    "bad-txns-inputs-missingorspent", "", RejectKind.MISSING_INPUTS
                )
            if coin.coinbase and next_height - coin.height < COINBASE_MATURITY:
                raise TxRejectedError(
                    "bad-txns-premature-spend-of-coinbase",
                    f"tried to spend coinbase at depth {next_height - coin.height}",
                )
            spent.append(coin.output)
            heights.append(coin.height)

        value_in = sum(o.value for o in spent)
        value_out = tx.total_out
        if value_in < value_out:
            raise TxRejectedError(
                "bad-txns-in-belowout", f"value in ({value_in}) < value out ({value_out})"
            )
        fee = value_in - value_out

        if not self._sequence_locks_ok(tx, heights, next_height, tip_mtp):
            raise TxRejectedError("non-BIP68-final")

        dust = [i for i, o in enumerate(tx.outputs) if o.value < dust_threshold(o.script_pubkey)]
        if dust and (len(dust) > 1 or fee != 0):
            raise TxRejectedError("dust")

        self._check_truc(tx, parents, pending, evicted)

        try:
            verify_transaction(tx, spent)
        except ScriptVerifyError as exc:
            raise TxRejectedError(
                f"mandatory-script-verify-flag-failed (input {exc.index}: {exc.reason})"
            ) from exc
        return _Checked(tx, fee, parents, spent, dust, conflicts)

    def _sequence_locks_ok(
        self, tx: Transaction, heights: Sequence[int], next_height: int, tip_mtp: int
    ) -> bool:
        """BIP68 as Core's CalculateSequenceLocks/EvaluateSequenceLocks, for the next block."""
        if tx.version < 2:
            return True
        min_height, min_time = -1, -1
        for txin, coin_height in zip(tx.inputs, heights, strict=True):
            seq = txin.sequence
            if seq & SEQUENCE_LOCKTIME_DISABLE_FLAG:
                continue
            value = seq & SEQUENCE_LOCKTIME_MASK
            if seq & SEQUENCE_LOCKTIME_TYPE_FLAG:
                base = self.chain.median_time_past_at(max(coin_height - 1, 0))
                min_time = max(min_time, base + (value << SEQUENCE_LOCKTIME_GRANULARITY) - 1)
            else:
                min_height = max(min_height, coin_height + value - 1)
        return min_height < next_height and min_time < tip_mtp

    def _check_truc(
        self,
        tx: Transaction,
        parents: set[bytes],
        pending: dict[bytes, _Checked],
        evicted: set[bytes],
    ) -> None:
        """TRUC (v3) topology: one unconfirmed parent, one child, small children."""
        parent_versions = [
            (pending[p].tx if p in pending else self.entries[p].tx).version for p in parents
        ]
        if tx.version != TRUC_VERSION:
            if TRUC_VERSION in parent_versions:
                raise TxRejectedError("TRUC-violation", "non-version=3 tx cannot spend a TRUC tx")
            return
        if tx.vsize > TRUC_MAX_VSIZE:
            raise TxRejectedError("TRUC-violation", f"version=3 tx is too big: {tx.vsize} > 10000")
        if any(v != TRUC_VERSION for v in parent_versions):
            raise TxRejectedError("TRUC-violation", "version=3 tx cannot spend a non-TRUC tx")
        if len(parents) > 1:
            raise TxRejectedError("TRUC-violation", "tx would have too many ancestors")
        if parents:
            (parent,) = parents
            entry = self.entries.get(parent)
            if entry is not None and (entry.parents or entry.children - evicted):
                raise TxRejectedError("TRUC-violation", "tx would exceed descendant/ancestor limit")
            if tx.vsize > TRUC_CHILD_MAX_VSIZE:
                raise TxRejectedError(
                    "TRUC-violation", f"version=3 child tx is too big: {tx.vsize} > 1000"
                )

    def _fee_floor(self, vsize: int) -> int:
        return self.min_relay.fee_for_vsize(vsize)

    def _with_descendants(self, txids: set[bytes]) -> set[bytes]:
        out = set(txids)
        for txid in txids:
            out |= self.descendants(txid)
        return out

    def _check_replacement(self, checked: _Checked) -> None:
        """Full-RBF as Bitcoin Core: pay for everything evicted, plus relay of the new tx.

        The replacement's feerate must beat each tx it directly conflicts
        with, its fee must cover the fees of all it evicts (descendants too)
        plus the incremental relay fee for its own size, it may evict at most
        100 txs, and it may not bring in new unconfirmed inputs.
        """
        if not checked.conflicts:
            return
        evicted = self._with_descendants(checked.conflicts)
        if len(evicted) > MAX_REPLACEMENT_EVICTIONS:
            raise TxRejectedError(
                "too many potential replacements",
                f"rejecting replacement {checked.tx.txid_hex}; too many potential replacements"
                f" ({len(evicted)} > {MAX_REPLACEMENT_EVICTIONS})",
            )
        known_parents = set().union(*(self.entries[c].parents for c in checked.conflicts))
        if not checked.parents <= known_parents:
            raise TxRejectedError("replacement-adds-unconfirmed")
        vsize = checked.tx.vsize
        for txid in checked.conflicts:
            old = self.entries[txid]
            if checked.fee * old.vsize <= old.fee * vsize:
                raise TxRejectedError(
                    "insufficient fee",
                    f"rejecting replacement {checked.tx.txid_hex}; new feerate"
                    f" {checked.fee * 1000 // vsize} <= old feerate {old.fee * 1000 // old.vsize}"
                    " sat/kvB",
                )
        evicted_fees = sum(self.entries[t].fee for t in evicted)
        if checked.fee < evicted_fees:
            raise TxRejectedError(
                "insufficient fee",
                f"rejecting replacement {checked.tx.txid_hex}, less fees than conflicting txs;"
                f" {checked.fee} < {evicted_fees}",
            )
        needed = self.min_relay.fee_for_vsize(vsize)
        if checked.fee - evicted_fees < needed:
            raise TxRejectedError(
                "insufficient fee",
                f"rejecting replacement {checked.tx.txid_hex}, not enough additional fees to"
                f" relay; {checked.fee - evicted_fees} < {needed}",
            )

    # -- admission ---------------------------------------------------------------------

    def test_accept(self, tx: Transaction) -> MempoolEntry:
        """Run every check for a lone transaction without admitting it."""
        checked = self._check(tx, {})
        if checked.dust:
            raise TxRejectedError(
                "missing-ephemeral-spends", "dust output must be spent in a package"
            )
        floor = self._fee_floor(tx.vsize)
        if checked.fee < floor:
            raise TxRejectedError(
                "min relay fee not met", f"{checked.fee} < {floor}", RejectKind.FEE_ONLY
            )
        self._check_replacement(checked)
        return self._entry(checked)

    def test_accept_sequence(
        self, txs: Sequence[Transaction]
    ) -> list[MempoolEntry | TxRejectedError]:
        """Judge each tx as if the earlier ones had been admitted; leave the pool as it was."""
        results: list[MempoolEntry | TxRejectedError] = []
        added: list[bytes] = []
        try:
            for tx in txs:
                try:
                    entry = self.test_accept(tx)
                except TxRejectedError as exc:
                    results.append(exc)
                    continue
                results.append(entry)
                if not entry.replaces:  # never evict real entries for a dry run
                    self._add(entry)
                    added.append(entry.txid)
        finally:
            for txid in reversed(added):
                self.remove(txid, with_descendants=False)
            del self.removed[len(self.removed) - len(added) :]
        return results

    def accept(self, tx: Transaction) -> MempoolEntry:
        """Admit a lone transaction (sendrawtransaction)."""
        entry = self.test_accept(tx)
        self._add(entry)
        return entry

    def accept_package(self, txs: Sequence[Transaction]) -> PackageResult:
        """Admit a child-with-parents package as `submitpackage` does.

        Parents that pass alone are admitted alone; the rest must fail only for
        their fee (or ephemeral dust) and are admitted with the child if the
        package feerate meets the floor and the child spends every dust output.
        """
        accepted: dict[bytes, MempoolEntry] = {}
        errors: dict[bytes, TxRejectedError] = {}
        already: set[bytes] = set()
        topology = _package_topology_error(txs)
        if topology is not None:
            return PackageResult(accepted, errors, already, topology)
        *parents, child = txs
        pending: dict[bytes, _Checked] = {}
        for tx in parents:
            if tx.txid in self.entries:
                already.add(tx.wtxid)
                continue
            try:
                checked = self._check(tx, {})
            except TxRejectedError as exc:
                if self.chain.has_transaction(tx.txid):
                    already.add(tx.wtxid)
                    continue
                errors[tx.wtxid] = exc
                return PackageResult(accepted, errors, already, "transaction failed")
            if not checked.dust and checked.fee >= self._fee_floor(tx.vsize):
                entry = self._entry(checked)
                self._add(entry)
                accepted[tx.wtxid] = entry
            else:
                pending[tx.txid] = checked
        try:
            child_checked = self._check(child, pending)
        except TxRejectedError as exc:
            errors[child.wtxid] = exc
            return PackageResult(accepted, errors, already, "transaction failed")
        for checked in pending.values():
            for vout in checked.dust:
                if OutPoint(checked.tx.txid, vout) not in {i.prevout for i in child.inputs}:
                    errors[checked.tx.wtxid] = TxRejectedError("missing-ephemeral-spends")
                    return PackageResult(accepted, errors, already, "transaction failed")
        if child_checked.dust:
            errors[child.wtxid] = TxRejectedError("dust")
            return PackageResult(accepted, errors, already, "transaction failed")
        group = [*pending.values(), child_checked]
        fees = sum(c.fee for c in group)
        vsize = sum(c.tx.vsize for c in group)
        floor = self._fee_floor(vsize)
        if fees < floor or child_checked.fee < self._fee_floor(child.vsize):
            for c in group:
                errors[c.tx.wtxid] = TxRejectedError(
                    "min relay fee not met", f"{fees} < {floor}", RejectKind.FEE_ONLY
                )
            return PackageResult(accepted, errors, already, "transaction failed")
        try:
            self._check_replacement(child_checked)  # a re-bumped CPFP child replaces the old
        except TxRejectedError as exc:
            errors[child.wtxid] = exc
            return PackageResult(accepted, errors, already, "transaction failed")
        for c in group:
            entry = self._entry(c)
            self._add(entry)
            accepted[c.tx.wtxid] = entry
        return PackageResult(accepted, errors, already)

    def _entry(self, checked: _Checked) -> MempoolEntry:
        return MempoolEntry(
            checked.tx,
            checked.fee,
            self._clock(),
            self.chain.height,
            set(checked.parents),
            replaces=frozenset(checked.conflicts),
        )

    def _add(self, entry: MempoolEntry) -> list[bytes]:
        """Insert `entry`, first evicting what it replaces; returns the evicted txids."""
        evicted: list[bytes] = []
        for txid in entry.replaces:
            evicted.extend(self.remove(txid))
        self.entries[entry.txid] = entry
        for txin in entry.tx.inputs:
            self.spends[txin.prevout] = entry.txid
        for parent in entry.parents:
            self.entries[parent].children.add(entry.txid)
        return evicted

    # -- removal -------------------------------------------------------------------------

    def remove(self, txid: bytes, with_descendants: bool = True) -> list[bytes]:
        """Drop a transaction (and, by default, everything that spends it)."""
        removed: list[bytes] = []
        stack = [txid]
        while stack:
            current = stack.pop()
            entry = self.entries.pop(current, None)
            if entry is None:
                continue
            removed.append(current)
            self.removed.append(current)
            for txin in entry.tx.inputs:
                if self.spends.get(txin.prevout) == current:
                    del self.spends[txin.prevout]
            for parent in entry.parents:
                if parent in self.entries:
                    self.entries[parent].children.discard(current)
            if with_descendants:
                stack.extend(entry.children)
            else:
                for child in entry.children:
                    if child in self.entries:
                        self.entries[child].parents.discard(current)
        return removed

    def block_connected(self, txs: Sequence[Transaction]) -> list[bytes]:
        """Forget mined transactions and evict whatever the block double-spent."""
        evicted: list[bytes] = []
        for tx in txs:
            if tx.txid in self.entries:
                self.remove(tx.txid, with_descendants=False)
        for tx in txs:
            if tx.is_coinbase:
                continue
            for txin in tx.inputs:
                conflict = self.spends.get(txin.prevout)
                if conflict is not None:
                    evicted.extend(self.remove(conflict))
        return evicted

    # -- block template --------------------------------------------------------------------

    def select(self, max_weight: int) -> list[Transaction]:
        """Transactions for the next block, parents first, within `max_weight`."""
        chosen: list[Transaction] = []
        included: set[bytes] = set()
        weight = 0
        for entry in self.entries.values():
            if not entry.parents <= included:
                continue
            w = entry.tx.weight
            if weight + w > max_weight:
                continue
            chosen.append(entry.tx)
            included.add(entry.txid)
            weight += w
        return chosen

    def ancestors(self, txid: bytes) -> set[bytes]:
        return self._reachable(txid, lambda e: e.parents)

    def descendants(self, txid: bytes) -> set[bytes]:
        return self._reachable(txid, lambda e: e.children)

    def _reachable(self, txid: bytes, edges: Callable[[MempoolEntry], set[bytes]]) -> set[bytes]:
        """Every mempool tx reachable from `txid` along `edges` (itself excluded)."""
        seen: set[bytes] = set()
        stack = list(edges(self.entries[txid]))
        while stack:
            current = stack.pop()
            if current in seen or current not in self.entries:
                continue
            seen.add(current)
            stack.extend(edges(self.entries[current]))
        return seen


def _final(tx: Transaction, height: int, mtp: int) -> bool:
    """Core's IsFinalTx for a block at `height` whose parent has MTP `mtp`."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else mtp
    if tx.locktime < limit:
        return True
    return all(txin.sequence == SEQUENCE_FINAL for txin in tx.inputs)


def _package_topology_error(txs: Sequence[Transaction]) -> str | None:
    """Child-with-parents: the last tx spends every other; parents don't spend each other."""
    if not txs:
        return "package-empty"
    if len(txs) > MAX_PACKAGE_COUNT:
        return "package-too-many-transactions"
    txids = [tx.txid for tx in txs]
    if len(set(txids)) != len(txids):
        return "package-contains-duplicates"
    *parents, child = txs
    child_spends = {txin.prevout.txid for txin in child.inputs}
    parent_ids = {p.txid for p in parents}
    if not parent_ids <= child_spends:
        return "package-not-child-with-parents"
    for parent in parents:
        if any(txin.prevout.txid in parent_ids for txin in parent.inputs):
            return "package-not-child-with-unconfirmed-parents"
    return None
