"""The chain API every daemon uses (`ChainSource`) and its bitcoind JSON-RPC client.

There is one client: the same `BitcoindClient` talks to the embedded regtest
node (`superscalar chain`) and to a real `bitcoind` on signet, testnet4 or
mainnet, so everything here speaks bitcoind's own JSON field names and error
codes. Results come back as this project's types — `Transaction`, `OutPoint`,
`TxOut`, integer satoshis — never as floats or loose dicts the caller must
re-validate; a reply that does not have bitcoind's shape raises
`ChainResponseError` instead of leaking a half-parsed value.

Failures are three distinct things a daemon reacts to differently:

- `RpcError` (from `chain/rpc.py`, the same class the server raises): the node
  answered and said no, with bitcoind's code and message (a rejected
  transaction is `RPC_VERIFY_REJECTED`, -26).
- `ChainUnavailable`: no answer at all (connection refused, timed out, dropped,
  bad credentials, server busy). Retry later; the chain did not say no.
- `ChainResponseError`: an answer that is not bitcoind-shaped. A bug or a
  wrong endpoint; do not retry blindly.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import select
import socket
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, overload, runtime_checkable

from superscalar.bitcoin.tx import OutPoint, Transaction, TxError, TxOut
from superscalar.chain.amounts import AmountError, btc_to_sat, decode_json, encode_json, sat_to_btc
from superscalar.chain.rpc import (
    HTTP_FORBIDDEN,
    HTTP_OK,
    HTTP_SERVICE_UNAVAILABLE,
    HTTP_UNAUTHORIZED,
    RpcError,
)

__all__ = [
    "DEFAULT_RPC_PORTS",
    "BitcoindClient",
    "ChainAuthError",
    "ChainResponseError",
    "ChainSource",
    "ChainUnavailable",
    "MempoolAcceptResult",
    "MempoolEntry",
    "PackageTxResult",
    "RawTransactionInfo",
    "RpcError",
    "SubmitPackageResult",
    "TxOutInfo",
    "Utxo",
]

DEFAULT_RPC_PORTS: dict[str, int] = {
    "main": 8332,
    "test": 18332,
    "testnet4": 48332,
    "signet": 38332,
    "regtest": 18443,
}
"""bitcoind's default `-rpcport` per chain (`chainparamsbase.cpp`)."""

_NETWORK_SUBDIRS: dict[str, str] = {
    "main": "",
    "test": "testnet3",
    "testnet4": "testnet4",
    "signet": "signet",
    "regtest": "regtest",
}

# Calls that may be sent a second time if a reused connection dropped before
# the answer arrived: reads, and submissions of a fixed transaction (sending
# the same transaction twice is harmless). Everything else — generating
# blocks, paying from the wallet — is sent again only if it provably never
# left this process.
_RETRY_SAFE = frozenset(
    {
        "getblockchaininfo",
        "getblockcount",
        "getblockhash",
        "getbestblockhash",
        "getblock",
        "getblockheader",
        "getrawtransaction",
        "gettxout",
        "sendrawtransaction",
        "testmempoolaccept",
        "submitpackage",
        "getmempoolentry",
        "getrawmempool",
        "getmempoolinfo",
        "estimatesmartfee",
        "listunspent",
        "getbalance",
        "getnetworkinfo",
        "getwalletinfo",
        "uptime",
    }
)


class ChainUnavailable(Exception):
    """The chain backend gave no answer (refused, timed out, dropped, busy,
    or refused our credentials). Nothing was decided; try again later."""


class ChainAuthError(ChainUnavailable):
    """The server refused our credentials (HTTP 401/403): a stale cookie,
    a wrong rpcuser/rpcpassword, or a method outside `-rpcwhitelist`."""


class ChainResponseError(Exception):
    """The server answered, but not the way bitcoind answers (not JSON, a
    missing field, a wrong type, a transaction that does not match its id)."""


# -- typed results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxOutInfo:
    """An unspent output, as `gettxout` reports it."""

    outpoint: OutPoint
    amount_sat: int
    script_pubkey: bytes
    confirmations: int
    """0 for an output of a mempool transaction."""
    coinbase: bool
    best_block: str
    address: str | None = None

    @property
    def txout(self) -> TxOut:
        return TxOut(self.amount_sat, self.script_pubkey)


@dataclass(frozen=True, slots=True)
class RawTransactionInfo:
    """`getrawtransaction` with verbosity: the transaction and where it is."""

    tx: Transaction
    confirmations: int
    """0 while in the mempool."""
    blockhash: str | None = None
    blocktime: int | None = None
    time: int | None = None

    @property
    def in_mempool(self) -> bool:
        return self.blockhash is None


@dataclass(frozen=True, slots=True)
class MempoolAcceptResult:
    """One entry of `testmempoolaccept`. `allowed` is None when bitcoind did
    not fully validate this transaction because another in the list failed."""

    txid: str
    wtxid: str
    allowed: bool | None
    vsize: int | None = None
    fee_sat: int | None = None
    effective_feerate_sat_per_kvb: int | None = None
    effective_includes: tuple[str, ...] = ()
    reject_reason: str | None = None
    reject_details: str | None = None
    package_error: str | None = None


@dataclass(frozen=True, slots=True)
class PackageTxResult:
    """One transaction's entry in `submitpackage`'s `tx-results`."""

    wtxid: str
    txid: str
    other_wtxid: str | None = None
    """Set when a same-txid, different-witness transaction was already in the
    mempool; the submitted one was then ignored."""
    vsize: int | None = None
    fee_sat: int | None = None
    effective_feerate_sat_per_kvb: int | None = None
    effective_includes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def in_mempool(self) -> bool:
        """Accepted now, or already there (possibly with another witness)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class SubmitPackageResult:
    """`submitpackage`'s answer. `results` keeps bitcoind's order; look one up
    by wtxid with `tx_results`."""

    package_msg: str
    results: tuple[PackageTxResult, ...]
    replaced_transactions: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        """bitcoind's own verdict: every transaction is in the mempool."""
        return self.package_msg == "success"

    @property
    def tx_results(self) -> dict[str, PackageTxResult]:
        return {r.wtxid: r for r in self.results}


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    """`getmempoolentry`. Ancestor/descendant and BIP125 fields are None when
    the server's version does not report them."""

    txid: str
    wtxid: str
    vsize: int
    weight: int
    time: int
    height: int
    fee_sat: int
    modified_fee_sat: int
    depends: tuple[str, ...] = ()
    spent_by: tuple[str, ...] = ()
    ancestor_count: int | None = None
    ancestor_size: int | None = None
    ancestor_fees_sat: int | None = None
    descendant_count: int | None = None
    descendant_size: int | None = None
    descendant_fees_sat: int | None = None
    bip125_replaceable: bool | None = None
    unbroadcast: bool | None = None


@dataclass(frozen=True, slots=True)
class Utxo:
    """A wallet coin, as `listunspent` reports it."""

    outpoint: OutPoint
    amount_sat: int
    script_pubkey: bytes
    confirmations: int
    spendable: bool
    solvable: bool
    safe: bool
    address: str | None = None
    desc: str | None = None

    @property
    def txout(self) -> TxOut:
        return TxOut(self.amount_sat, self.script_pubkey)


# -- the protocol ----------------------------------------------------------------------


@runtime_checkable
class ChainSource(Protocol):
    """What a daemon may ask of the chain. Amounts are satoshis, fee rates are
    sat/kvB (bitcoind's unit, times 1e8), hashes are display-order hex."""

    def get_blockchain_info(self) -> dict[str, Any]: ...

    def get_block_count(self) -> int: ...

    def get_block_hash(self, height: int) -> str: ...

    def get_best_block_hash(self) -> str: ...

    @overload
    def get_block(self, blockhash: str, verbosity: Literal[0]) -> bytes: ...
    @overload
    def get_block(self, blockhash: str, verbosity: Literal[1, 2, 3] = 1) -> dict[str, Any]: ...
    def get_block(self, blockhash: str, verbosity: int = 1) -> dict[str, Any] | bytes: ...

    def get_raw_transaction(self, txid: str, blockhash: str | None = None) -> Transaction: ...

    def get_raw_transaction_verbose(
        self, txid: str, blockhash: str | None = None
    ) -> RawTransactionInfo: ...

    def get_tx_out(
        self, txid: str, vout: int, include_mempool: bool = True
    ) -> TxOutInfo | None: ...

    def send_raw_transaction(
        self, tx: Transaction, max_fee_rate_sat_per_kvb: int | None = None
    ) -> str: ...

    def test_mempool_accept(
        self, txs: Sequence[Transaction], max_fee_rate_sat_per_kvb: int | None = None
    ) -> list[MempoolAcceptResult]: ...

    def submit_package(
        self, txs: Sequence[Transaction], max_fee_rate_sat_per_kvb: int | None = None
    ) -> SubmitPackageResult: ...

    def get_mempool_entry(self, txid: str) -> MempoolEntry: ...

    def get_raw_mempool(self) -> list[str]: ...

    def estimate_smart_fee(
        self, conf_target: int, estimate_mode: str | None = None
    ) -> int | None: ...

    def generate_to_address(self, nblocks: int, address: str) -> list[str]: ...

    def get_new_address(self, label: str = "", address_type: str | None = None) -> str: ...

    def send_to_address(self, address: str, amount_sat: int) -> str: ...

    def list_unspent(self, min_conf: int = 1, max_conf: int = 9_999_999) -> list[Utxo]: ...

    def get_balance(self) -> int: ...

    def fund_transaction(self, outputs: Sequence[TxOut]) -> Transaction: ...

    def sign_with_wallet(
        self, tx: Transaction, prevouts: Mapping[OutPoint, TxOut] | None = None
    ) -> Transaction: ...


# -- response parsing -------------------------------------------------------------------


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChainResponseError(f"{what}: expected a JSON object, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _field(obj: dict[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise ChainResponseError(f"{what}: missing field {key!r}")
    return obj[key]


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChainResponseError(f"{what}: expected an integer, got {_describe(value)}")
    return value


def _as_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ChainResponseError(f"{what}: expected a string, got {_describe(value)}")
    return value


def _as_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ChainResponseError(f"{what}: expected true/false, got {_describe(value)}")
    return value


def _as_hash(value: Any, what: str) -> str:
    text = _as_str(value, what)
    if len(text) != 64 or not all(c in "0123456789abcdef" for c in text):
        raise ChainResponseError(f"{what}: expected 64 lowercase hex digits, got {_describe(text)}")
    return text


def _as_hex(value: Any, what: str) -> bytes:
    text = _as_str(value, what)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ChainResponseError(f"{what}: not hex: {_describe(text)}") from None


def _as_amount(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ChainResponseError(f"{what}: expected a BTC amount, got {_describe(value)}")
    try:
        return btc_to_sat(value)
    except AmountError as exc:
        raise ChainResponseError(f"{what}: {exc}") from None


def _opt_int(obj: dict[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    return None if value is None else _as_int(value, f"{what}.{key}")


def _opt_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _as_str(value, f"{what}.{key}")


def _opt_bool(obj: dict[str, Any], key: str, what: str) -> bool | None:
    value = obj.get(key)
    return None if value is None else _as_bool(value, f"{what}.{key}")


def _opt_amount(obj: dict[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    return None if value is None else _as_amount(value, f"{what}.{key}")


def _hash_list(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ChainResponseError(f"{what}: expected an array, got {_describe(value)}")
    return tuple(_as_hash(item, f"{what}[{i}]") for i, item in enumerate(value))


def _decode_tx(hex_text: Any, what: str) -> Transaction:
    raw = _as_hex(hex_text, what)
    try:
        return Transaction.from_bytes(raw)
    except TxError as exc:
        raise ChainResponseError(f"{what}: not a transaction: {exc}") from None


def _check_txid(tx: Transaction, txid: str, what: str) -> Transaction:
    if tx.txid_hex != txid.lower():
        raise ChainResponseError(f"{what}: asked for {txid}, got transaction {tx.txid_hex}")
    return tx


def _fee_rate_param(sat_per_kvb: int | None) -> Decimal | None:
    return None if sat_per_kvb is None else sat_to_btc(sat_per_kvb)


def _parse_accept(value: Any, what: str) -> MempoolAcceptResult:
    obj = _obj(value, what)
    fees = obj.get("fees")
    fee_sat = feerate = None
    includes: tuple[str, ...] = ()
    if fees is not None:
        fees = _obj(fees, f"{what}.fees")
        fee_sat = _as_amount(_field(fees, "base", f"{what}.fees"), f"{what}.fees.base")
        feerate = _opt_amount(fees, "effective-feerate", f"{what}.fees")
        includes = _hash_list(fees.get("effective-includes"), f"{what}.fees.effective-includes")
    return MempoolAcceptResult(
        txid=_as_hash(_field(obj, "txid", what), f"{what}.txid"),
        wtxid=_as_hash(_field(obj, "wtxid", what), f"{what}.wtxid"),
        allowed=_opt_bool(obj, "allowed", what),
        vsize=_opt_int(obj, "vsize", what),
        fee_sat=fee_sat,
        effective_feerate_sat_per_kvb=feerate,
        effective_includes=includes,
        reject_reason=_opt_str(obj, "reject-reason", what),
        reject_details=_opt_str(obj, "reject-details", what),
        package_error=_opt_str(obj, "package-error", what),
    )


def _parse_package_tx(wtxid: str, value: Any, what: str) -> PackageTxResult:
    obj = _obj(value, what)
    fees = obj.get("fees")
    fee_sat = feerate = None
    includes: tuple[str, ...] = ()
    if fees is not None:
        fees = _obj(fees, f"{what}.fees")
        fee_sat = _as_amount(_field(fees, "base", f"{what}.fees"), f"{what}.fees.base")
        feerate = _opt_amount(fees, "effective-feerate", f"{what}.fees")
        includes = _hash_list(fees.get("effective-includes"), f"{what}.fees.effective-includes")
    other = obj.get("other-wtxid")
    return PackageTxResult(
        wtxid=_as_hash(wtxid, f"{what} key"),
        txid=_as_hash(_field(obj, "txid", what), f"{what}.txid"),
        other_wtxid=None if other is None else _as_hash(other, f"{what}.other-wtxid"),
        vsize=_opt_int(obj, "vsize", what),
        fee_sat=fee_sat,
        effective_feerate_sat_per_kvb=feerate,
        effective_includes=includes,
        error=_opt_str(obj, "error", what),
    )


def _parse_mempool_entry(txid: str, value: Any) -> MempoolEntry:
    what = "getmempoolentry"
    obj = _obj(value, what)
    fees = _obj(_field(obj, "fees", what), f"{what}.fees")
    base = _as_amount(_field(fees, "base", f"{what}.fees"), f"{what}.fees.base")
    modified = _opt_amount(fees, "modified", f"{what}.fees")
    return MempoolEntry(
        txid=txid,
        wtxid=_as_hash(_field(obj, "wtxid", what), f"{what}.wtxid"),
        vsize=_as_int(_field(obj, "vsize", what), f"{what}.vsize"),
        weight=_as_int(_field(obj, "weight", what), f"{what}.weight"),
        time=_as_int(_field(obj, "time", what), f"{what}.time"),
        height=_as_int(_field(obj, "height", what), f"{what}.height"),
        fee_sat=base,
        modified_fee_sat=base if modified is None else modified,
        depends=_hash_list(obj.get("depends"), f"{what}.depends"),
        spent_by=_hash_list(obj.get("spentby"), f"{what}.spentby"),
        ancestor_count=_opt_int(obj, "ancestorcount", what),
        ancestor_size=_opt_int(obj, "ancestorsize", what),
        ancestor_fees_sat=_opt_amount(fees, "ancestor", f"{what}.fees"),
        descendant_count=_opt_int(obj, "descendantcount", what),
        descendant_size=_opt_int(obj, "descendantsize", what),
        descendant_fees_sat=_opt_amount(fees, "descendant", f"{what}.fees"),
        bip125_replaceable=_opt_bool(obj, "bip125-replaceable", what),
        unbroadcast=_opt_bool(obj, "unbroadcast", what),
    )


def _parse_utxo(value: Any, what: str) -> Utxo:
    obj = _obj(value, what)
    txid = _as_hash(_field(obj, "txid", what), f"{what}.txid")
    vout = _as_int(_field(obj, "vout", what), f"{what}.vout")
    try:
        outpoint = OutPoint.from_txid_hex(txid, vout)
    except TxError as exc:
        raise ChainResponseError(f"{what}: {exc}") from None
    return Utxo(
        outpoint=outpoint,
        amount_sat=_as_amount(_field(obj, "amount", what), f"{what}.amount"),
        script_pubkey=_as_hex(_field(obj, "scriptPubKey", what), f"{what}.scriptPubKey"),
        confirmations=_as_int(_field(obj, "confirmations", what), f"{what}.confirmations"),
        spendable=bool(_opt_bool(obj, "spendable", what)),
        solvable=bool(_opt_bool(obj, "solvable", what)),
        safe=_opt_bool(obj, "safe", what) is not False,
        address=_opt_str(obj, "address", what),
        desc=_opt_str(obj, "desc", what),
    )


# -- the client ------------------------------------------------------------------------------


def _is_dropped(sock: socket.socket) -> bool:
    """True if an idle keep-alive socket was closed by the server: with no
    request outstanding it is readable only at EOF (or with garbage)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _read_cookie(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ChainUnavailable(
            f"cannot read RPC cookie {path}: {exc.strerror or exc} (is the node running?)"
        ) from None
    user, sep, password = text.splitlines()[0].partition(":") if text else ("", "", "")
    if not sep:
        raise ChainAuthError(f"RPC cookie {path} is not in user:password form")
    return user, password


class BitcoindClient:
    """`ChainSource` over bitcoind's JSON-RPC (HTTP/1.1, keep-alive).

    Auth is a cookie file (re-read when the server answers 401, because a
    restarted node writes a new one), or `user`/`password`, or credentials in
    the URL. Each thread keeps its own persistent connection; a connection the
    server closed while idle is noticed before use and replaced. A call that
    fails in transit is sent once more on a fresh connection when that cannot
    do harm (see `_RETRY_SAFE`); otherwise it raises `ChainUnavailable`.
    Requests are JSON-RPC 2.0, and legacy 1.0 replies (bitcoind < 28: errors
    with HTTP 500/404) are understood too.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8332/",
        *,
        cookie_file: str | Path | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        wallet: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"bitcoind RPC URL must be http://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"bitcoind RPC URL has no host: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_RPC_PORTS["main"]
        path = parts.path or "/"
        if wallet is not None:
            path = "/wallet/" + urllib.parse.quote(wallet, safe="")
        self.path = path
        if user is None and parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        if cookie_file is None and password is None:
            raise ValueError("BitcoindClient needs cookie_file or user/password")
        self.cookie_file = Path(cookie_file) if cookie_file is not None else None
        self._user = user or ""
        self._password = password
        self.timeout = timeout
        self._auth_header: str | None = None
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[http.client.HTTPConnection] = set()

    @classmethod
    def from_datadir(
        cls,
        datadir: str | Path | None = None,
        network: str = "main",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout: float = 30.0,
        wallet: str | None = None,
    ) -> BitcoindClient:
        """Connect as `bitcoin-cli` would: cookie in `<datadir>/<chain>/.cookie`
        (default datadir `~/.bitcoin`), default port for `network` (one of
        `DEFAULT_RPC_PORTS`)."""
        if network not in DEFAULT_RPC_PORTS:
            raise ValueError(f"unknown network {network!r}; one of {sorted(DEFAULT_RPC_PORTS)}")
        base = Path(datadir) if datadir is not None else Path.home() / ".bitcoin"
        cookie = base / _NETWORK_SUBDIRS[network] / ".cookie"
        url = f"http://{host}:{port or DEFAULT_RPC_PORTS[network]}/"
        return cls(url, cookie_file=cookie, timeout=timeout, wallet=wallet)

    def __repr__(self) -> str:
        return f"BitcoindClient(http://{self.host}:{self.port}{self.path})"

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every thread's connection (each reopens on its next call)."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

    def __enter__(self) -> BitcoindClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _credentials(self, refresh: bool = False) -> str:
        if self._auth_header is None or refresh:
            if self.cookie_file is not None:
                user, password = _read_cookie(self.cookie_file)
            else:
                user, password = self._user, self._password or ""
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._auth_header = f"Basic {token}"
        return self._auth_header

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it is new (never used)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn not in self._connections:
            conn = None  # closed by close()
        if conn is not None and conn.sock is not None and _is_dropped(conn.sock):
            conn.close()
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
            return conn, True
        return conn, conn.sock is None

    def _unavailable(self, what: str, exc: BaseException) -> ChainUnavailable:
        return ChainUnavailable(
            f"bitcoind JSON-RPC at {self.host}:{self.port} unavailable: {what} "
            f"({type(exc).__name__}: {exc})"
        )

    def _post(self, method: str, body: bytes, auth: str) -> tuple[int, bytes]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": auth,
            "Accept": "application/json",
        }
        for attempt in (1, 2):
            conn, fresh = self._connection()
            try:
                conn.request("POST", self.path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                # Not (completely) sent, so the server cannot have acted on it.
                conn.close()
                if attempt == 1:
                    continue
                raise self._unavailable("cannot send request", exc) from exc
            try:
                response = conn.getresponse()
                data = response.read()
            except TimeoutError as exc:
                conn.close()
                raise self._unavailable(
                    f"no answer to {method} within {self.timeout:g} s (outcome unknown)", exc
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if attempt == 1 and not fresh and method in _RETRY_SAFE:
                    continue
                raise self._unavailable(f"connection lost during {method}", exc) from exc
            return response.status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, method: str, *params: Any) -> Any:
        """Call `method` with positional `params`; return bitcoind's `result`.

        Params and result are JSON values; amounts travel as `Decimal` (send
        `sat_to_btc(x)`, read with `btc_to_sat`). Raises `RpcError` with
        bitcoind's code and message, `ChainUnavailable`, or `ChainResponseError`.
        """
        return self._call(method, list(params))

    def call_named(self, method: str, **params: Any) -> Any:
        """Like `call`, with named params (bitcoind maps names onto positions)."""
        return self._call(method, params)

    def _call(self, method: str, params: list[Any] | dict[str, Any]) -> Any:
        request_id = next(self._ids)
        body = encode_json(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        ).encode()
        status, data = self._post(method, body, self._credentials())
        if status == HTTP_UNAUTHORIZED and self.cookie_file is not None:
            # A restarted node writes a fresh cookie: read it again, once.
            status, data = self._post(method, body, self._credentials(refresh=True))
        if status == HTTP_UNAUTHORIZED:
            source = f"cookie {self.cookie_file}" if self.cookie_file else "rpcuser/rpcpassword"
            raise ChainAuthError(
                f"bitcoind at {self.host}:{self.port} refused our credentials ({source})"
            )
        if status == HTTP_FORBIDDEN:
            raise ChainAuthError(f"bitcoind at {self.host}:{self.port} forbids {method} to us")
        if status == HTTP_SERVICE_UNAVAILABLE:
            text = data.decode(errors="replace").strip()
            raise ChainUnavailable(f"bitcoind at {self.host}:{self.port} is busy: {text}")
        try:
            reply = decode_json(data)
        except ValueError:
            raise ChainResponseError(
                f"{method}: HTTP {status} with a body that is not JSON: {_describe(data)}"
            ) from None
        reply = _obj(reply, f"{method} reply")
        error = reply.get("error")
        if error is not None:
            error = _obj(error, f"{method} error")
            code = _as_int(error.get("code"), f"{method} error.code")
            message = _as_str(error.get("message", ""), f"{method} error.message")
            raise RpcError(code, message)
        if status != HTTP_OK:
            raise ChainResponseError(f"{method}: HTTP {status} without an error object")
        if reply.get("id") != request_id:
            raise ChainResponseError(
                f"{method}: reply id {_describe(reply.get('id'))} != request id {request_id}"
            )
        if "result" not in reply:
            raise ChainResponseError(f"{method}: reply has no result")
        return reply["result"]

    # -- chain ----------------------------------------------------------------------------

    def get_blockchain_info(self) -> dict[str, Any]:
        info = _obj(self.call("getblockchaininfo"), "getblockchaininfo")
        for key in ("chain", "blocks", "bestblockhash"):
            _field(info, key, "getblockchaininfo")
        return info

    def get_block_count(self) -> int:
        return _as_int(self.call("getblockcount"), "getblockcount")

    def get_block_hash(self, height: int) -> str:
        return _as_hash(self.call("getblockhash", height), "getblockhash")

    def get_best_block_hash(self) -> str:
        return _as_hash(self.call("getbestblockhash"), "getbestblockhash")

    @overload
    def get_block(self, blockhash: str, verbosity: Literal[0]) -> bytes: ...
    @overload
    def get_block(self, blockhash: str, verbosity: Literal[1, 2, 3] = 1) -> dict[str, Any]: ...
    def get_block(self, blockhash: str, verbosity: int = 1) -> dict[str, Any] | bytes:
        """Verbosity 0: the serialized block; 1: header fields and txids;
        2/3: with decoded transactions (bitcoind's dicts)."""
        result = self.call("getblock", blockhash, verbosity)
        if verbosity == 0:
            return _as_hex(result, "getblock")
        block = _obj(result, "getblock")
        if _as_hash(_field(block, "hash", "getblock"), "getblock.hash") != blockhash.lower():
            raise ChainResponseError(f"getblock: asked for {blockhash}, got {block['hash']}")
        return block

    # -- transactions ---------------------------------------------------------------------

    def get_raw_transaction(self, txid: str, blockhash: str | None = None) -> Transaction:
        params: list[Any] = [txid, 0] if blockhash is None else [txid, 0, blockhash]
        tx = _decode_tx(self.call("getrawtransaction", *params), "getrawtransaction")
        return _check_txid(tx, txid, "getrawtransaction")

    def get_raw_transaction_verbose(
        self, txid: str, blockhash: str | None = None
    ) -> RawTransactionInfo:
        params: list[Any] = [txid, 1] if blockhash is None else [txid, 1, blockhash]
        what = "getrawtransaction"
        obj = _obj(self.call("getrawtransaction", *params), what)
        tx = _check_txid(_decode_tx(_field(obj, "hex", what), f"{what}.hex"), txid, what)
        block = obj.get("blockhash")
        return RawTransactionInfo(
            tx=tx,
            confirmations=_opt_int(obj, "confirmations", what) or 0,
            blockhash=None if block is None else _as_hash(block, f"{what}.blockhash"),
            blocktime=_opt_int(obj, "blocktime", what),
            time=_opt_int(obj, "time", what),
        )

    def get_tx_out(self, txid: str, vout: int, include_mempool: bool = True) -> TxOutInfo | None:
        """The unspent output txid:vout, or None if it is spent or never existed."""
        result = self.call("gettxout", txid, vout, include_mempool)
        if result is None:
            return None
        what = "gettxout"
        obj = _obj(result, what)
        spk = _obj(_field(obj, "scriptPubKey", what), f"{what}.scriptPubKey")
        try:
            outpoint = OutPoint.from_txid_hex(txid, vout)
        except TxError as exc:
            raise ValueError(str(exc)) from None
        return TxOutInfo(
            outpoint=outpoint,
            amount_sat=_as_amount(_field(obj, "value", what), f"{what}.value"),
            script_pubkey=_as_hex(_field(spk, "hex", what), f"{what}.scriptPubKey.hex"),
            confirmations=_as_int(_field(obj, "confirmations", what), f"{what}.confirmations"),
            coinbase=_as_bool(_field(obj, "coinbase", what), f"{what}.coinbase"),
            best_block=_as_hash(_field(obj, "bestblock", what), f"{what}.bestblock"),
            address=_opt_str(spk, "address", f"{what}.scriptPubKey"),
        )

    def send_raw_transaction(
        self, tx: Transaction, max_fee_rate_sat_per_kvb: int | None = None
    ) -> str:
        """Broadcast; returns the txid. `max_fee_rate_sat_per_kvb=0` lifts
        bitcoind's absurd-fee guard (default 0.10 BTC/kvB)."""
        params: list[Any] = [tx.hex()]
        if max_fee_rate_sat_per_kvb is not None:
            params.append(_fee_rate_param(max_fee_rate_sat_per_kvb))
        txid = _as_hash(self.call("sendrawtransaction", *params), "sendrawtransaction")
        if txid != tx.txid_hex:
            raise ChainResponseError(f"sendrawtransaction: sent {tx.txid_hex}, got {txid}")
        return txid

    def test_mempool_accept(
        self, txs: Sequence[Transaction], max_fee_rate_sat_per_kvb: int | None = None
    ) -> list[MempoolAcceptResult]:
        params: list[Any] = [[tx.hex() for tx in txs]]
        if max_fee_rate_sat_per_kvb is not None:
            params.append(_fee_rate_param(max_fee_rate_sat_per_kvb))
        result = self.call("testmempoolaccept", *params)
        if not isinstance(result, list) or len(result) != len(txs):
            raise ChainResponseError(
                f"testmempoolaccept: expected {len(txs)} results, got {_describe(result)}"
            )
        parsed = [_parse_accept(r, f"testmempoolaccept[{i}]") for i, r in enumerate(result)]
        for tx, entry in zip(txs, parsed, strict=True):
            if entry.txid != tx.txid_hex:
                raise ChainResponseError(f"testmempoolaccept: result for {entry.txid} out of order")
        return parsed

    def submit_package(
        self, txs: Sequence[Transaction], max_fee_rate_sat_per_kvb: int | None = None
    ) -> SubmitPackageResult:
        """Submit parents + child (topologically sorted, child last)."""
        params: list[Any] = [[tx.hex() for tx in txs]]
        if max_fee_rate_sat_per_kvb is not None:
            params.append(_fee_rate_param(max_fee_rate_sat_per_kvb))
        what = "submitpackage"
        obj = _obj(self.call("submitpackage", *params), what)
        tx_results = _obj(_field(obj, "tx-results", what), f"{what}.tx-results")
        results = tuple(
            _parse_package_tx(wtxid, value, f"{what}.tx-results[{wtxid}]")
            for wtxid, value in tx_results.items()
        )
        return SubmitPackageResult(
            package_msg=_as_str(_field(obj, "package_msg", what), f"{what}.package_msg"),
            results=results,
            replaced_transactions=_hash_list(
                obj.get("replaced-transactions"), f"{what}.replaced-transactions"
            ),
        )

    def get_mempool_entry(self, txid: str) -> MempoolEntry:
        """Raises RpcError(RPC_INVALID_ADDRESS_OR_KEY) if txid is not in the mempool."""
        return _parse_mempool_entry(txid, self.call("getmempoolentry", txid))

    def get_raw_mempool(self) -> list[str]:
        return list(_hash_list(self.call("getrawmempool"), "getrawmempool"))

    def estimate_smart_fee(self, conf_target: int, estimate_mode: str | None = None) -> int | None:
        """Fee rate in sat/kvB for confirmation within `conf_target` blocks, or
        None when the node has no estimate (regtest, or too little data)."""
        params: list[Any] = [conf_target] if estimate_mode is None else [conf_target, estimate_mode]
        obj = _obj(self.call("estimatesmartfee", *params), "estimatesmartfee")
        return _opt_amount(obj, "feerate", "estimatesmartfee")

    # -- mining and wallet ----------------------------------------------------------------

    def generate_to_address(self, nblocks: int, address: str) -> list[str]:
        result = self.call("generatetoaddress", nblocks, address)
        return list(_hash_list(result, "generatetoaddress"))

    def get_new_address(self, label: str = "", address_type: str | None = None) -> str:
        params: list[Any] = [label] if address_type is None else [label, address_type]
        return _as_str(self.call("getnewaddress", *params), "getnewaddress")

    def send_to_address(self, address: str, amount_sat: int) -> str:
        return _as_hash(
            self.call("sendtoaddress", address, sat_to_btc(amount_sat)), "sendtoaddress"
        )

    def list_unspent(self, min_conf: int = 1, max_conf: int = 9_999_999) -> list[Utxo]:
        result = self.call("listunspent", min_conf, max_conf)
        if not isinstance(result, list):
            raise ChainResponseError(f"listunspent: expected an array, got {_describe(result)}")
        return [_parse_utxo(item, f"listunspent[{i}]") for i, item in enumerate(result)]

    def get_balance(self) -> int:
        return _as_amount(self.call("getbalance"), "getbalance")

    def fund_transaction(self, outputs: Sequence[TxOut]) -> Transaction:
        """`fundrawtransaction` of a tx paying `outputs`: wallet inputs and change, unsigned.

        Its txid is final once signed (segwit), so a factory can be signed
        against this funding outpoint before the funding tx is broadcast.
        """
        draft = Transaction(2, (), tuple(outputs), 0)
        obj = _obj(self.call("fundrawtransaction", draft.hex()), "fundrawtransaction")
        return _decode_tx(obj.get("hex"), "fundrawtransaction")

    def sign_with_wallet(
        self, tx: Transaction, prevouts: Mapping[OutPoint, TxOut] | None = None
    ) -> Transaction:
        """`signrawtransactionwithwallet`; raises `ChainResponseError` if any input is unsigned.

        `prevouts` become `prevtxs`: inputs the node cannot know yet (a package parent's anchor).
        """
        params: list[Any] = [tx.hex()]
        if prevouts:
            params.append(
                [
                    {
                        "txid": op.txid_hex,
                        "vout": op.vout,
                        "scriptPubKey": out.script_pubkey.hex(),
                        "amount": sat_to_btc(out.value),
                    }
                    for op, out in prevouts.items()
                ]
            )
        obj = _obj(
            self.call("signrawtransactionwithwallet", *params), "signrawtransactionwithwallet"
        )
        signed = _decode_tx(obj.get("hex"), "signrawtransactionwithwallet")
        if obj.get("complete") is not True:
            raise ChainResponseError(
                f"signrawtransactionwithwallet: incomplete: {obj.get('errors')}"
            )
        return signed
