"""A bitcoind-compatible JSON-RPC server: errors, dispatch, auth and HTTP.

`superscalar chain` answers the same JSON-RPC a real `bitcoind` does, so the
one client in `chain/bitcoind.py` works unchanged against either. Everything a
client can observe is taken from Bitcoin Core (v28-v30: `src/httprpc.cpp`,
`src/rpc/request.cpp`, `src/rpc/server.cpp`, `src/rpc/protocol.h`,
`test/functional/interface_rpc.py`):

- JSON-RPC 1.0 (legacy, no `"jsonrpc"` field or `"jsonrpc": "1.0"`): every
  reply carries both `result` and `error`; a failed call answers HTTP 500,
  except `RPC_INVALID_REQUEST` (400) and `RPC_METHOD_NOT_FOUND` (404).
- JSON-RPC 2.0 (`"jsonrpc": "2.0"`): `result` *or* `error`, HTTP 200 even for
  RPC errors, and a request without `id` is a notification: executed, answered
  with 204 and no body.
- Batches (JSON arrays) always answer 200 (204 if every member was a
  notification); each member is judged on its own.
- Bad auth: 401 with `WWW-Authenticate: Basic realm="jsonrpc"`, an empty body
  and a 250 ms delay against guessing; non-POST: 405; unknown path: 404;
  body over the limit: 413; out of connection slots: 503.
- Params by position or by name (mapped onto the handler's signature,
  including Core's `"args"` escape hatch); a wrong count is `RPC_MISC_ERROR`
  with the method's usage, a wrong JSON type is `RPC_TYPE_ERROR` with Core's
  "Wrong type passed" text.

Handlers are plain callables; see `Dispatcher`. They run on the server's
connection threads, *concurrently*: serializing access to shared state (the
node takes one lock per call) is the caller's job, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import contextlib
import hashlib
import hmac
import inspect
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final

from superscalar.chain.amounts import decode_json, encode_json

__all__ = [
    "COOKIE_USER",
    "HTTP_BAD_METHOD",
    "HTTP_BAD_REQUEST",
    "HTTP_INTERNAL_SERVER_ERROR",
    "HTTP_NOT_FOUND",
    "HTTP_NO_CONTENT",
    "HTTP_OK",
    "HTTP_PAYLOAD_TOO_LARGE",
    "HTTP_SERVICE_UNAVAILABLE",
    "HTTP_UNAUTHORIZED",
    "MAX_BODY_SIZE",
    "RPC_CLIENT_IN_INITIAL_DOWNLOAD",
    "RPC_CLIENT_MEMPOOL_DISABLED",
    "RPC_CLIENT_NOT_CONNECTED",
    "RPC_DATABASE_ERROR",
    "RPC_DESERIALIZATION_ERROR",
    "RPC_INTERNAL_ERROR",
    "RPC_INVALID_ADDRESS_OR_KEY",
    "RPC_INVALID_PARAMETER",
    "RPC_INVALID_PARAMS",
    "RPC_INVALID_REQUEST",
    "RPC_IN_WARMUP",
    "RPC_METHOD_DEPRECATED",
    "RPC_METHOD_NOT_FOUND",
    "RPC_MISC_ERROR",
    "RPC_OUT_OF_MEMORY",
    "RPC_PARSE_ERROR",
    "RPC_TRANSACTION_ALREADY_IN_CHAIN",
    "RPC_TRANSACTION_ERROR",
    "RPC_TRANSACTION_REJECTED",
    "RPC_TYPE_ERROR",
    "RPC_VERIFY_ALREADY_IN_CHAIN",
    "RPC_VERIFY_ALREADY_IN_UTXO_SET",
    "RPC_VERIFY_ERROR",
    "RPC_VERIFY_REJECTED",
    "RPC_WALLET_ERROR",
    "RPC_WALLET_INSUFFICIENT_FUNDS",
    "RPC_WALLET_NOT_FOUND",
    "RPC_WALLET_NOT_SPECIFIED",
    "Dispatcher",
    "RpcError",
    "RpcServer",
    "http_status_for",
]

log = logging.getLogger(__name__)

# -- error codes (src/rpc/protocol.h) ------------------------------------------------

# Standard JSON-RPC 2.0 errors.
RPC_INVALID_REQUEST: Final = -32600
RPC_METHOD_NOT_FOUND: Final = -32601
RPC_INVALID_PARAMS: Final = -32602
RPC_INTERNAL_ERROR: Final = -32603
RPC_PARSE_ERROR: Final = -32700
# General application errors.
RPC_MISC_ERROR: Final = -1
RPC_TYPE_ERROR: Final = -3
RPC_INVALID_ADDRESS_OR_KEY: Final = -5
RPC_OUT_OF_MEMORY: Final = -7
RPC_INVALID_PARAMETER: Final = -8
RPC_DATABASE_ERROR: Final = -20
RPC_DESERIALIZATION_ERROR: Final = -22
RPC_VERIFY_ERROR: Final = -25
RPC_VERIFY_REJECTED: Final = -26
RPC_VERIFY_ALREADY_IN_UTXO_SET: Final = -27
RPC_IN_WARMUP: Final = -28
RPC_METHOD_DEPRECATED: Final = -32
# Aliases Core keeps for backward compatibility.
RPC_VERIFY_ALREADY_IN_CHAIN: Final = RPC_VERIFY_ALREADY_IN_UTXO_SET
RPC_TRANSACTION_ERROR: Final = RPC_VERIFY_ERROR
RPC_TRANSACTION_REJECTED: Final = RPC_VERIFY_REJECTED
RPC_TRANSACTION_ALREADY_IN_CHAIN: Final = RPC_VERIFY_ALREADY_IN_UTXO_SET
# P2P / chain state.
RPC_CLIENT_NOT_CONNECTED: Final = -9
RPC_CLIENT_IN_INITIAL_DOWNLOAD: Final = -10
RPC_CLIENT_MEMPOOL_DISABLED: Final = -33
# Wallet.
RPC_WALLET_ERROR: Final = -4
RPC_WALLET_INSUFFICIENT_FUNDS: Final = -6
RPC_WALLET_NOT_FOUND: Final = -18
RPC_WALLET_NOT_SPECIFIED: Final = -19

# -- HTTP (src/rpc/protocol.h HTTPStatusCode, plus libevent's 413) -------------------

HTTP_OK: Final = 200
HTTP_NO_CONTENT: Final = 204
HTTP_BAD_REQUEST: Final = 400
HTTP_UNAUTHORIZED: Final = 401
HTTP_FORBIDDEN: Final = 403
HTTP_NOT_FOUND: Final = 404
HTTP_BAD_METHOD: Final = 405
HTTP_PAYLOAD_TOO_LARGE: Final = 413
HTTP_INTERNAL_SERVER_ERROR: Final = 500
HTTP_SERVICE_UNAVAILABLE: Final = 503

MAX_BODY_SIZE: Final = 0x02000000
"""bitcoind's request body limit (`MAX_SIZE`, 32 MiB)."""

WWW_AUTHENTICATE: Final = 'Basic realm="jsonrpc"'
COOKIE_USER: Final = "__cookie__"
COOKIE_FILE: Final = ".cookie"


class RpcError(Exception):
    """A JSON-RPC error with bitcoind's numeric `code` and `message`.

    The one error type for both sides: handlers raise it to answer a call with
    a bitcoind-style failure, and `BitcoindClient` raises it when the server
    (ours or a real bitcoind) answered with an error object. The codes are
    available both here (`RpcError.RPC_VERIFY_REJECTED`) and as module
    constants.
    """

    RPC_INVALID_REQUEST: ClassVar[int] = RPC_INVALID_REQUEST
    RPC_METHOD_NOT_FOUND: ClassVar[int] = RPC_METHOD_NOT_FOUND
    RPC_INVALID_PARAMS: ClassVar[int] = RPC_INVALID_PARAMS
    RPC_INTERNAL_ERROR: ClassVar[int] = RPC_INTERNAL_ERROR
    RPC_PARSE_ERROR: ClassVar[int] = RPC_PARSE_ERROR
    RPC_MISC_ERROR: ClassVar[int] = RPC_MISC_ERROR
    RPC_TYPE_ERROR: ClassVar[int] = RPC_TYPE_ERROR
    RPC_INVALID_ADDRESS_OR_KEY: ClassVar[int] = RPC_INVALID_ADDRESS_OR_KEY
    RPC_OUT_OF_MEMORY: ClassVar[int] = RPC_OUT_OF_MEMORY
    RPC_INVALID_PARAMETER: ClassVar[int] = RPC_INVALID_PARAMETER
    RPC_DATABASE_ERROR: ClassVar[int] = RPC_DATABASE_ERROR
    RPC_DESERIALIZATION_ERROR: ClassVar[int] = RPC_DESERIALIZATION_ERROR
    RPC_VERIFY_ERROR: ClassVar[int] = RPC_VERIFY_ERROR
    RPC_VERIFY_REJECTED: ClassVar[int] = RPC_VERIFY_REJECTED
    RPC_VERIFY_ALREADY_IN_UTXO_SET: ClassVar[int] = RPC_VERIFY_ALREADY_IN_UTXO_SET
    RPC_VERIFY_ALREADY_IN_CHAIN: ClassVar[int] = RPC_VERIFY_ALREADY_IN_CHAIN
    RPC_TRANSACTION_ERROR: ClassVar[int] = RPC_TRANSACTION_ERROR
    RPC_TRANSACTION_REJECTED: ClassVar[int] = RPC_TRANSACTION_REJECTED
    RPC_TRANSACTION_ALREADY_IN_CHAIN: ClassVar[int] = RPC_TRANSACTION_ALREADY_IN_CHAIN
    RPC_IN_WARMUP: ClassVar[int] = RPC_IN_WARMUP
    RPC_METHOD_DEPRECATED: ClassVar[int] = RPC_METHOD_DEPRECATED
    RPC_CLIENT_NOT_CONNECTED: ClassVar[int] = RPC_CLIENT_NOT_CONNECTED
    RPC_CLIENT_IN_INITIAL_DOWNLOAD: ClassVar[int] = RPC_CLIENT_IN_INITIAL_DOWNLOAD
    RPC_CLIENT_MEMPOOL_DISABLED: ClassVar[int] = RPC_CLIENT_MEMPOOL_DISABLED
    RPC_WALLET_ERROR: ClassVar[int] = RPC_WALLET_ERROR
    RPC_WALLET_INSUFFICIENT_FUNDS: ClassVar[int] = RPC_WALLET_INSUFFICIENT_FUNDS
    RPC_WALLET_NOT_FOUND: ClassVar[int] = RPC_WALLET_NOT_FOUND
    RPC_WALLET_NOT_SPECIFIED: ClassVar[int] = RPC_WALLET_NOT_SPECIFIED

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"

    def __repr__(self) -> str:
        return f"RpcError({self.code!r}, {self.message!r})"

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC error object, `{"code": ..., "message": ...}`."""
        return {"code": self.code, "message": self.message}


def http_status_for(code: int) -> int:
    """The HTTP status bitcoind sends with a legacy (JSON-RPC 1.0) error reply."""
    if code == RPC_INVALID_REQUEST:
        return HTTP_BAD_REQUEST
    if code == RPC_METHOD_NOT_FOUND:
        return HTTP_NOT_FOUND
    return HTTP_INTERNAL_SERVER_ERROR


# -- parameter specs from handler signatures --------------------------------------------


def _json_type(value: Any) -> str:
    """UniValue's type name for a decoded JSON value (`uvTypeName`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _to_int(value: Any) -> Any:
    # A JSON number with a fraction or exponent decodes to Decimal; like
    # UniValue::getInt, refuse it (even "5.0") where an integer is expected.
    if isinstance(value, int):
        return value
    raise RpcError(RPC_TYPE_ERROR, "JSON value is not an integer as expected")


def _to_decimal(value: Any) -> Decimal:
    """An AMOUNT argument: a JSON number, or a string holding one (bitcoind
    accepts both)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount") from None
    if not result.is_finite() or value != value.strip():
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount")
    return result


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Accept:
    """One JSON type a parameter accepts, and how to hand it to the handler."""

    json_type: str
    convert: Callable[[Any], Any] = _identity


def _accepts_for(annotation: Any) -> tuple[_Accept, ...] | None:
    """What JSON a parameter annotated `annotation` accepts; None = unchecked."""
    if annotation in (inspect.Parameter.empty, Any, object):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        accepts: list[_Accept] = []
        for member in typing.get_args(annotation):
            member_accepts = _accepts_for(member)
            if member_accepts is None:
                return None
            accepts.extend(member_accepts)
        return tuple(accepts)
    if origin is typing.Literal:
        literal_accepts: list[_Accept] = []
        for value in typing.get_args(annotation):
            kind = _accepts_for(type(value))
            if kind is None:
                return None
            literal_accepts.extend(a for a in kind if a not in literal_accepts)
        return tuple(literal_accepts)
    base = origin if origin is not None else annotation
    if base is None or base is type(None):
        return (_Accept("null"),)
    if not isinstance(base, type):
        return None
    if issubclass(base, bool):
        return (_Accept("bool"),)
    if issubclass(base, int):
        return (_Accept("number", _to_int),)
    if issubclass(base, float):
        return (_Accept("number", float),)
    if issubclass(base, Decimal):
        return (_Accept("number", _to_decimal), _Accept("string", _to_decimal))
    if issubclass(base, str):
        return (_Accept("string"),)
    if issubclass(base, collections.abc.Mapping):
        return (_Accept("object"),)
    if issubclass(base, collections.abc.Sequence) and not issubclass(base, bytes | bytearray):
        return (_Accept("array"),)
    return None


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    required: bool
    default: Any
    accepts: tuple[_Accept, ...] | None

    def expected(self) -> str:
        assert self.accepts is not None
        names: list[str] = []
        for accept in self.accepts:
            if accept.json_type != "null" and accept.json_type not in names:
                names.append(accept.json_type)
        return " or ".join(names) if names else "null"


@dataclass(frozen=True, slots=True)
class _Method:
    """A handler with the parameter list introspected once, at registration."""

    name: str
    func: Callable[..., Any]
    params: tuple[_Param, ...]
    varargs: _Param | None
    help: str
    introspected: bool

    @property
    def n_required(self) -> int:
        return sum(1 for p in self.params if p.required)


def _introspect(name: str, func: Callable[..., Any]) -> _Method:
    """Read a handler's parameters once, so each call only binds and checks.

    A callable whose signature cannot be read (some builtins) is still served,
    with positional params passed through unchecked."""
    if not callable(func):
        raise TypeError(f"handler for {name!r} is not callable")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return _Method(name, func, (), None, name, introspected=False)
    target = func if inspect.isroutine(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        # Unresolvable annotations (say, a forward reference to a name the
        # module does not define at run time): keep the arity checks only.
        hints = {}
    params: list[_Param] = []
    varargs: _Param | None = None
    for p in signature.parameters.values():
        annotation = hints.get(p.name, inspect.Parameter.empty)
        accepts = _accepts_for(annotation)
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            required = p.default is inspect.Parameter.empty
            if not required and accepts is not None and p.default is None:
                # `x: int = None` style: null is the default, so accept it.
                accepts = (*accepts, _Accept("null"))
            params.append(_Param(p.name, required, p.default, accepts))
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            varargs = _Param(p.name, False, None, accepts)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            raise TypeError(
                f"handler for {name!r} has a required keyword-only parameter {p.name!r}; "
                "JSON-RPC params are positional (or named onto positional parameters)"
            )
    required_names = [p.name for p in params if p.required]
    optional_names = [p.name for p in params if not p.required]
    usage = " ".join([name, *required_names])
    if optional_names or varargs is not None:
        extra = optional_names + ([f"{varargs.name}..."] if varargs is not None else [])
        usage += " ( " + " ".join(extra) + " )"
    lines = [usage]
    doc = inspect.getdoc(func)
    if doc:
        lines += ["", doc]
    if params or varargs is not None:
        lines += ["", "Arguments:"]
        for index, param in enumerate([*params, *([varargs] if varargs else [])], 1):
            kind = param.expected() if param.accepts is not None else "any"
            if param is varargs:
                status = "optional, repeated"
            elif param.required:
                status = "required"
            else:
                status = f"optional, default={param.default!r}"
            lines.append(f"{index}. {param.name} ({kind}, {status})")
    return _Method(name, func, tuple(params), varargs, "\n".join(lines), introspected=True)


# -- request parsing and dispatch -----------------------------------------------------


@dataclass(slots=True)
class _Request:
    """One parsed call. Defaults mirror Core's JSONRPCRequest: until the object
    is read, the id is a present `null` and the version is legacy."""

    id_present: bool = True
    id: Any = None
    v2: bool = False
    method: str = ""
    params: list[Any] | dict[str, Any] = field(default_factory=list)

    @property
    def is_notification(self) -> bool:
        return self.v2 and not self.id_present


def _parse_request(value: Any, req: _Request) -> None:
    """Fill `req` from a request object, raising RpcError as Core's
    JSONRPCRequest::parse does (id and version are set before any failure)."""
    if not isinstance(value, dict):
        raise RpcError(RPC_INVALID_REQUEST, "Invalid Request object")
    if "id" in value:
        req.id_present, req.id = True, value["id"]
    else:
        req.id_present, req.id = False, None
    req.v2 = False
    version = value.get("jsonrpc")
    if version is not None:
        if not isinstance(version, str):
            raise RpcError(RPC_INVALID_REQUEST, "jsonrpc field must be a string")
        if version == "2.0":
            req.v2 = True
        elif version != "1.0":
            raise RpcError(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
    method = value.get("method")
    if method is None:
        raise RpcError(RPC_INVALID_REQUEST, "Missing method")
    if not isinstance(method, str):
        raise RpcError(RPC_INVALID_REQUEST, "Method must be a string")
    req.method = method
    params = value.get("params")
    if params is None:
        req.params = []
    elif isinstance(params, list | dict):
        req.params = params
    else:
        raise RpcError(RPC_INVALID_REQUEST, "Params must be an array or object")


def _reply(req: _Request, result_json: str | None, error: RpcError | None) -> str:
    """Core's JSONRPCReplyObj, written compactly as UniValue::write() does."""
    parts: list[str] = []
    if req.v2:
        parts.append('"jsonrpc":"2.0"')
    if error is None:
        assert result_json is not None
        parts.append(f'"result":{result_json}')
        if not req.v2:
            parts.append('"error":null')
    else:
        if not req.v2:
            parts.append('"result":null')
        parts.append(f'"error":{encode_json(error.to_json())}')
    if req.id_present:
        try:
            id_json = encode_json(req.id)
        except (TypeError, ValueError):  # an id nested too deeply to echo
            id_json = "null"
        parts.append(f'"id":{id_json}')
    return "{" + ",".join(parts) + "}"


class Dispatcher:
    """Turns JSON-RPC request bodies into calls on `handlers`, and back.

    `handlers` maps a method name to a callable that takes the call's params
    positionally. Named params (`"params": {"height": 5}`) are mapped onto the
    callable's parameter names, so a handler should name its parameters as
    bitcoind names the method's arguments (`getblockhash(height)`,
    `gettxout(txid, n, include_mempool=True)`). Annotations drive bitcoind-style
    type checks: `int`, `bool`, `str`, `float`, `Decimal` (an AMOUNT: JSON
    number or numeric string), `list`/`Sequence`, `dict`/`Mapping`, unions and
    `X | None`; unannotated or `Any` parameters are passed through unchecked.
    A JSON `null` for an optional parameter means "use the default".

    A handler answers with any value `encode_json` accepts (use `Decimal` from
    `sat_to_btc` for amounts), raises `RpcError` for a bitcoind-style failure,
    and any other exception becomes `RPC_MISC_ERROR` with its message (logged
    with its traceback); the dispatcher itself never raises.
    """

    def __init__(self, handlers: Mapping[str, Callable[..., Any]]) -> None:
        self._methods: dict[str, _Method] = {
            name: _introspect(name, func) for name, func in handlers.items()
        }
        self._warmup: str | None = None

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._methods)

    def set_warmup(self, status: str | None) -> None:
        """While `status` is set, every call answers `RPC_IN_WARMUP` with it, as
        bitcoind does while loading; `None` ends warmup."""
        self._warmup = status

    def help(self, method: str) -> str:
        """The usage text a wrong argument count answers with."""
        return self._methods[method].help

    # -- one call -------------------------------------------------------------------

    def call(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        """Run one call in-process with full checking; raises RpcError."""
        warmup = self._warmup
        if warmup is not None:
            raise RpcError(RPC_IN_WARMUP, warmup)
        spec = self._methods.get(method)
        if spec is None:
            raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
        positional = (
            _named_to_positional(spec, params) if isinstance(params, dict) else list(params or [])
        )
        args = _bind(spec, positional)
        try:
            return spec.func(*args)
        except RpcError:
            raise
        except Exception as exc:
            log.exception("RPC %s failed", method)
            message = str(exc) or type(exc).__name__
            raise RpcError(RPC_MISC_ERROR, message) from exc

    def _execute(self, req: _Request) -> str:
        """Run `req` and return its result as JSON text; raises RpcError."""
        result = self.call(req.method, req.params)
        try:
            return encode_json(result)
        except (TypeError, ValueError) as exc:
            log.error("RPC %s returned a value that is not JSON: %s", req.method, exc)
            raise RpcError(
                RPC_MISC_ERROR, f"internal error: {req.method} returned non-JSON ({exc})"
            ) from exc

    def _execute_caught(self, req: _Request) -> str:
        try:
            return _reply(req, self._execute(req), None)
        except RpcError as exc:
            return _reply(req, None, exc)

    # -- a whole HTTP body --------------------------------------------------------------

    def handle(self, body: bytes) -> tuple[int, bytes | None]:
        """Answer one HTTP request body: (HTTP status, response body or None)."""
        try:
            value = decode_json(body)
        except (ValueError, RecursionError):
            return self._legacy_error(_Request(), RpcError(RPC_PARSE_ERROR, "Parse error"))
        if isinstance(value, dict):
            return self._handle_single(value)
        if isinstance(value, list):
            return self._handle_batch(value)
        return self._legacy_error(
            _Request(), RpcError(RPC_PARSE_ERROR, "Top-level object parse error")
        )

    @staticmethod
    def _legacy_error(req: _Request, error: RpcError) -> tuple[int, bytes | None]:
        return http_status_for(error.code), (_reply(req, None, error) + "\n").encode()

    def _handle_single(self, value: dict[str, Any]) -> tuple[int, bytes | None]:
        req = _Request()
        try:
            _parse_request(value, req)
        except RpcError as exc:
            # Core answers a malformed request with an HTTP error even when it
            # said "jsonrpc": "2.0" (JSONErrorReply after parse).
            return self._legacy_error(req, exc)
        if req.v2:
            text = self._execute_caught(req)
            if req.is_notification:
                return HTTP_NO_CONTENT, None
            return HTTP_OK, (text + "\n").encode()
        try:
            result = self._execute(req)
        except RpcError as exc:
            return self._legacy_error(req, exc)
        return HTTP_OK, (_reply(req, result, None) + "\n").encode()

    def _handle_batch(self, values: list[Any]) -> tuple[int, bytes | None]:
        replies: list[str] = []
        for value in values:
            req = _Request()
            try:
                _parse_request(value, req)
                text = self._execute_caught(req)
            except RpcError as exc:
                text = _reply(req, None, exc)
            if not req.is_notification:
                replies.append(text)
        if not replies and values:
            return HTTP_NO_CONTENT, None
        return HTTP_OK, ("[" + ",".join(replies) + "]\n").encode()


def _named_to_positional(spec: _Method, named: dict[str, Any]) -> list[Any]:
    """Core's transformNamedArguments: names onto positions, holes as null."""
    if not spec.introspected:
        raise RpcError(RPC_INVALID_PARAMETER, f"{spec.name} does not take named parameters")
    args_in = dict(named)
    out: list[Any] = []
    hole = 0
    initial_hole = 0
    initial_param: str | None = None
    for param in spec.params:
        if param.name in args_in:
            out.extend([None] * hole)
            hole = 0
            if initial_param is None:
                initial_param = param.name
            out.append(args_in.pop(param.name))
        else:
            hole += 1
            if not out:
                initial_hole = hole
    positional = args_in.pop("args", None)
    if isinstance(positional, list):
        if initial_param is not None and initial_hole < len(positional):
            raise RpcError(
                RPC_INVALID_PARAMETER,
                f"Parameter {initial_param} specified twice both as positional and named argument",
            )
        out = list(positional) + out[len(positional) :]
    if args_in:
        raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {next(iter(args_in))}")
    return out


def _bind(spec: _Method, params: list[Any]) -> list[Any]:
    """Check count and JSON types like RPCHelpMan::HandleRequest; convert."""
    if not spec.introspected:
        return params
    if len(params) < spec.n_required or (spec.varargs is None and len(params) > len(spec.params)):
        raise RpcError(RPC_MISC_ERROR, spec.help)
    args: list[Any] = []
    mismatches: dict[str, str] = {}
    for index, value in enumerate(params):
        param = spec.params[index] if index < len(spec.params) else spec.varargs
        assert param is not None
        if value is None and not param.required and param is not spec.varargs:
            args.append(param.default)
            continue
        if param.accepts is None:
            args.append(value)
            continue
        json_type = _json_type(value)
        accept = next((a for a in param.accepts if a.json_type == json_type), None)
        if accept is None:
            key = f"Position {index + 1} ({param.name})"
            mismatches[key] = (
                f"JSON value of type {json_type} is not of expected type {param.expected()}"
            )
            continue
        args.append(accept.convert(value))
    if mismatches:
        raise RpcError(RPC_TYPE_ERROR, "Wrong type passed:\n" + json.dumps(mismatches, indent=4))
    return args


# -- authentication -----------------------------------------------------------------------


class _Authenticator:
    """Checks `Authorization: Basic` against the configured credentials.

    Like Core since v28, the stored secret is an HMAC under a per-process
    random key, so the comparison runs on two equal-length digests
    (`hmac.compare_digest`) and leaks neither content nor length.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._digests: list[bytes] = []

    def _digest(self, user_pass: bytes) -> bytes:
        return hmac.new(self._key, user_pass, hashlib.sha256).digest()

    def add(self, user: str, password: str) -> None:
        if ":" in user:
            raise ValueError("an RPC user name cannot contain ':'")
        self._digests.append(self._digest(f"{user}:{password}".encode()))

    def check(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user_pass = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        if b":" not in user_pass:
            return False
        digest = self._digest(user_pass)
        ok = False
        for expected in self._digests:  # no early exit: same work for every guess
            ok |= hmac.compare_digest(digest, expected)
        return ok


def _write_cookie(path: Path, secret: str) -> None:
    """Write `__cookie__:<secret>` readable by the owner only (0600), atomically:
    written to `.cookie.tmp` and renamed, as Core does, so a reader never sees
    a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, f"{COOKIE_USER}:{secret}".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- HTTP -------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    rpc: RpcServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS lookup that
        # can stall); bitcoind does no such thing, and neither do we.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("RPC connection from %s failed", client_address, exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive HTTP/1.1 connection; requests on it run one at a time."""

    protocol_version = "HTTP/1.1"
    server_version = "superscalar-rpc"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        rpc = self.server.rpc
        super().setup()
        self.connection.settimeout(rpc.idle_timeout)
        self._over_capacity = not rpc.register_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.rpc.unregister_connection(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != HTTP_NO_CONTENT:
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body_pending(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return length not in ("", "0") or "Transfer-Encoding" in self.headers

    def _serve(self) -> None:
        rpc = self.server.rpc
        path = self.path.split("?", 1)[0]
        if path != "/" and not path.startswith("/wallet/"):
            self._send(HTTP_NOT_FOUND, close=self._body_pending())
            return
        if self.command != "POST":
            self._send(
                HTTP_BAD_METHOD,
                b"JSONRPC server handles only POST requests",
                "text/plain",
                close=self._body_pending(),
            )
            return
        if self._over_capacity:
            self._send(
                HTTP_SERVICE_UNAVAILABLE, b"Work queue depth exceeded", "text/plain", close=True
            )
            return
        body = self._read_body(rpc.max_body_size)
        if body is None:
            return
        authorization = self.headers.get("Authorization")
        if authorization is None or not rpc.authorized(authorization):
            if authorization is not None:
                log.warning("incorrect RPC password attempt from %s", self.client_address[0])
                time.sleep(rpc.auth_failure_delay)  # deter brute force, as bitcoind does
            self._send(HTTP_UNAUTHORIZED, headers=(("WWW-Authenticate", WWW_AUTHENTICATE),))
            return
        try:
            status, payload = rpc.dispatcher.handle(body)
        except Exception:  # pragma: no cover - Dispatcher.handle answers everything
            log.exception("JSON-RPC dispatch failed")
            error = RpcError(RPC_INTERNAL_ERROR, "Internal error")
            status, payload = HTTP_INTERNAL_SERVER_ERROR, (_reply(_Request(), None, error)).encode()
        if payload is None:
            self._send(status)
        else:
            self._send(status, payload, "application/json")

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None after answering 400/413 (connection closed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length.strip())
        except ValueError:
            length = -1
        if length < 0:
            self._send(HTTP_BAD_REQUEST, close=True)
            return None
        if length > limit:
            self._send(HTTP_PAYLOAD_TOO_LARGE, close=True)
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._send(HTTP_BAD_REQUEST, close=True)
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                self._send(HTTP_PAYLOAD_TOO_LARGE, close=True)
                return None
            chunk = self.rfile.read(size)
            self.rfile.readline(3)
            if len(chunk) != size:
                self.close_connection = True
                return None
            chunks.append(chunk)

    do_POST = _serve
    do_GET = _serve
    do_HEAD = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_PATCH = _serve
    do_OPTIONS = _serve


class RpcServer:
    """bitcoind-style JSON-RPC over HTTP on loopback, in a background thread.

    Auth is required: a cookie in `cookie_dir` (`.cookie` holding
    `__cookie__:<64 hex>`, mode 0600, written on `start()` and deleted on
    `stop()`), a configured `rpcuser`/`rpcpassword`, or both. `port=0` binds an
    ephemeral port; read the real one from `port` after `start()`.

    Each connection gets a thread (HTTP/1.1 keep-alive, idle connections closed
    after `idle_timeout` seconds); at most `max_connections` are served at
    once, the rest are answered 503 as bitcoind answers a full work queue.
    Handlers therefore run concurrently: the caller serializes them.
    """

    def __init__(
        self,
        handlers: Mapping[str, Callable[..., Any]] | Dispatcher,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cookie_dir: str | os.PathLike[str] | None = None,
        rpcuser: str | None = None,
        rpcpassword: str | None = None,
        max_body_size: int = MAX_BODY_SIZE,
        idle_timeout: float = 30.0,
        auth_failure_delay: float = 0.25,
        max_connections: int = 64,
    ) -> None:
        if not rpcpassword and cookie_dir is None:
            raise ValueError(
                "RpcServer needs cookie_dir or rpcpassword: it never serves without auth"
            )
        if rpcuser is not None and ":" in rpcuser:
            raise ValueError("rpcuser cannot contain ':'")
        self.dispatcher = handlers if isinstance(handlers, Dispatcher) else Dispatcher(handlers)
        self.host = host
        self._requested_port = port
        self.cookie_path: Path | None = Path(cookie_dir) / COOKIE_FILE if cookie_dir else None
        self._rpcuser = rpcuser or ""
        self._rpcpassword = rpcpassword or None
        self.max_body_size = max_body_size
        self.idle_timeout = idle_timeout
        self.auth_failure_delay = auth_failure_delay
        self.max_connections = max_connections
        self._auth = _Authenticator()
        self._cookie: str | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Bind, write the cookie, and serve from a background thread."""
        if self._httpd is not None:
            raise RuntimeError("RpcServer already started")
        self._closing = False
        self._auth = _Authenticator()
        if self._rpcpassword is not None:
            self._auth.add(self._rpcuser, self._rpcpassword)
        server_class = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = server_class((self.host, self._requested_port), _Handler, bind_and_activate=False)
        httpd.rpc = self
        try:
            httpd.server_bind()
            httpd.server_activate()
            if self.cookie_path is not None:
                self._cookie = secrets.token_hex(32)
                _write_cookie(self.cookie_path, self._cookie)
                self._auth.add(COOKIE_USER, self._cookie)
        except BaseException:
            httpd.server_close()
            raise
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"rpc-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("JSON-RPC server listening on %s", self.url)

    def stop(self) -> None:
        """Stop accepting, close every connection, wait for running calls to
        finish, and delete the cookie. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            self._closing = True
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins the connection threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._remove_cookie()
        log.info("JSON-RPC server on %s:%d stopped", self.host, httpd.server_port)

    def _remove_cookie(self) -> None:
        if self.cookie_path is None or self._cookie is None:
            return
        try:
            current = self.cookie_path.read_text()
        except OSError:
            return
        if current == f"{COOKIE_USER}:{self._cookie}":  # not a successor's cookie
            with contextlib.suppress(OSError):
                self.cookie_path.unlink()
        self._cookie = None

    def __enter__(self) -> RpcServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound port (the real one after `start()`, even if 0 was asked)."""
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def set_warmup(self, status: str | None) -> None:
        """Answer every call with `RPC_IN_WARMUP` and `status` until None."""
        self.dispatcher.set_warmup(status)

    def authorized(self, header: str) -> bool:
        """True if an HTTP `Authorization` header carries a configured user or the cookie."""
        return self._auth.check(header)

    def register_connection(self, conn: socket.socket) -> bool:
        """Track a new connection (for the request handler); False to refuse it (503)."""
        with self._lock:
            if self._closing:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.add(conn)
            return len(self._connections) <= self.max_connections

    def unregister_connection(self, conn: socket.socket) -> None:
        """Forget a connection the request handler has finished with."""
        with self._lock:
            self._connections.discard(conn)
