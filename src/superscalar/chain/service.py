"""bitcoind's JSON-RPC methods over the embedded node: same names, shapes and errors.

Every daemon talks to a chain through `BitcoindClient`; this module is what
answers it when the chain is `superscalar chain`, so it mirrors bitcoind's
field names, amount formatting and error codes/messages closely enough that
the client cannot tell the difference for the calls SuperScalar makes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from superscalar.bitcoin.address import (
    AddressError,
    address_to_script_pubkey,
    script_pubkey_to_address,
)
from superscalar.bitcoin.block import Block, BlockHeader, bits_to_target
from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import Op, ScriptError, is_p2a, iter_script, parse_witness_program
from superscalar.bitcoin.tx import OutPoint, Transaction, TxDecodeError, TxOut
from superscalar.chain.amounts import AmountError, btc_to_sat, sat_to_btc
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.mempool import MempoolEntry, RejectKind, TxRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.chain.rpc import RpcError, RpcServer
from superscalar.chain.wallet import InsufficientFundsError

__all__ = ["NodeService", "serve_node"]

_MAX_TARGET = bits_to_target(0x1D00FFFF)
_METHODS = (
    *("getblockchaininfo", "getblockcount", "getblockhash", "getbestblockhash", "getblock"),
    *("getblockheader", "getrawtransaction", "gettxout", "decoderawtransaction"),
    *("sendrawtransaction", "testmempoolaccept", "submitpackage"),
    *("getmempoolentry", "getrawmempool", "getmempoolinfo", "estimatesmartfee"),
    *("generatetoaddress", "generateblock"),
    *("getnewaddress", "sendtoaddress", "listunspent", "getbalance", "uptime", "stop"),
    *("fundrawtransaction", "signrawtransactionwithwallet"),
)
_NO_SUCH_TX = (
    "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
)
_BAD_TOPOLOGY = (
    "package topology disallowed. not child-with-parents or parents depend on each other."
)


def _hash_arg(text: str, what: str) -> bytes:
    """A 64-hex id in display order → internal bytes, or bitcoind's -8 error."""
    if not isinstance(text, str) or len(text) != 64:
        raise RpcError(
            RpcError.RPC_INVALID_PARAMETER,
            f"{what} must be of length 64 (not {len(text)}, for '{text}')",
        )
    try:
        return bytes.fromhex(text)[::-1]
    except ValueError:
        raise RpcError(
            RpcError.RPC_INVALID_PARAMETER, f"{what} must be hexadecimal string (not '{text}')"
        ) from None


def _decode_tx(hexstring: str) -> Transaction:
    try:
        return Transaction.from_hex(hexstring)
    except TxDecodeError:
        raise RpcError(
            RpcError.RPC_DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        ) from None


def _decode_tx_allow_empty(hexstring: str) -> Transaction:
    """A transaction to fund may have no inputs yet (legacy serialization, 00 input count)."""
    try:
        raw = bytes.fromhex(hexstring)
    except ValueError:
        raw = b""
    if len(raw) >= 6 and raw[4] == 0:  # zero inputs (or a segwit marker): try no-inputs first
        try:  # parse with one placeholder input spliced in where the count was, then drop it
            body = Transaction.from_bytes(
                raw[:4] + b"\x01" + bytes(36) + b"\x00" + b"\xff" * 4 + raw[5:]
            )
        except TxDecodeError:
            pass
        else:
            return replace(body, inputs=())
    return _decode_tx(hexstring)


def _script_type(script: bytes) -> str:
    if is_p2a(script):
        return "anchor"
    parsed = parse_witness_program(script)
    if parsed is not None:
        version, program = parsed
        if version == 0 and len(program) == 20:
            return "witness_v0_keyhash"
        if version == 0 and len(program) == 32:
            return "witness_v0_scripthash"
        if version == 1 and len(program) == 32:
            return "witness_v1_taproot"
        return "witness_unknown"
    if script[:1] == bytes((Op.OP_RETURN,)):
        return "nulldata"
    return "nonstandard"


def _asm(script: bytes) -> str:
    try:
        parts = []
        for op in iter_script(script):
            if op.data is not None:
                parts.append(op.data.hex() if op.data else "0")
            else:
                try:
                    parts.append(Op(op.opcode).name)
                except ValueError:
                    parts.append(f"OP_UNKNOWN{op.opcode}")
        return " ".join(parts)
    except ScriptError:
        return "[error]"


class NodeService:
    """The RPC handler table for one node; every call holds the node's lock."""

    def __init__(self, node: RegtestNode, on_stop: Callable[[], None] | None = None) -> None:
        self.node = node
        self._on_stop = on_stop
        self._started = time.time()

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {name: getattr(self, name) for name in _METHODS}

    # -- shapes ------------------------------------------------------------------------

    def _script_json(self, script: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {
            "asm": _asm(script),
            "hex": script.hex(),
            "type": _script_type(script),
        }
        with suppress(AddressError, ScriptError):
            out["address"] = script_pubkey_to_address(script, self.node.network)
        return out

    def _tx_json(self, tx: Transaction) -> dict[str, Any]:
        vin: list[dict[str, Any]] = []
        for txin in tx.inputs:
            item: dict[str, Any]
            if tx.is_coinbase:
                item = {"coinbase": txin.script_sig.hex()}
            else:
                item = {
                    "txid": txin.prevout.txid_hex,
                    "vout": txin.prevout.vout,
                    "scriptSig": {"asm": _asm(txin.script_sig), "hex": txin.script_sig.hex()},
                }
            if txin.witness:
                item["txinwitness"] = [w.hex() for w in txin.witness]
            item["sequence"] = txin.sequence
            vin.append(item)
        vout = [
            {
                "value": sat_to_btc(o.value),
                "n": n,
                "scriptPubKey": self._script_json(o.script_pubkey),
            }
            for n, o in enumerate(tx.outputs)
        ]
        return {
            "txid": tx.txid_hex,
            "hash": tx.wtxid_hex,
            "version": tx.version,
            "size": len(tx.to_bytes()),
            "vsize": tx.vsize,
            "weight": tx.weight,
            "locktime": tx.locktime,
            "vin": vin,
            "vout": vout,
        }

    def _header_json(self, height: int) -> dict[str, Any]:
        node = self.node
        record = node.index.block(height)
        assert record is not None
        header = BlockHeader.from_bytes(node.kernel.header_bytes(height))
        out: dict[str, Any] = {
            "hash": header.hash_hex,
            "confirmations": node.height - height + 1,
            "height": height,
            "version": header.version,
            "versionHex": f"{header.version:08x}",
            "merkleroot": header.merkle_root[::-1].hex(),
            "time": header.time,
            "mediantime": node.median_time_past_at(height),
            "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "difficulty": _MAX_TARGET / bits_to_target(header.bits),
            "chainwork": f"{(height + 1) * 2:064x}",
            "nTx": record.ntx,
        }
        if height > 0:
            out["previousblockhash"] = header.prev_hash[::-1].hex()
        if height < node.height:
            out["nextblockhash"] = node.kernel.block_hash(height + 1)[::-1].hex()
        return out

    def _height_of(self, blockhash: str) -> int:
        record = self.node.index.block_by_hash(_hash_arg(blockhash, "blockhash"))
        if record is None:
            raise RpcError(RpcError.RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return record.height

    def _mempool_entry_json(self, entry: MempoolEntry) -> dict[str, Any]:
        mempool = self.node.mempool
        ancestors = mempool.ancestors(entry.txid)
        descendants = mempool.descendants(entry.txid)
        anc_fee = entry.fee + sum(mempool.entries[t].fee for t in ancestors)
        desc_fee = entry.fee + sum(mempool.entries[t].fee for t in descendants)
        return {
            "vsize": entry.vsize,
            "weight": entry.tx.weight,
            "time": entry.time,
            "height": entry.height,
            "descendantcount": len(descendants) + 1,
            "descendantsize": entry.vsize + sum(mempool.entries[t].vsize for t in descendants),
            "ancestorcount": len(ancestors) + 1,
            "ancestorsize": entry.vsize + sum(mempool.entries[t].vsize for t in ancestors),
            "wtxid": entry.tx.wtxid_hex,
            "fees": {
                "base": sat_to_btc(entry.fee),
                "modified": sat_to_btc(entry.fee),
                "ancestor": sat_to_btc(anc_fee),
                "descendant": sat_to_btc(desc_fee),
            },
            "depends": sorted(p[::-1].hex() for p in entry.parents),
            "spentby": sorted(c[::-1].hex() for c in entry.children),
            "bip125-replaceable": False,
            "unbroadcast": False,
        }

    @staticmethod
    def _reject_error(exc: TxRejectedError) -> RpcError:
        if exc.kind is RejectKind.MISSING_INPUTS:
            return RpcError(RpcError.RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
        if exc.kind is RejectKind.ALREADY_IN_CHAIN:
            return RpcError(
                RpcError.RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set"
            )
        return RpcError(RpcError.RPC_VERIFY_REJECTED, str(exc))

    # -- blockchain ----------------------------------------------------------------------

    def getblockchaininfo(self) -> dict[str, Any]:
        with self.node.lock:
            node = self.node
            height = node.height
            record = node.index.block(height)
            assert record is not None
            size = sum(p.stat().st_size for p in node.datadir.rglob("*") if p.is_file())
            return {
                "chain": "regtest",
                "blocks": height,
                "headers": height,
                "bestblockhash": record.hash[::-1].hex(),
                "bits": "207fffff",
                "target": f"{bits_to_target(0x207FFFFF):064x}",
                "difficulty": _MAX_TARGET / bits_to_target(0x207FFFFF),
                "time": record.time,
                "mediantime": node.median_time_past(),
                "verificationprogress": 1,
                "initialblockdownload": False,
                "chainwork": f"{(height + 1) * 2:064x}",
                "size_on_disk": size,
                "pruned": False,
                "warnings": [],
            }

    def getblockcount(self) -> int:
        return self.node.height

    def getbestblockhash(self) -> str:
        with self.node.lock:
            return self.node.kernel.block_hash(self.node.height)[::-1].hex()

    def getblockhash(self, height: int) -> str:
        with self.node.lock:
            if not 0 <= height <= self.node.height:
                raise RpcError(RpcError.RPC_INVALID_PARAMETER, "Block height out of range")
            return self.node.kernel.block_hash(height)[::-1].hex()

    def getblockheader(self, blockhash: str, verbose: bool = True) -> Any:
        with self.node.lock:
            height = self._height_of(blockhash)
            if not verbose:
                return self.node.kernel.header_bytes(height).hex()
            return self._header_json(height)

    def getblock(self, blockhash: str, verbosity: int | bool = 1) -> Any:
        with self.node.lock:
            height = self._height_of(blockhash)
            raw = self.node.kernel.read_block(height)
            level = int(verbosity)
            if level <= 0:
                return raw.hex()
            block = Block.from_bytes(raw)
            out = self._header_json(height)
            out["size"] = len(raw)
            out["strippedsize"] = 80 + sum(len(t.serialize(False)) for t in block.transactions) + 1
            out["weight"] = block.weight
            if level == 1:
                out["tx"] = [t.txid_hex for t in block.transactions]
            else:
                out["tx"] = [self._tx_json(t) | {"hex": t.hex()} for t in block.transactions]
            return out

    # -- transactions --------------------------------------------------------------------

    def getrawtransaction(
        self, txid: str, verbose: int | bool | None = 0, blockhash: str | None = None
    ) -> Any:
        key = _hash_arg(txid, "parameter 1")
        with self.node.lock:
            status = self.node.transaction(key)
            if status is None or (
                blockhash is not None and status.height != self._height_of(blockhash)
            ):
                raise RpcError(
                    RpcError.RPC_INVALID_ADDRESS_OR_KEY,
                    _NO_SUCH_TX,
                )
            if not verbose:
                return status.tx.hex()
            out = self._tx_json(status.tx)
            out["hex"] = status.tx.hex()
            if status.height is not None:
                record = self.node.index.block(status.height)
                assert record is not None
                out["blockhash"] = record.hash[::-1].hex()
                out["confirmations"] = self.node.height - status.height + 1
                out["time"] = out["blocktime"] = record.time
            return out

    def decoderawtransaction(self, hexstring: str) -> dict[str, Any]:
        return self._tx_json(_decode_tx(hexstring))

    def gettxout(self, txid: str, n: int, include_mempool: bool = True) -> Any:
        key = _hash_arg(txid, "txid")
        if n < 0:
            raise RpcError(
                RpcError.RPC_INVALID_PARAMETER, "Invalid parameter, vout cannot be negative"
            )
        with self.node.lock:
            found = self.node.utxo(OutPoint(key, n), include_mempool)
            if found is None:
                return None
            out, confirmations, coinbase = found
            return {
                "bestblock": self.getbestblockhash(),
                "confirmations": confirmations,
                "value": sat_to_btc(out.value),
                "scriptPubKey": self._script_json(out.script_pubkey),
                "coinbase": coinbase,
            }

    def sendrawtransaction(
        self,
        hexstring: str,
        maxfeerate: Decimal | None = None,
        maxburnamount: Decimal | None = None,
    ) -> str:
        tx = _decode_tx(hexstring)
        with self.node.lock:
            if tx.txid in self.node.mempool:
                return tx.txid_hex  # bitcoind re-announces a tx it already has
            try:
                self.node.send(tx)
            except TxRejectedError as exc:
                raise self._reject_error(exc) from None
            return tx.txid_hex

    def testmempoolaccept(
        self, rawtxs: list[Any], maxfeerate: Decimal | None = None
    ) -> list[dict[str, Any]]:
        if not 1 <= len(rawtxs) <= 25:
            raise RpcError(
                RpcError.RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions."
            )
        txs = [_decode_tx(r) if isinstance(r, str) else _decode_tx("") for r in rawtxs]
        out: list[dict[str, Any]] = []
        for tx, result in zip(txs, self.node.test_accept(txs), strict=True):
            item: dict[str, Any] = {"txid": tx.txid_hex, "wtxid": tx.wtxid_hex}
            if isinstance(result, TxRejectedError):
                item["allowed"] = False
                item["reject-reason"] = result.reason
                if result.detail:
                    item["reject-details"] = str(result)
            else:
                item["allowed"] = True
                item["vsize"] = result.vsize
                item["fees"] = {
                    "base": sat_to_btc(result.fee),
                    "effective-feerate": sat_to_btc(result.fee * 1000 // result.vsize),
                    "effective-includes": [tx.wtxid_hex],
                }
            out.append(item)
        return out

    def submitpackage(
        self,
        package: list[Any],
        maxfeerate: Decimal | None = None,
        maxburnamount: Decimal | None = None,
    ) -> dict[str, Any]:
        if not 1 <= len(package) <= 25:
            raise RpcError(
                RpcError.RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions."
            )
        txs = [_decode_tx(r) if isinstance(r, str) else _decode_tx("") for r in package]
        result = self.node.submit_package(txs)
        if result.package_error and not result.errors:
            raise RpcError(
                RpcError.RPC_VERIFY_ERROR,
                f"{_BAD_TOPOLOGY} ({result.package_error})",
            )
        accepted = result.accepted
        group = [e for e in accepted.values()]
        group_fee = sum(e.fee for e in group)
        group_vsize = sum(e.vsize for e in group) or 1
        results: dict[str, Any] = {}
        for tx in txs:
            item: dict[str, Any] = {"txid": tx.txid_hex}
            entry = accepted.get(tx.wtxid)
            if entry is not None:
                item["vsize"] = entry.vsize
                item["fees"] = {
                    "base": sat_to_btc(entry.fee),
                    "effective-feerate": sat_to_btc(group_fee * 1000 // group_vsize),
                    "effective-includes": [e.tx.wtxid_hex for e in group],
                }
            elif tx.wtxid in result.errors:
                item["error"] = str(result.errors[tx.wtxid])
            elif tx.wtxid in result.already:
                entry_now = self.node.mempool.entries.get(tx.txid)
                if entry_now is not None:
                    item["vsize"] = entry_now.vsize
                    item["fees"] = {"base": sat_to_btc(entry_now.fee)}
            results[tx.wtxid_hex] = item
        return {
            "package_msg": "success"
            if result.ok
            else (result.package_error or "transaction failed"),
            "tx-results": results,
            "replaced-transactions": [],
        }

    def getmempoolentry(self, txid: str) -> dict[str, Any]:
        key = _hash_arg(txid, "txid")
        with self.node.lock:
            entry = self.node.mempool.entries.get(key)
            if entry is None:
                raise RpcError(RpcError.RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
            return self._mempool_entry_json(entry)

    def getrawmempool(self, verbose: bool = False, mempool_sequence: bool = False) -> Any:
        with self.node.lock:
            entries = list(self.node.mempool)
            if verbose:
                return {e.tx.txid_hex: self._mempool_entry_json(e) for e in entries}
            return [e.tx.txid_hex for e in entries]

    def getmempoolinfo(self) -> dict[str, Any]:
        with self.node.lock:
            entries = list(self.node.mempool)
            relay = sat_to_btc(self.node.mempool.min_relay.sat_per_kvb)
            return {
                "loaded": True,
                "size": len(entries),
                "bytes": sum(e.vsize for e in entries),
                "usage": sum(len(e.tx.to_bytes()) for e in entries),
                "total_fee": sat_to_btc(sum(e.fee for e in entries)),
                "maxmempool": 300_000_000,
                "mempoolminfee": relay,
                "minrelaytxfee": relay,
                "unbroadcastcount": 0,
            }

    def estimatesmartfee(
        self, conf_target: int, estimate_mode: str = "economical"
    ) -> dict[str, Any]:
        """Regtest has no fee history: answer the mempool's going rate, never below relay."""
        if not 1 <= conf_target <= 1008:
            raise RpcError(
                RpcError.RPC_INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008"
            )
        with self.node.lock:
            floor = self.node.mempool.min_relay.sat_per_kvb
            rates = sorted(e.fee * 1000 // e.vsize for e in self.node.mempool)
            rate = rates[len(rates) // 2] if rates else floor
            return {"feerate": sat_to_btc(max(rate, floor)), "blocks": conf_target}

    # -- mining ----------------------------------------------------------------------------

    def _script_for(self, address: str) -> bytes:
        try:
            return address_to_script_pubkey(address, self.node.network)
        except (AddressError, ScriptError):
            raise RpcError(RpcError.RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None

    def generatetoaddress(self, nblocks: int, address: str, maxtries: int = 1_000_000) -> list[str]:
        if nblocks < 0:
            raise RpcError(RpcError.RPC_INVALID_PARAMETER, "nblocks must be non-negative")
        script = self._script_for(address)
        try:
            hashes = self.node.mine(nblocks, script)
        except BlockRejectedError as exc:
            raise RpcError(
                RpcError.RPC_MISC_ERROR,
                f"kernel rejected the assembled block: {exc.reason} ({exc.detail})",
            ) from None
        return [h[::-1].hex() for h in hashes]

    def generateblock(
        self, output: str, transactions: list[Any], submit: bool = True
    ) -> dict[str, Any]:
        """Mine exactly `transactions` (raw hex), bypassing mempool policy, as bitcoind does."""
        script = self._script_for(output)
        txs: list[Transaction] = []
        for item in transactions:
            if isinstance(item, str) and len(item) == 64:
                entry = self.node.mempool.entries.get(_hash_arg(item, "txid"))
                if entry is None:
                    raise RpcError(
                        RpcError.RPC_INVALID_ADDRESS_OR_KEY, f"Transaction {item} not in mempool."
                    )
                txs.append(entry.tx)
            else:
                txs.append(_decode_tx(item if isinstance(item, str) else ""))
        try:
            block_hash = self.node.mine_transactions(txs, script)
        except BlockRejectedError as exc:
            raise RpcError(
                RpcError.RPC_VERIFY_ERROR, f"TestBlockValidity failed: {exc.reason}, {exc.detail}"
            ) from None
        return {"hash": block_hash[::-1].hex()}

    # -- wallet ----------------------------------------------------------------------------

    def getnewaddress(self, label: str = "", address_type: str | None = None) -> str:
        if address_type not in (None, "bech32m"):
            raise RpcError(
                RpcError.RPC_INVALID_ADDRESS_OR_KEY,
                f"Unknown address type '{address_type}' (this wallet makes bech32m only)",
            )
        return self.node.new_address()

    def sendtoaddress(
        self,
        address: str,
        amount: Decimal,
        comment: str | None = None,
        comment_to: str | None = None,
        subtractfeefromamount: bool = False,
        replaceable: bool | None = None,
        conf_target: int | None = None,
        estimate_mode: str | None = None,
        avoid_reuse: bool | None = None,
        fee_rate: Decimal | int | None = None,
        verbose: bool = False,
    ) -> Any:
        script = self._script_for(address)
        try:
            sat = btc_to_sat(amount)
        except AmountError:
            raise RpcError(RpcError.RPC_TYPE_ERROR, "Invalid amount") from None
        if sat <= 0:
            raise RpcError(RpcError.RPC_TYPE_ERROR, "Invalid amount for send")
        rate = None
        if fee_rate is not None:
            rate = Feerate(int(Decimal(fee_rate) * 1000))
        try:
            tx = self.node.send_to(
                script,
                sat,
                **({"feerate": rate} if rate else {}),
                subtract_fee=subtractfeefromamount,
            )
        except InsufficientFundsError as exc:
            raise RpcError(
                RpcError.RPC_WALLET_INSUFFICIENT_FUNDS, f"Insufficient funds ({exc})"
            ) from None
        except TxRejectedError as exc:
            raise RpcError(RpcError.RPC_WALLET_ERROR, f"Transaction rejected: {exc}") from None
        if verbose:
            return {"txid": tx.txid_hex, "fee_reason": "Fallback fee"}
        return tx.txid_hex

    def listunspent(
        self,
        minconf: int = 1,
        maxconf: int = 9_999_999,
        addresses: list[Any] | None = None,
        include_unsafe: bool = True,
        query_options: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        wanted = {self._script_for(a) for a in addresses} if addresses else None
        with self.node.lock:
            out: list[dict[str, Any]] = []
            for coin in self.node.spendable(min_conf=0):
                if not minconf <= coin.confirmations <= maxconf:
                    continue
                script = coin.output.script_pubkey
                if wanted is not None and script not in wanted:
                    continue
                out.append(
                    {
                        "txid": coin.outpoint.txid_hex,
                        "vout": coin.outpoint.vout,
                        "address": script_pubkey_to_address(script, self.node.network),
                        "scriptPubKey": script.hex(),
                        "amount": sat_to_btc(coin.output.value),
                        "confirmations": coin.confirmations,
                        "spendable": True,
                        "solvable": True,
                        "safe": coin.confirmations > 0,
                    }
                )
            return out

    def getbalance(
        self,
        dummy: str | None = None,
        minconf: int = 0,
        include_watchonly: bool = True,
        avoid_reuse: bool = True,
    ) -> Decimal:
        if dummy is not None and dummy != "*":
            raise RpcError(
                RpcError.RPC_METHOD_DEPRECATED,
                'dummy first argument must be excluded or set to "*".',
            )
        with self.node.lock:
            coins = self.node.spendable(min_conf=minconf)
            return sat_to_btc(sum(c.output.value for c in coins))

    def fundrawtransaction(
        self,
        hexstring: str,
        options: dict[str, Any] | bool | None = None,
        iswitness: bool | None = None,
    ) -> dict[str, Any]:
        """Add wallet inputs and a change output; the result is unsigned, as in bitcoind."""
        tx = _decode_tx_allow_empty(hexstring)
        if tx.inputs:
            raise RpcError(
                RpcError.RPC_INVALID_PARAMETER,
                "this wallet funds transactions without preset inputs only",
            )
        rate: Feerate | None = None
        if isinstance(options, dict) and options.get("fee_rate") is not None:
            rate = Feerate(int(Decimal(str(options["fee_rate"])) * 1000))
        try:
            funded = self.node.fund(tx.outputs, **({"feerate": rate} if rate else {}))
        except InsufficientFundsError as exc:
            raise RpcError(
                RpcError.RPC_WALLET_INSUFFICIENT_FUNDS, f"Insufficient funds ({exc})"
            ) from None
        funded = replace(funded, version=tx.version, locktime=tx.locktime)
        spent = 0
        for txin in funded.inputs:
            coin = self.node.utxo(txin.prevout)
            assert coin is not None  # the wallet just selected it
            spent += coin[0].value
        change = next((i for i, o in enumerate(funded.outputs) if i >= len(tx.outputs)), -1)
        return {
            "hex": funded.hex(),
            "fee": sat_to_btc(spent - funded.total_out),
            "changepos": change,
        }

    def signrawtransactionwithwallet(
        self, hexstring: str, prevtxs: list[Any] | None = None
    ) -> dict[str, Any]:
        prevouts: dict[OutPoint, TxOut] = {}
        for item in prevtxs or []:
            try:
                outpoint = OutPoint.from_txid_hex(str(item["txid"]), int(item["vout"]))
                txout = TxOut(btc_to_sat(item["amount"]), bytes.fromhex(str(item["scriptPubKey"])))
            except (KeyError, TypeError, ValueError, AmountError) as exc:
                raise RpcError(
                    RpcError.RPC_INVALID_PARAMETER, f"bad prevtxs entry: {exc}"
                ) from None
            prevouts[outpoint] = txout
        signed, complete = self.node.sign_with_wallet(_decode_tx(hexstring), prevouts)
        out: dict[str, Any] = {"hex": signed.hex(), "complete": complete}
        if not complete:
            out["errors"] = [
                {
                    "txid": i.prevout.txid_hex,
                    "vout": i.prevout.vout,
                    "error": "Input not found or already spent",
                }
                for i in signed.inputs
                if not i.witness
            ]
        return out

    # -- control --------------------------------------------------------------------------

    def uptime(self) -> int:
        return int(time.time() - self._started)

    def stop(self) -> str:
        if self._on_stop is not None:
            threading.Timer(0.05, self._on_stop).start()
        return "Bitcoin server stopping"


@contextmanager
def serve_node(
    node: RegtestNode, *, port: int = 0, cookie_dir: Path | None = None
) -> Iterator[tuple[RpcServer, BitcoindClient]]:
    """Serve `node` on loopback for the duration of the block; yields a connected client."""
    cookie_dir = cookie_dir or node.datadir
    server = RpcServer(NodeService(node).handlers(), port=port, cookie_dir=cookie_dir)
    server.start()
    try:
        client = BitcoindClient(f"http://127.0.0.1:{server.port}", cookie_file=server.cookie_path)
        yield server, client
    finally:
        server.stop()
