"""The node's bitcoind RPC over real loopback HTTP, read back through `BitcoindClient`."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from superscalar.bitcoin.script import p2a_script
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import COIN, Transaction, TxIn, TxOut
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.chain.rpc import RpcError, RpcServer
from superscalar.chain.service import serve_node
from superscalar.crypto.keys import SecretKey

from .chain_support import MINER, fund, keypath_spend

KEY = SecretKey.from_int(0x5EC)


@pytest.fixture
def served(node: RegtestNode) -> Iterator[tuple[RpcServer, BitcoindClient]]:
    with serve_node(node) as pair:
        yield pair


def test_chain_info_and_block_lookups_agree(served: tuple[RpcServer, BitcoindClient]) -> None:
    _, client = served
    info = client.get_blockchain_info()
    assert info["chain"] == "regtest" and info["blocks"] == client.get_block_count() == 110
    best = client.get_best_block_hash()
    assert client.get_block_hash(110) == best == info["bestblockhash"]
    block = client.get_block(best, 1)
    assert block["height"] == 110 and len(block["tx"]) == 1
    assert client.get_block(best, 0)[:80].hex() == client.call("getblockheader", best, False)


def test_wallet_pays_and_the_payment_shows_everywhere(
    served: tuple[RpcServer, BitcoindClient],
) -> None:
    _, client = served
    address = client.get_new_address()
    balance = client.get_balance()
    assert balance == 10 * 50 * COIN
    txid = client.send_to_address(address, 150_000_000)
    assert txid in client.get_raw_mempool()
    entry = client.get_mempool_entry(txid)
    assert entry.fee_sat > 0 and entry.vsize > 0
    tx = client.get_raw_transaction(txid)
    vout = next(i for i, o in enumerate(tx.outputs) if o.value == 150_000_000)
    assert client.get_tx_out(txid, vout).confirmations == 0  # type: ignore[union-attr]
    client.generate_to_address(1, address)
    out = client.get_tx_out(txid, vout)
    assert out is not None and out.confirmations == 1 and out.amount_sat == 150_000_000
    assert any(u.outpoint.txid_hex == txid for u in client.list_unspent())


def test_invalid_transaction_is_refused_like_bitcoind_and_the_node_keeps_serving(
    node: RegtestNode, served: tuple[RpcServer, BitcoindClient]
) -> None:
    _, client = served
    info = TaprootSpendInfo(KEY.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    bad = keypath_spend(
        info,
        KEY,
        prevout,
        TxOut(COIN + 1, spent.script_pubkey),
        (TxOut(COIN - 500, info.script_pubkey),),
    )
    with pytest.raises(RpcError) as exc:
        client.send_raw_transaction(bad)
    assert exc.value.code == RpcError.RPC_VERIFY_REJECTED
    assert exc.value.message.startswith("mandatory-script-verify-flag-failed")
    with pytest.raises(RpcError) as garbage:
        client.call("sendrawtransaction", "00ff")
    assert garbage.value.code == RpcError.RPC_DESERIALIZATION_ERROR
    with pytest.raises(RpcError) as unknown:
        client.call("getnothing")
    assert unknown.value.code == RpcError.RPC_METHOD_NOT_FOUND
    assert client.get_block_count() == node.height


def test_testmempoolaccept_reports_the_reject_reason(
    node: RegtestNode, served: tuple[RpcServer, BitcoindClient]
) -> None:
    _, client = served
    info = TaprootSpendInfo(KEY.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    cheap = keypath_spend(info, KEY, prevout, spent, (TxOut(COIN - 10, info.script_pubkey),))
    good = keypath_spend(info, KEY, prevout, spent, (TxOut(COIN - 1000, info.script_pubkey),))
    (refused,) = client.test_mempool_accept([cheap])
    assert refused.allowed is False and refused.reject_reason == "min relay fee not met"
    (allowed,) = client.test_mempool_accept([good])
    assert allowed.allowed is True and allowed.fee_sat == 1000
    assert good.txid_hex not in client.get_raw_mempool()


def test_submitpackage_carries_a_zero_fee_parent_through_its_anchor(
    node: RegtestNode, served: tuple[RpcServer, BitcoindClient]
) -> None:
    _, client = served
    info = TaprootSpendInfo(KEY.xonly_public_key)
    prevout, spent = fund(node, info.script_pubkey, COIN)
    parent = keypath_spend(
        info,
        KEY,
        prevout,
        spent,
        (TxOut(COIN, info.script_pubkey), TxOut(0, p2a_script())),
        version=3,
    )
    coin = max(node.spendable(min_conf=1), key=lambda c: c.output.value)
    child = node.wallet.sign(
        Transaction(
            3,
            (TxIn(parent.outpoint(1)), TxIn(coin.outpoint)),
            (TxOut(coin.output.value - 2000, MINER),),
        ),
        [parent.outputs[1], coin.output],
    )
    result = client.submit_package([parent, child])
    assert result.success, result
    assert set(result.tx_results) == {parent.wtxid_hex, child.wtxid_hex}
    assert {parent.txid_hex, child.txid_hex} <= set(client.get_raw_mempool())


def test_wrong_password_gets_401_and_no_body(served: tuple[RpcServer, BitcoindClient]) -> None:
    server, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"method": "getblockcount", "params": [], "id": 1})
    conn.request("POST", "/", body, {"Authorization": "Basic X19jb29raWVfXzp3cm9uZw=="})
    response = conn.getresponse()
    assert response.status == 401
    assert response.read() == b""


def test_funded_transaction_keeps_its_txid_through_signing_and_broadcast(
    served: tuple[RpcServer, BitcoindClient],
) -> None:
    _, client = served
    target = TaprootSpendInfo(KEY.xonly_public_key).script_pubkey
    unsigned = client.fund_transaction([TxOut(3 * COIN, target)])
    assert unsigned.outputs[0] == TxOut(3 * COIN, target) and unsigned.inputs
    signed = client.sign_with_wallet(unsigned)
    assert signed.txid == unsigned.txid  # so a factory can be signed before funding goes out
    assert client.send_raw_transaction(signed) == unsigned.txid_hex
