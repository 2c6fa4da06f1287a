"""bitcoind reply shapes (Bitcoin Core v28-v30), for the client's parsing tests.

Kept as JSON *text* so amounts keep bitcoind's exact spelling
(`50.00000000`, never a float). Field names and nesting follow Core's RPC
help (`src/rpc/blockchain.cpp`, `src/rpc/mempool.cpp`,
`src/rpc/rawtransaction.cpp`, `src/wallet/rpc/coins.cpp`); values that must
line up with a transaction the test built are `$placeholders`, filled by
`render`. The genesis transaction and block are mainnet's, so their hashes
check themselves.
"""

from __future__ import annotations

from string import Template
from typing import Any

from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.amounts import decode_json

GENESIS_TX_HEX = (
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04"
    "ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e20"
    "6272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01"
    "000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4c"
    "ef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000"
)
GENESIS_TXID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
GENESIS_HEADER_HEX = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12"
    "b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_BLOCK_HEX = GENESIS_HEADER_HEX + "01" + GENESIS_TX_HEX
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"

BEST_HASH = "3bd3d7a7c1d9f0c3b06e07d1c6a1e0c0a0b8e4e4b9d7bb1f4f3a0e6d0a5f7c21"
P2WPKH_HEX = "00140a5b1a4f2c6ed5b5a4c0b6a3f4d2c7e8b9a1c2d3"
ADDRESS = "bcrt1qpfd353evam2mtfxqk63lf5k8azu6rsknyr6zrv"

GETBLOCKCHAININFO = """{
  "chain": "regtest",
  "blocks": 101,
  "headers": 101,
  "bestblockhash": "3bd3d7a7c1d9f0c3b06e07d1c6a1e0c0a0b8e4e4b9d7bb1f4f3a0e6d0a5f7c21",
  "bits": "207fffff",
  "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
  "difficulty": 4.656542373906925e-10,
  "time": 1735689600,
  "mediantime": 1735689599,
  "verificationprogress": 1,
  "initialblockdownload": false,
  "chainwork": "00000000000000000000000000000000000000000000000000000000000000cc",
  "size_on_disk": 30334,
  "pruned": false,
  "warnings": []
}"""

GETBLOCK_1 = """{
  "hash": "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
  "confirmations": 880000,
  "height": 0,
  "version": 1,
  "versionHex": "00000001",
  "merkleroot": "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b",
  "time": 1231006505,
  "mediantime": 1231006505,
  "nonce": 2083236893,
  "bits": "1d00ffff",
  "target": "00000000ffff0000000000000000000000000000000000000000000000000000",
  "difficulty": 1,
  "chainwork": "0000000000000000000000000000000000000000000000000000000100010001",
  "nTx": 1,
  "nextblockhash": "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048",
  "strippedsize": 285,
  "size": 285,
  "weight": 1140,
  "tx": ["4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"]
}"""

GETRAWTRANSACTION_1 = Template("""{
  "txid": "$txid",
  "hash": "$wtxid",
  "version": 2,
  "size": 191,
  "vsize": 110,
  "weight": 437,
  "locktime": 0,
  "vin": [],
  "vout": [],
  "hex": "$hex",
  "blockhash": "$blockhash",
  "confirmations": 3,
  "time": 1735689600,
  "blocktime": 1735689600
}""")

GETRAWTRANSACTION_1_MEMPOOL = Template("""{
  "txid": "$txid",
  "hash": "$wtxid",
  "version": 2,
  "size": 191,
  "vsize": 110,
  "weight": 437,
  "locktime": 0,
  "vin": [],
  "vout": [],
  "hex": "$hex"
}""")

GETTXOUT = Template("""{
  "bestblock": "$bestblock",
  "confirmations": 101,
  "value": 50.00000000,
  "scriptPubKey": {
    "asm": "0 0a5b1a4f2c6ed5b5a4c0b6a3f4d2c7e8b9a1c2d3",
    "desc": "addr(bcrt1qpfd353evam2mtfxqk63lf5k8azu6rsknyr6zrv)#8dq8h2dm",
    "hex": "00140a5b1a4f2c6ed5b5a4c0b6a3f4d2c7e8b9a1c2d3",
    "address": "bcrt1qpfd353evam2mtfxqk63lf5k8azu6rsknyr6zrv",
    "type": "witness_v0_keyhash"
  },
  "coinbase": true
}""")

TESTMEMPOOLACCEPT_ALLOWED = Template("""{
  "txid": "$txid",
  "wtxid": "$wtxid",
  "allowed": true,
  "vsize": 110,
  "fees": {
    "base": 0.00001000,
    "effective-feerate": 0.00009090,
    "effective-includes": ["$wtxid"]
  }
}""")

TESTMEMPOOLACCEPT_REJECTED = Template("""{
  "txid": "$txid",
  "wtxid": "$wtxid",
  "allowed": false,
  "reject-reason": "min relay fee not met",
  "reject-details": "min relay fee not met, 0 < 110"
}""")

TESTMEMPOOLACCEPT_UNVALIDATED = Template("""{
  "txid": "$txid",
  "wtxid": "$wtxid",
  "package-error": "package-not-child-with-unconfirmed-parents"
}""")

SUBMITPACKAGE = Template("""{
  "package_msg": "success",
  "tx-results": {
    "$parent_wtxid": {
      "txid": "$parent_txid",
      "vsize": 152,
      "fees": {
        "base": 0.00000000,
        "effective-feerate": 0.00002500,
        "effective-includes": ["$parent_wtxid", "$child_wtxid"]
      }
    },
    "$child_wtxid": {
      "txid": "$child_txid",
      "vsize": 148,
      "fees": {
        "base": 0.00007500,
        "effective-feerate": 0.00002500,
        "effective-includes": ["$parent_wtxid", "$child_wtxid"]
      }
    }
  },
  "replaced-transactions": []
}""")

SUBMITPACKAGE_FAILED = Template("""{
  "package_msg": "transaction failed",
  "tx-results": {
    "$parent_wtxid": {
      "txid": "$parent_txid",
      "error": "min relay fee not met, 0 < 152"
    },
    "$child_wtxid": {
      "txid": "$child_txid",
      "error": "bad-txns-inputs-missingorspent"
    }
  },
  "replaced-transactions": []
}""")

GETMEMPOOLENTRY = Template("""{
  "vsize": 110,
  "weight": 437,
  "time": 1735689600,
  "height": 101,
  "descendantcount": 1,
  "descendantsize": 110,
  "ancestorcount": 1,
  "ancestorsize": 110,
  "wtxid": "$wtxid",
  "fees": {
    "base": 0.00001000,
    "modified": 0.00001000,
    "ancestor": 0.00001000,
    "descendant": 0.00001000
  },
  "depends": [],
  "spentby": [],
  "bip125-replaceable": true,
  "unbroadcast": true
}""")

ESTIMATESMARTFEE = '{"feerate": 0.00001000, "blocks": 2}'
ESTIMATESMARTFEE_NONE = '{"errors": ["Insufficient data or no feerate found"], "blocks": 0}'

LISTUNSPENT = Template("""[
  {
    "txid": "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b",
    "vout": 0,
    "address": "bcrt1qpfd353evam2mtfxqk63lf5k8azu6rsknyr6zrv",
    "label": "",
    "scriptPubKey": "00140a5b1a4f2c6ed5b5a4c0b6a3f4d2c7e8b9a1c2d3",
    "amount": 50.00000000,
    "confirmations": 101,
    "spendable": true,
    "solvable": true,
    "desc": "$desc",
    "parent_descs": ["$parent_desc"],
    "safe": true
  },
  {
    "txid": "1111111111111111111111111111111111111111111111111111111111111111",
    "vout": 1,
    "address": "bcrt1qpfd353evam2mtfxqk63lf5k8azu6rsknyr6zrv",
    "scriptPubKey": "00140a5b1a4f2c6ed5b5a4c0b6a3f4d2c7e8b9a1c2d3",
    "amount": 0.00012345,
    "confirmations": 0,
    "spendable": true,
    "solvable": true,
    "safe": false
  }
]""").substitute(
    desc="wpkh([d34db33f/84h/1h/0h/0/0]"
    "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5)#8zl0zxma",
    parent_desc="wpkh(tpubD6NzVbkrYhZ4WaWSyoBvQwbpLkojyoTZPRsgXELWz3Popb3qkjcJyJUGLnL4qHHoQvao"
    "8ESaAstxYSnhyswJ76uZPStJRJCTKvosUCJZL5B/84h/1h/0h/0/*)#cjjspncu",
)

GETBALANCE = "149.99998590"


def render(template: Template | str, **values: str) -> Any:
    """A fixture as bitcoind's decoded JSON (Decimal amounts)."""
    text = template.substitute(values) if isinstance(template, Template) else template
    return decode_json(text)


def tx_values(tx: Transaction) -> dict[str, str]:
    return {"txid": tx.txid_hex, "wtxid": tx.wtxid_hex, "hex": tx.hex()}


def make_tx(seed: int, *, locktime: int = 0, fee_marker: int = 49_999_000) -> Transaction:
    """A small segwit transaction (txid != wtxid); `seed` makes it unique."""
    prevout = OutPoint(bytes([seed % 256]) * 32, seed)
    txin = TxIn(prevout, b"", 0xFFFFFFFD, (bytes([seed % 256]) * 64,))
    return Transaction(2, (txin,), (TxOut(fee_marker, bytes.fromhex(P2WPKH_HEX)),), locktime)
