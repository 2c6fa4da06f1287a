"""The bitcoind client (`ChainSource`) over real HTTP, and exact amounts.

The fake node answers with bitcoind-shaped replies recorded in
`rpc_fixtures`; a canned server stands in for an older bitcoind (HTTP 500
errors), garbage answers and dropped connections.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.bitcoin.tx import MAX_MONEY, OutPoint, Transaction, hash256
from superscalar.chain import amounts
from superscalar.chain.amounts import AmountError, btc_to_sat, decode_json, encode_json, sat_to_btc
from superscalar.chain.bitcoind import (
    BitcoindClient,
    ChainAuthError,
    ChainResponseError,
    ChainSource,
    ChainUnavailable,
)
from superscalar.chain.rpc import (
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_METHOD_NOT_FOUND,
    RPC_VERIFY_REJECTED,
    RpcError,
    RpcServer,
)

from . import rpc_fixtures as fx
from .rpc_support import canned_server, free_port, legacy_result, serving

REJECT_LOCKTIME = 666  # the fake node rejects transactions with this nLockTime


class FakeBitcoind:
    """bitcoind's RPC surface with recorded reply shapes; parameter names are
    bitcoind's, so named-parameter calls would map the same way."""

    def __init__(self) -> None:
        self.mempool: dict[str, Transaction] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lie_about_txid = False

    def handlers(self) -> dict[str, Any]:
        names = [n for n in dir(self) if n.isalpha() and n.islower() and n != "handlers"]
        return {n: getattr(self, n) for n in names if callable(getattr(self, n))}

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))

    def getblockchaininfo(self) -> Any:
        return fx.render(fx.GETBLOCKCHAININFO)

    def getblockcount(self) -> int:
        return 101

    def getblockhash(self, height: int) -> str:
        if height != 0:
            raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
        return fx.GENESIS_HASH

    def getbestblockhash(self) -> str:
        return fx.BEST_HASH

    def getblock(self, blockhash: str, verbosity: int | bool = 1) -> Any:
        if blockhash != fx.GENESIS_HASH:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return fx.GENESIS_BLOCK_HEX if verbosity == 0 else fx.render(fx.GETBLOCK_1)

    def getrawtransaction(
        self, txid: str, verbosity: int | bool = 0, blockhash: str | None = None
    ) -> Any:
        if txid == fx.GENESIS_TXID:
            tx = Transaction.from_hex(fx.GENESIS_TX_HEX)
        elif txid in self.mempool:
            tx = self.mempool[txid]
        else:
            raise RpcError(
                RPC_INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction. "
                "Use gettransaction for wallet transactions.",
            )
        if self.lie_about_txid:
            tx = fx.make_tx(99)
        if not verbosity:
            return tx.hex()
        if txid in self.mempool:
            return fx.render(fx.GETRAWTRANSACTION_1_MEMPOOL, **fx.tx_values(tx))
        return fx.render(fx.GETRAWTRANSACTION_1, blockhash=fx.GENESIS_HASH, **fx.tx_values(tx))

    def gettxout(self, txid: str, n: int, include_mempool: bool = True) -> Any:
        if txid != fx.GENESIS_TXID or n != 0:
            return None
        return fx.render(fx.GETTXOUT, bestblock=fx.BEST_HASH)

    def sendrawtransaction(
        self,
        hexstring: str,
        maxfeerate: Decimal = Decimal("0.10"),
        maxburnamount: Decimal = Decimal(0),
    ) -> str:
        self._record("sendrawtransaction", hexstring, maxfeerate)
        tx = Transaction.from_hex(hexstring)
        if tx.locktime == REJECT_LOCKTIME:
            raise RpcError(RPC_VERIFY_REJECTED, "min relay fee not met, 0 < 110")
        self.mempool[tx.txid_hex] = tx
        return tx.txid_hex

    def testmempoolaccept(self, rawtxs: list[str], maxfeerate: Decimal = Decimal("0.10")) -> Any:
        self._record("testmempoolaccept", rawtxs, maxfeerate)
        out: list[Any] = []
        for raw in rawtxs:
            tx = Transaction.from_hex(raw)
            template = (
                fx.TESTMEMPOOLACCEPT_REJECTED
                if tx.locktime == REJECT_LOCKTIME
                else fx.TESTMEMPOOLACCEPT_UNVALIDATED
                if out and out[-1].get("allowed") is False
                else fx.TESTMEMPOOLACCEPT_ALLOWED
            )
            out.append(fx.render(template, **fx.tx_values(tx)))
        return out

    def submitpackage(
        self,
        package: list[str],
        maxfeerate: Decimal = Decimal("0.10"),
        maxburnamount: Decimal = Decimal(0),
    ) -> Any:
        parent, child = (Transaction.from_hex(raw) for raw in package)
        template = (
            fx.SUBMITPACKAGE_FAILED if parent.locktime == REJECT_LOCKTIME else fx.SUBMITPACKAGE
        )
        return fx.render(
            template,
            parent_txid=parent.txid_hex,
            parent_wtxid=parent.wtxid_hex,
            child_txid=child.txid_hex,
            child_wtxid=child.wtxid_hex,
        )

    def getmempoolentry(self, txid: str) -> Any:
        if txid not in self.mempool:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
        return fx.render(fx.GETMEMPOOLENTRY, wtxid=self.mempool[txid].wtxid_hex)

    def getrawmempool(self, verbose: bool = False, mempool_sequence: bool = False) -> list[str]:
        return sorted(self.mempool)

    def estimatesmartfee(self, conf_target: int, estimate_mode: str = "economical") -> Any:
        return fx.render(fx.ESTIMATESMARTFEE if conf_target > 1 else fx.ESTIMATESMARTFEE_NONE)

    def generatetoaddress(self, nblocks: int, address: str, maxtries: int = 1_000_000) -> list[str]:
        return [hash256(bytes([i])).hex() for i in range(nblocks)]

    def getnewaddress(self, label: str = "", address_type: str | None = None) -> str:
        return fx.ADDRESS

    def sendtoaddress(self, address: str, amount: Decimal, comment: str = "") -> str:
        self._record("sendtoaddress", address, amount)
        return fx.GENESIS_TXID

    def listunspent(
        self,
        minconf: int = 1,
        maxconf: int = 9_999_999,
        addresses: list[str] | None = None,
        include_unsafe: bool = True,
        query_options: dict[str, Any] | None = None,
    ) -> Any:
        return fx.render(fx.LISTUNSPENT)

    def getbalance(self, dummy: str | None = None, minconf: int = 0) -> Any:
        return fx.render(fx.GETBALANCE)

    def slow(self) -> int:
        time.sleep(0.5)
        return 1


@pytest.fixture
def node() -> FakeBitcoind:
    return FakeBitcoind()


@pytest.fixture
def server(node: FakeBitcoind, tmp_path: Path) -> Iterator[RpcServer]:
    with serving(node.handlers(), tmp_path) as srv:
        yield srv


@pytest.fixture
def client(server: RpcServer) -> Iterator[BitcoindClient]:
    assert server.cookie_path is not None
    with BitcoindClient(server.url, cookie_file=server.cookie_path, timeout=5) as c:
        yield c


# -- typed methods -----------------------------------------------------------------------


def test_is_a_chain_source(client: BitcoindClient) -> None:
    assert isinstance(client, ChainSource)


def test_chain_queries(client: BitcoindClient) -> None:
    info = client.get_blockchain_info()
    assert (info["chain"], info["blocks"], info["bestblockhash"]) == ("regtest", 101, fx.BEST_HASH)
    assert isinstance(info["difficulty"], Decimal)  # never a float
    assert client.get_block_count() == 101
    assert client.get_block_hash(0) == fx.GENESIS_HASH
    assert client.get_best_block_hash() == fx.BEST_HASH
    with pytest.raises(RpcError) as err:
        client.get_block_hash(7)
    assert (err.value.code, err.value.message) == (
        RPC_INVALID_PARAMETER,
        "Block height out of range",
    )


def test_get_block(client: BitcoindClient) -> None:
    raw = client.get_block(fx.GENESIS_HASH, 0)
    assert isinstance(raw, bytes)
    assert hash256(raw[:80])[::-1].hex() == fx.GENESIS_HASH
    block = client.get_block(fx.GENESIS_HASH)
    assert block["tx"] == [fx.GENESIS_TXID]
    with pytest.raises(RpcError) as err:
        client.get_block("00" * 32)
    assert err.value.code == RPC_INVALID_ADDRESS_OR_KEY


def test_get_raw_transaction(client: BitcoindClient, node: FakeBitcoind) -> None:
    tx = client.get_raw_transaction(fx.GENESIS_TXID)
    assert isinstance(tx, Transaction)
    assert tx.txid_hex == fx.GENESIS_TXID
    assert tx.outputs[0].value == 50 * 100_000_000
    info = client.get_raw_transaction_verbose(fx.GENESIS_TXID)
    assert (info.tx, info.confirmations, info.blockhash) == (tx, 3, fx.GENESIS_HASH)
    assert info.blocktime == 1735689600 and not info.in_mempool
    with pytest.raises(RpcError) as err:
        client.get_raw_transaction("ab" * 32)
    assert err.value.code == RPC_INVALID_ADDRESS_OR_KEY
    assert err.value.message.startswith("No such mempool or blockchain transaction")


def test_mempool_transaction_verbose(client: BitcoindClient) -> None:
    tx = fx.make_tx(1)
    client.send_raw_transaction(tx)
    info = client.get_raw_transaction_verbose(tx.txid_hex)
    assert info.tx == tx and info.in_mempool
    assert (info.confirmations, info.blockhash, info.blocktime) == (0, None, None)


def test_transaction_that_does_not_match_its_txid_is_refused(
    client: BitcoindClient, node: FakeBitcoind
) -> None:
    node.lie_about_txid = True
    with pytest.raises(ChainResponseError, match="asked for"):
        client.get_raw_transaction(fx.GENESIS_TXID)
    with pytest.raises(ChainResponseError, match="asked for"):
        client.get_raw_transaction_verbose(fx.GENESIS_TXID)


def test_get_tx_out(client: BitcoindClient) -> None:
    out = client.get_tx_out(fx.GENESIS_TXID, 0)
    assert out is not None
    assert out.outpoint == OutPoint.from_txid_hex(fx.GENESIS_TXID, 0)
    assert out.amount_sat == 5_000_000_000
    assert out.script_pubkey == bytes.fromhex(fx.P2WPKH_HEX)
    assert out.txout.value == 5_000_000_000
    assert (out.confirmations, out.coinbase, out.best_block) == (101, True, fx.BEST_HASH)
    assert out.address == fx.ADDRESS
    assert client.get_tx_out(fx.GENESIS_TXID, 1) is None  # spent / absent: JSON null


def test_send_raw_transaction(client: BitcoindClient, node: FakeBitcoind) -> None:
    tx = fx.make_tx(2)
    assert client.send_raw_transaction(tx) == tx.txid_hex
    assert (
        client.send_raw_transaction(fx.make_tx(3), max_fee_rate_sat_per_kvb=0)
        == fx.make_tx(3).txid_hex
    )
    sent = [args for method, args in node.calls if method == "sendrawtransaction"]
    assert sent[0] == (tx.hex(), Decimal("0.10"))  # default left to the node
    assert sent[1][1] == Decimal(0)
    with pytest.raises(RpcError) as err:
        client.send_raw_transaction(fx.make_tx(4, locktime=REJECT_LOCKTIME))
    assert (err.value.code, err.value.message) == (
        RPC_VERIFY_REJECTED,
        "min relay fee not met, 0 < 110",
    )


def test_test_mempool_accept(client: BitcoindClient, node: FakeBitcoind) -> None:
    good, bad, after = fx.make_tx(5), fx.make_tx(6, locktime=REJECT_LOCKTIME), fx.make_tx(7)
    results = client.test_mempool_accept([good, bad, after], max_fee_rate_sat_per_kvb=12_345)
    assert [r.txid for r in results] == [good.txid_hex, bad.txid_hex, after.txid_hex]
    ok, rejected, unvalidated = results
    assert ok.allowed is True and ok.wtxid == good.wtxid_hex
    assert (ok.vsize, ok.fee_sat, ok.effective_feerate_sat_per_kvb) == (110, 1000, 9090)
    assert ok.effective_includes == (good.wtxid_hex,)
    assert rejected.allowed is False
    assert rejected.reject_reason == "min relay fee not met"
    assert rejected.reject_details == "min relay fee not met, 0 < 110"
    assert rejected.fee_sat is None
    assert unvalidated.allowed is None
    assert unvalidated.package_error == "package-not-child-with-unconfirmed-parents"
    assert node.calls[-1][1][1] == Decimal("0.00012345")


def test_submit_package(client: BitcoindClient) -> None:
    parent, child = fx.make_tx(8), fx.make_tx(9)
    result = client.submit_package([parent, child])
    assert result.success
    assert result.replaced_transactions == ()
    by_wtxid = result.tx_results
    assert set(by_wtxid) == {parent.wtxid_hex, child.wtxid_hex}
    assert parent.wtxid_hex != parent.txid_hex  # keyed by wtxid, not txid
    p, c = by_wtxid[parent.wtxid_hex], by_wtxid[child.wtxid_hex]
    assert (p.txid, p.fee_sat, p.vsize) == (parent.txid_hex, 0, 152)
    assert (c.txid, c.fee_sat, c.effective_feerate_sat_per_kvb) == (child.txid_hex, 7500, 2500)
    assert p.in_mempool and c.in_mempool
    failed = client.submit_package([fx.make_tx(10, locktime=REJECT_LOCKTIME), child])
    assert not failed.success
    assert failed.package_msg == "transaction failed"
    assert [r.error for r in failed.results] == [
        "min relay fee not met, 0 < 152",
        "bad-txns-inputs-missingorspent",
    ]


def test_mempool_entry_and_list(client: BitcoindClient) -> None:
    tx = fx.make_tx(11)
    client.send_raw_transaction(tx)
    entry = client.get_mempool_entry(tx.txid_hex)
    assert (entry.txid, entry.wtxid, entry.vsize, entry.weight) == (
        tx.txid_hex,
        tx.wtxid_hex,
        110,
        437,
    )
    assert (entry.fee_sat, entry.modified_fee_sat, entry.ancestor_fees_sat) == (1000, 1000, 1000)
    assert (entry.ancestor_count, entry.descendant_size, entry.bip125_replaceable) == (1, 110, True)
    assert client.get_raw_mempool() == [tx.txid_hex]
    with pytest.raises(RpcError) as err:
        client.get_mempool_entry("cd" * 32)
    assert (err.value.code, err.value.message) == (
        RPC_INVALID_ADDRESS_OR_KEY,
        "Transaction not in mempool",
    )


def test_estimate_smart_fee(client: BitcoindClient) -> None:
    assert client.estimate_smart_fee(6) == 1000  # 0.00001000 BTC/kvB
    assert client.estimate_smart_fee(1) is None  # "errors": no estimate


def test_wallet_and_mining(client: BitcoindClient, node: FakeBitcoind) -> None:
    hashes = client.generate_to_address(3, fx.ADDRESS)
    assert len(hashes) == 3 and all(len(h) == 64 for h in hashes)
    assert client.get_new_address() == fx.ADDRESS
    assert client.send_to_address(fx.ADDRESS, 12_345) == fx.GENESIS_TXID
    method, (address, amount) = node.calls[-1]
    assert (method, address, amount) == ("sendtoaddress", fx.ADDRESS, Decimal("0.00012345"))
    assert client.get_balance() == 14_999_998_590
    coins = client.list_unspent()
    assert [(u.outpoint.txid_hex, u.outpoint.vout, u.amount_sat) for u in coins] == [
        (fx.GENESIS_TXID, 0, 5_000_000_000),
        ("11" * 32, 1, 12_345),
    ]
    assert coins[0].script_pubkey == bytes.fromhex(fx.P2WPKH_HEX)
    assert coins[0].txout.value == 5_000_000_000
    assert (coins[0].confirmations, coins[0].spendable, coins[0].safe) == (101, True, True)
    assert coins[0].desc is not None and coins[0].desc.startswith("wpkh(")
    assert coins[1].safe is False


def test_generic_call_and_named_params(client: BitcoindClient) -> None:
    assert client.call("getblockhash", 0) == fx.GENESIS_HASH
    assert client.call_named("getblockhash", height=0) == fx.GENESIS_HASH
    with pytest.raises(RpcError) as err:
        client.call("nosuchmethod")
    assert err.value.code == RPC_METHOD_NOT_FOUND


def test_threads_get_their_own_connections(client: BitcoindClient) -> None:
    results: list[int] = []

    def worker() -> None:
        for _ in range(20):
            results.append(client.get_block_count())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [101] * 80


# -- transport and failures ------------------------------------------------------------------


def test_reconnects_after_server_restart(node: FakeBitcoind, tmp_path: Path) -> None:
    first = RpcServer(node.handlers(), cookie_dir=tmp_path, auth_failure_delay=0)
    first.start()
    port = first.port
    assert first.cookie_path is not None
    client = BitcoindClient(first.url, cookie_file=first.cookie_path, timeout=5)
    assert client.get_block_count() == 101
    old_cookie = first.cookie_path.read_text()
    first.stop()
    with pytest.raises(ChainUnavailable):
        client.get_block_count()
    # Same port, new process-lifetime cookie: the client reconnects and re-reads it.
    with RpcServer(node.handlers(), port=port, cookie_dir=tmp_path, auth_failure_delay=0) as second:
        assert second.cookie_path is not None
        assert second.cookie_path.read_text() != old_cookie
        assert client.get_block_count() == 101
        assert client.get_block_hash(0) == fx.GENESIS_HASH
    client.close()


def test_nothing_listening_is_chain_unavailable(tmp_path: Path) -> None:
    client = BitcoindClient(f"http://127.0.0.1:{free_port()}/", user="u", password="p", timeout=2)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="unavailable"):
        client.get_block_count()
    assert time.monotonic() - started < 2


def test_missing_cookie_is_chain_unavailable(tmp_path: Path) -> None:
    client = BitcoindClient("http://127.0.0.1:1/", cookie_file=tmp_path / ".cookie")
    with pytest.raises(ChainUnavailable, match="cookie"):
        client.get_block_count()


def test_wrong_password_is_auth_error(server: RpcServer) -> None:
    client = BitcoindClient(server.url, user="__cookie__", password="nope", timeout=5)
    with pytest.raises(ChainAuthError, match="refused our credentials"):
        client.get_block_count()


def test_timeout_is_chain_unavailable(server: RpcServer) -> None:
    assert server.cookie_path is not None
    client = BitcoindClient(server.url, cookie_file=server.cookie_path, timeout=0.1)
    with pytest.raises(ChainUnavailable, match="no answer"):
        client.call("slow")
    client.close()


def test_legacy_bitcoind_errors() -> None:
    """bitcoind < 28 answers errors with HTTP 500/404 and both fields."""
    with canned_server() as (canned, port):
        client = BitcoindClient(f"http://127.0.0.1:{port}/", user="u", password="p")
        canned.add(200, legacy_result(7, 1))
        assert client.get_block_count() == 7
        canned.add(
            500,
            {"result": None, "error": {"code": -26, "message": "txn-mempool-conflict"}, "id": 2},
        )
        with pytest.raises(RpcError) as err:
            client.send_raw_transaction(fx.make_tx(1))
        assert (err.value.code, err.value.message) == (-26, "txn-mempool-conflict")
        canned.add(
            404, {"result": None, "error": {"code": -32601, "message": "Method not found"}, "id": 3}
        )
        with pytest.raises(RpcError) as err:
            client.call("submitpackage", [])
        assert err.value.code == RPC_METHOD_NOT_FOUND
        assert canned.requests[0]["auth"] == "Basic dTpw"
        assert canned.requests[0]["body"] == {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getblockcount",
            "params": [],
        }


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (502, "<html>Bad Gateway</html>", ChainResponseError, "not JSON"),
        (200, {"result": 1, "error": None, "id": 999}, ChainResponseError, "request id"),
        (200, {"error": None, "id": 1}, ChainResponseError, "no result"),
        (200, {"result": "nothex", "error": None, "id": 1}, ChainResponseError, "hex"),
        (200, {"result": 1.5, "error": None, "id": 1}, ChainResponseError, "integer"),
        (500, {"result": None, "error": None, "id": 1}, ChainResponseError, "HTTP 500"),
        (503, "Work queue depth exceeded", ChainUnavailable, "busy"),
        (403, "", ChainAuthError, "forbids"),
    ],
)
def test_bad_answers(status: int, body: Any, error: type[Exception], match: str) -> None:
    with canned_server() as (canned, port):
        client = BitcoindClient(f"http://127.0.0.1:{port}/", user="u", password="p")
        canned.add(status, body)
        with pytest.raises(error, match=match):
            if isinstance(body, dict) and body.get("result") == "nothex":
                client.get_best_block_hash()
            else:
                client.get_block_count()


def test_401_rereads_the_cookie_once(tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:old")
    with canned_server() as (canned, port):
        client = BitcoindClient(f"http://127.0.0.1:{port}/", cookie_file=cookie)
        canned.add(200, legacy_result(1, 1))
        assert client.get_block_count() == 1
        cookie.write_text("__cookie__:new")
        canned.add(401, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        canned.add(200, legacy_result(2, 2))
        assert client.get_block_count() == 2
        assert [r["auth"] for r in canned.requests] == [
            "Basic X19jb29raWVfXzpvbGQ=",
            "Basic X19jb29raWVfXzpvbGQ=",
            "Basic X19jb29raWVfXzpuZXc=",
        ]
        canned.add(401, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        canned.add(401, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        with pytest.raises(ChainAuthError):
            client.get_block_count()


def test_dropped_connection_retries_only_what_is_safe() -> None:
    with canned_server() as (canned, port):
        client = BitcoindClient(f"http://127.0.0.1:{port}/", user="u", password="p")
        canned.add(200, legacy_result(1, 1))
        assert client.get_block_count() == 1
        # A read on a reused connection that drops mid-call is sent again.
        canned.drop()
        canned.add(200, legacy_result(2, 2))
        assert client.get_block_count() == 2
        assert [r["body"]["id"] for r in canned.requests] == [1, 2, 2]
        # Mining is not: it may have happened, so the caller must decide.
        canned.drop()
        with pytest.raises(ChainUnavailable, match="connection lost during generatetoaddress"):
            client.generate_to_address(1, fx.ADDRESS)
        assert len(canned.requests) == 4
        canned.add(200, legacy_result(5, 4))
        assert client.get_block_count() == 5


def test_client_configuration() -> None:
    with pytest.raises(ValueError, match="http://"):
        BitcoindClient("https://127.0.0.1:8332/", user="u", password="p")
    with pytest.raises(ValueError, match="cookie_file or user/password"):
        BitcoindClient("http://127.0.0.1:8332/")
    client = BitcoindClient("http://alice:pw@127.0.0.1:18443/", wallet="my wallet")
    assert (client.host, client.port, client.path) == ("127.0.0.1", 18443, "/wallet/my%20wallet")
    signet = BitcoindClient.from_datadir("/data/btc", "signet")
    assert signet.port == 38332
    assert signet.cookie_file == Path("/data/btc/signet/.cookie")
    assert BitcoindClient.from_datadir("/d", "main").cookie_file == Path("/d/.cookie")


# -- amounts -------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_MONEY))
def test_sat_btc_sat_identity(sat: int) -> None:
    btc = sat_to_btc(sat)
    assert btc.as_tuple().exponent == -8
    assert btc_to_sat(btc) == sat
    text = encode_json(btc)
    assert text == format(btc, "f")
    assert btc_to_sat(decode_json(text)) == sat  # through JSON as a bare number
    assert btc_to_sat(text) == sat  # and as a string


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_MONEY - 1), st.integers(min_value=1, max_value=30))
def test_sub_satoshi_precision_is_refused(sat: int, extra_digits: int) -> None:
    text = format(sat_to_btc(sat), "f") + "0" * (extra_digits - 1) + "1"
    with pytest.raises(AmountError, match="more than 8 decimal places"):
        btc_to_sat(text)


def test_sat_to_btc_spelling() -> None:
    assert encode_json(sat_to_btc(5_000_000_000)) == "50.00000000"
    assert encode_json(sat_to_btc(1)) == "0.00000001"
    assert encode_json(sat_to_btc(0)) == "0.00000000"
    assert encode_json(sat_to_btc(-1000)) == "-0.00001000"
    assert sat_to_btc(MAX_MONEY) == Decimal("21000000")
    for bad in (MAX_MONEY + 1, -MAX_MONEY - 1):
        with pytest.raises(AmountError):
            sat_to_btc(bad)
    with pytest.raises(AmountError):
        sat_to_btc(True)
    with pytest.raises(AmountError):
        sat_to_btc(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "sat"),
    [
        ("0.1", 10_000_000),
        ("50.00000000", 5_000_000_000),
        ("1e-8", 1),
        ("1E+3", 100_000_000_000),
        (".5", 50_000_000),
        ("5.", 500_000_000),
        ("0.100000000000", 10_000_000),
        ("21000000", MAX_MONEY),
        ("-0", 0),
        (Decimal("0E+999999999"), 0),
        (Decimal("1E-8"), 1),
        (Decimal("20999999.99999999"), MAX_MONEY - 1),
        (0, 0),
        (2, 200_000_000),
    ],
)
def test_btc_to_sat_accepts(value: Any, sat: int) -> None:
    assert btc_to_sat(value) == sat


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (0.1, "float"),
        (True, "must be Decimal, int or str"),
        (None, "must be Decimal, int or str"),
        ("0.000000001", "more than 8 decimal places"),
        (Decimal("1E-9"), "more than 8 decimal places"),
        ("-1", "negative"),
        (Decimal("-0.00000001"), "negative"),
        (-1, "negative"),
        ("21000000.00000001", "exceeds"),
        ("1e999999999", "exceeds"),
        (21_000_001, "exceeds"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        ("Infinity", "not a decimal"),
        ("nan", "not a decimal"),
        (" 1", "not a decimal"),
        ("1_000", "not a decimal"),
        ("", "not a decimal"),
        (".", "not a decimal"),
        ("0x10", "not a decimal"),
    ],
)
def test_btc_to_sat_refuses(value: Any, match: str) -> None:
    with pytest.raises(AmountError, match=match):
        btc_to_sat(value)
    assert issubclass(AmountError, ValueError)


def test_json_codec() -> None:
    value = {"amount": Decimal("0.00012345"), "list": [1, "a", None, True, False, 1.5], "n": {}}
    text = encode_json(value)
    assert text == '{"amount":0.00012345,"list":[1,"a",null,true,false,1.5],"n":{}}'
    assert decode_json(text)["amount"] == Decimal("0.00012345")
    assert decode_json(b'{"x": 5}') == {"x": 5}
    assert encode_json('é\n"') == json.dumps('é\n"')
    for bad in (float("nan"), Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(ValueError):
            encode_json([bad])
    for bad_type in ({1: 2}, object(), b"bytes", {1, 2}):
        with pytest.raises(TypeError):
            encode_json(bad_type)
    for text in ("NaN", "[Infinity]", "-Infinity", "{", "\ud800"):
        with pytest.raises(ValueError):
            decode_json(text.encode("utf-8", "surrogatepass"))
    assert amounts.COIN == 100_000_000
