"""The JSON-RPC server framework over real HTTP on loopback, checked against
bitcoind's observable behaviour (shapes, HTTP statuses, auth, error codes).

The handlers here are small fakes: what is under test is the framework that
carries them, not a node.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superscalar.chain.amounts import sat_to_btc
from superscalar.chain.rpc import (
    RPC_IN_WARMUP,
    RPC_INVALID_PARAMETER,
    RPC_INVALID_REQUEST,
    RPC_METHOD_NOT_FOUND,
    RPC_MISC_ERROR,
    RPC_PARSE_ERROR,
    RPC_TYPE_ERROR,
    RPC_VERIFY_REJECTED,
    Dispatcher,
    RpcError,
    RpcServer,
)

from .rpc_support import basic, cookie_header, request, serving

GENESIS = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"


class Fake:
    """A handful of handlers shaped like bitcoind's."""

    def __init__(self) -> None:
        self.notified: list[Any] = []

    def handlers(self) -> dict[str, Any]:
        return {
            "getblockcount": self.getblockcount,
            "getblockhash": self.getblockhash,
            "getbalance": lambda: sat_to_btc(1),
            "echoamount": self.echoamount,
            "typed": self.typed,
            "varargs": self.varargs,
            "notify": self.notify,
            "crash": self.crash,
            "reject": self.reject,
            "nonjson": lambda: object(),
            "thread": lambda: threading.get_ident(),
            "untyped": lambda a, b=7: [a, b],
        }

    def getblockcount(self) -> int:
        return 0

    def getblockhash(self, height: int) -> str:
        """Returns hash of block in best-block-chain at height provided."""
        if height != 0:
            raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
        return GENESIS

    def echoamount(self, amount: Decimal) -> Decimal:
        return amount

    def typed(self, height: int, verbose: bool = False, label: str | None = None) -> list[Any]:
        return [height, verbose, label]

    def varargs(self, first: str, *rest: int) -> list[Any]:
        return [first, *rest]

    def notify(self, value: Any = None) -> None:
        self.notified.append(value)

    def crash(self) -> None:
        raise ZeroDivisionError("boom: division by zero")

    def reject(self) -> None:
        raise RpcError(RPC_VERIFY_REJECTED, "min relay fee not met, 0 < 110")


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def server(fake: Fake, tmp_path: Path) -> Iterator[RpcServer]:
    with serving(fake.handlers(), tmp_path) as srv:
        yield srv


def call(server: RpcServer, payload: Any, **kw: Any) -> Any:
    return request(server, payload, auth=cookie_header(server), **kw)


# -- JSON-RPC shapes ------------------------------------------------------------------


def test_legacy_success_shape(server: RpcServer) -> None:
    reply = call(server, {"method": "getblockhash", "params": [0], "id": 1})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {"result": GENESIS, "error": None, "id": 1}
    # Compact, key order and trailing newline as UniValue::write() + "\n".
    assert reply.body == b'{"result":"%s","error":null,"id":1}\n' % GENESIS.encode()


def test_legacy_without_id_has_no_id_field(server: RpcServer) -> None:
    reply = call(server, {"method": "getblockcount"})
    assert (reply.status, reply.json()) == (200, {"result": 0, "error": None})


def test_jsonrpc_1_0_marker_is_legacy(server: RpcServer) -> None:
    reply = call(server, {"jsonrpc": "1.0", "method": "getblockcount", "id": "x"})
    assert reply.json() == {"result": 0, "error": None, "id": "x"}


def test_v2_success_shape(server: RpcServer) -> None:
    reply = call(server, {"jsonrpc": "2.0", "method": "getblockcount", "id": 7})
    assert reply.status == 200
    assert reply.json() == {"jsonrpc": "2.0", "result": 0, "id": 7}


def test_v2_null_id_is_not_a_notification(server: RpcServer) -> None:
    reply = call(server, {"jsonrpc": "2.0", "method": "getblockcount", "id": None})
    assert (reply.status, reply.json()) == (200, {"jsonrpc": "2.0", "result": 0, "id": None})


def test_legacy_errors_use_http_status(server: RpcServer) -> None:
    reply = call(server, {"method": "nosuchmethod", "params": [], "id": 1})
    assert reply.status == 404
    assert reply.json() == {
        "result": None,
        "error": {"code": RPC_METHOD_NOT_FOUND, "message": "Method not found"},
        "id": 1,
    }
    reply = call(server, {"method": "getblockhash", "params": [42], "id": 2})
    assert reply.status == 500
    assert reply.json()["error"] == {
        "code": RPC_INVALID_PARAMETER,
        "message": "Block height out of range",
    }


def test_v2_errors_are_http_200(server: RpcServer) -> None:
    reply = call(server, {"jsonrpc": "2.0", "method": "nosuchmethod", "id": 1})
    assert reply.status == 200
    assert reply.json() == {
        "jsonrpc": "2.0",
        "error": {"code": RPC_METHOD_NOT_FOUND, "message": "Method not found"},
        "id": 1,
    }
    reply = call(server, {"jsonrpc": "2.0", "method": "getblockhash", "params": [42], "id": 2})
    assert reply.status == 200
    assert reply.json()["error"]["code"] == RPC_INVALID_PARAMETER


def test_v2_notification_runs_and_answers_204(server: RpcServer, fake: Fake) -> None:
    reply = call(server, {"jsonrpc": "2.0", "method": "notify", "params": [5]})
    assert (reply.status, reply.body) == (204, b"")
    assert fake.notified == [5]
    # Even a failing notification gets no body.
    reply = call(server, {"jsonrpc": "2.0", "method": "crash"})
    assert (reply.status, reply.body) == (204, b"")


@pytest.mark.parametrize(
    ("request_obj", "message"),
    [
        ({"jsonrpc": 2, "method": "getblockcount"}, "jsonrpc field must be a string"),
        ({"jsonrpc": "3.0", "method": "getblockcount"}, "JSON-RPC version not supported"),
        ({"id": 1}, "Missing method"),
        ({"id": 1, "method": 5}, "Method must be a string"),
        ({"id": 1, "method": "getblockcount", "params": 5}, "Params must be an array or object"),
    ],
)
def test_invalid_request_is_400(server: RpcServer, request_obj: Any, message: str) -> None:
    reply = call(server, request_obj)
    assert reply.status == 400
    body = reply.json()
    assert body["error"] == {"code": RPC_INVALID_REQUEST, "message": message}
    assert ("id" in body) == ("id" in request_obj)


# -- batches (as Bitcoin Core's interface_rpc.py) --------------------------------------------

_BATCH_CALLS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"method": "getblockcount"}, {"result": 0}),
    (
        {"method": "invalidmethod"},
        {"error": {"code": RPC_METHOD_NOT_FOUND, "message": "Method not found"}},
    ),
    ({"method": "getblockhash", "params": [0]}, {"result": GENESIS}),
    ({"pizza": "sausage"}, {"error": {"code": RPC_INVALID_REQUEST, "message": "Missing method"}}),
]


def _batch(version: int | None, notification: bool) -> tuple[list[Any], list[Any]]:
    requests, responses = [], []
    for idx, (call_obj, result) in enumerate(_BATCH_CALLS, 1):
        req: dict[str, Any] = {"jsonrpc": "2.0"} if version == 2 else {}
        if not notification:
            req["id"] = idx
        requests.append({**req, **call_obj})
        if version == 2 and notification:
            continue
        resp: dict[str, Any] = {} if notification else {"id": idx}
        resp.update({"jsonrpc": "2.0"} if version == 2 else {"result": None, "error": None})
        resp.update(result)
        responses.append(resp)
    return requests, responses


@pytest.mark.parametrize(
    ("version", "notification"), [(2, False), (None, False), (None, True), (2, True)]
)
def test_batch(server: RpcServer, version: int | None, notification: bool) -> None:
    requests, responses = _batch(version, notification)
    reply = call(server, requests)
    if responses:
        assert reply.status == 200
        assert reply.json() == responses
    else:  # all notifications
        assert (reply.status, reply.body) == (204, b"")


def test_empty_batch_answers_empty_array(server: RpcServer) -> None:
    reply = call(server, [])
    assert (reply.status, reply.json()) == (200, [])


def test_batch_member_errors_do_not_fail_the_batch(server: RpcServer) -> None:
    reply = call(server, [5, {"method": "crash", "id": 1}, {"method": "getblockcount", "id": 2}])
    assert reply.status == 200
    first, second, third = reply.json()
    assert first["error"]["code"] == RPC_INVALID_REQUEST
    assert second["error"] == {"code": RPC_MISC_ERROR, "message": "boom: division by zero"}
    assert third == {"result": 0, "error": None, "id": 2}


# -- params ------------------------------------------------------------------------------


def _result(server: RpcServer, method: str, params: Any) -> Any:
    body = call(server, {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).json()
    if "error" in body:
        raise RpcError(body["error"]["code"], body["error"]["message"])
    return body["result"]


def test_named_params(server: RpcServer) -> None:
    assert _result(server, "getblockhash", {"height": 0}) == GENESIS
    assert _result(server, "typed", {"height": 3}) == [3, False, None]
    # A hole before a named parameter is filled with null, i.e. the default.
    assert _result(server, "typed", {"height": 3, "label": "x"}) == [3, False, "x"]
    # Core's "args" carries positional values alongside named ones.
    assert _result(server, "typed", {"args": [4, True], "label": "y"}) == [4, True, "y"]


def test_unknown_named_param(server: RpcServer) -> None:
    with pytest.raises(RpcError) as err:
        _result(server, "getblockhash", {"height": 0, "hieght": 1})
    assert (err.value.code, err.value.message) == (
        RPC_INVALID_PARAMETER,
        "Unknown named parameter hieght",
    )


def test_positional_and_named_twice(server: RpcServer) -> None:
    with pytest.raises(RpcError) as err:
        _result(server, "typed", {"args": [1], "height": 2})
    assert err.value.code == RPC_INVALID_PARAMETER
    assert "height specified twice" in err.value.message


def test_wrong_param_count_answers_usage(server: RpcServer) -> None:
    for params in ([], [0, 1]):
        with pytest.raises(RpcError) as err:
            _result(server, "getblockhash", params)
        assert err.value.code == RPC_MISC_ERROR
        assert err.value.message.startswith("getblockhash height\n")
        assert "Returns hash of block" in err.value.message
    with pytest.raises(RpcError) as err:
        _result(server, "typed", [1, True, "x", 4])
    assert err.value.message.startswith("typed height ( verbose label )")


def test_wrong_type_is_core_shaped(server: RpcServer) -> None:
    with pytest.raises(RpcError) as err:
        _result(server, "getblockhash", ["0"])
    assert err.value.code == RPC_TYPE_ERROR
    assert err.value.message == (
        "Wrong type passed:\n{\n"
        '    "Position 1 (height)": "JSON value of type string is not of expected type number"\n}'
    )
    with pytest.raises(RpcError) as err:
        _result(server, "typed", [True, 1])
    assert '"Position 1 (height)": "JSON value of type bool' in err.value.message
    assert '"Position 2 (verbose)": "JSON value of type number' in err.value.message
    with pytest.raises(RpcError) as err:
        _result(server, "getblockhash", [None])  # null for a required parameter
    assert err.value.code == RPC_TYPE_ERROR
    with pytest.raises(RpcError) as err:
        _result(server, "getblockhash", [1.5])
    assert err.value.code == RPC_TYPE_ERROR


def test_null_means_default_and_untyped_passes_through(server: RpcServer) -> None:
    assert _result(server, "typed", [1, None, "z"]) == [1, False, "z"]
    assert _result(server, "untyped", [{"a": [1]}]) == [{"a": [1]}, 7]
    assert _result(server, "varargs", ["a", 1, 2]) == ["a", 1, 2]
    with pytest.raises(RpcError) as err:
        _result(server, "varargs", ["a", "b"])
    assert err.value.code == RPC_TYPE_ERROR


def test_amounts_travel_exactly(server: RpcServer) -> None:
    reply = call(server, {"method": "getbalance", "id": 1})
    assert b'"result":0.00000001,' in reply.body  # a bare number, eight places
    for sent in ("0.1", "20999999.99999999", 1):
        raw = json.dumps({"method": "echoamount", "params": [sent], "id": 1})
        if isinstance(sent, str):
            raw_number = raw.replace(f'"{sent}"', sent)  # as a JSON number
            assert call(server, raw_number).body.startswith(f'{{"result":{sent},'.encode())
        assert call(server, raw).body.startswith(f'{{"result":{sent},'.encode())
    reply = call(server, {"method": "echoamount", "params": ["1 0"], "id": 1})
    assert reply.json()["error"] == {"code": RPC_TYPE_ERROR, "message": "Invalid amount"}


# -- failures inside handlers -----------------------------------------------------------------


def test_handler_rpc_error_passes_through(server: RpcServer) -> None:
    reply = call(server, {"method": "reject", "id": 1})
    assert reply.status == 500
    assert reply.json()["error"] == {
        "code": RPC_VERIFY_REJECTED,
        "message": "min relay fee not met, 0 < 110",
    }


def test_handler_crash_is_misc_error_and_server_survives(server: RpcServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    auth = cookie_header(server)
    reply = request(conn, {"method": "crash", "id": 1}, auth=auth)
    assert reply.status == 500
    assert reply.json()["error"] == {"code": RPC_MISC_ERROR, "message": "boom: division by zero"}
    reply = request(conn, {"method": "nonjson", "id": 2}, auth=auth)
    assert reply.json()["error"]["code"] == RPC_MISC_ERROR
    # Same connection, next request: still served.
    assert request(conn, {"method": "getblockcount", "id": 3}, auth=auth).json()["result"] == 0
    conn.close()


def test_warmup(server: RpcServer) -> None:
    server.set_warmup("Loading block index…")
    reply = call(server, {"method": "getblockcount", "id": 1})
    assert reply.json()["error"] == {"code": RPC_IN_WARMUP, "message": "Loading block index…"}
    server.set_warmup(None)
    assert call(server, {"method": "getblockcount", "id": 1}).json()["result"] == 0


# -- HTTP layer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Parse error"),
        (b"this is bad", "Parse error"),
        (b'{"method": "getblockcount"', "Parse error"),
        (b"\xff\xfe{}", "Parse error"),
        (b'{"method": "getblockcount", "params": [NaN]}', "Parse error"),
        (b"[" * 100_000, "Parse error"),
        (b"42", "Top-level object parse error"),
        (b'"x"', "Top-level object parse error"),
    ],
)
def test_malformed_json(server: RpcServer, body: bytes, message: str) -> None:
    reply = call(server, body)
    assert reply.status == 500
    assert reply.json() == {
        "result": None,
        "error": {"code": RPC_PARSE_ERROR, "message": message},
        "id": None,
    }
    assert call(server, {"method": "getblockcount", "id": 1}).json()["result"] == 0


def test_unechoable_id_and_result_are_answered(server: RpcServer) -> None:
    deep = "[" * 600 + "]" * 600
    reply = call(server, '{"method": "getblockcount", "id": ' + deep + "}")
    assert reply.json() == {"result": 0, "error": None, "id": None}
    reply = call(server, '{"method": "untyped", "params": [' + deep + '], "id": 1}')
    assert reply.json()["error"]["code"] == RPC_MISC_ERROR


def test_non_post_is_405(server: RpcServer) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = request(server, b"", method=method, auth=cookie_header(server))
        assert reply.status == 405
        assert reply.body == b"JSONRPC server handles only POST requests"


def test_unknown_path_is_404(server: RpcServer) -> None:
    reply = call(server, {"method": "getblockcount", "id": 1}, path="/rest/chaininfo.json")
    assert (reply.status, reply.body) == (404, b"")
    reply = call(server, {"method": "getblockcount", "id": 1}, path="/wallet/w1")
    assert reply.json()["result"] == 0


def test_oversized_body_is_413(fake: Fake, tmp_path: Path) -> None:
    with serving(fake.handlers(), tmp_path, max_body_size=1024) as server:
        padding = "x" * 2000
        reply = call(server, {"method": "notify", "params": [padding], "id": 1})
        assert reply.status == 413
        assert fake.notified == []
        assert call(server, {"method": "getblockcount", "id": 1}).json()["result"] == 0


def test_chunked_body(server: RpcServer) -> None:
    body = json.dumps({"method": "getblockcount", "id": 1}).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: "
            + cookie_header(server).encode()
            + b"\r\n\r\n"
            + b"%x\r\n" % 5
            + body[:5]
            + b"\r\n"
            + b"%x\r\n" % (len(body) - 5)
            + body[5:]
            + b"\r\n0\r\n\r\n"
        )
        data = b""
        while not data.endswith(b"}\n"):
            data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b'{"result":0,"error":null,"id":1}\n')


def test_keep_alive_reuses_one_connection(server: RpcServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    auth = cookie_header(server)
    idents = set()
    for i in range(5):
        reply = request(conn, {"method": "thread", "id": i}, auth=auth)
        assert reply.headers.get("Connection", "").lower() != "close"
        idents.add(reply.json()["result"])
        sock = conn.sock
        assert sock is not None
        if i == 0:
            first_sock = sock
        assert sock is first_sock  # never reconnected
    assert len(idents) == 1  # one connection, one server thread
    conn.close()


def test_connection_limit_answers_503(fake: Fake, tmp_path: Path) -> None:
    with serving(fake.handlers(), tmp_path, max_connections=1) as server:
        auth = cookie_header(server)
        first = http.client.HTTPConnection(server.host, server.port, timeout=10)
        assert request(first, {"method": "getblockcount", "id": 1}, auth=auth).status == 200
        reply = request(server, {"method": "getblockcount", "id": 1}, auth=auth)
        assert (reply.status, reply.body) == (503, b"Work queue depth exceeded")
        first.close()


def test_stop_closes_idle_keep_alive_connections(fake: Fake, tmp_path: Path) -> None:
    server = RpcServer(fake.handlers(), cookie_dir=tmp_path, auth_failure_delay=0)
    server.start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    request(conn, {"method": "getblockcount", "id": 1}, auth=cookie_header(server))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert not server.running
    server.stop()  # idempotent
    conn.close()


# -- auth -------------------------------------------------------------------------------


def test_missing_auth_is_401_without_body(server: RpcServer) -> None:
    reply = request(server, {"method": "getblockcount", "id": 1})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="jsonrpc"'
    assert reply.body == b""


@pytest.mark.parametrize(
    "auth",
    [
        basic("__cookie__", "0" * 64),
        basic("user", "wrong"),
        "Basic !!!not-base64!!!",
        "Basic " + "bm9jb2xvbg==",  # "nocolon"
        "Bearer abc",
    ],
)
def test_bad_auth_is_401_and_runs_nothing(server: RpcServer, fake: Fake, auth: str) -> None:
    reply = request(server, {"method": "notify", "params": [1], "id": 1}, auth=auth)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="jsonrpc"'
    assert reply.body == b""
    assert fake.notified == []


def test_bad_auth_is_delayed(fake: Fake, tmp_path: Path) -> None:
    with serving(fake.handlers(), tmp_path, auth_failure_delay=0.2) as server:
        started = time.monotonic()
        reply = request(server, {"method": "getblockcount", "id": 1}, auth=basic("a", "b"))
        assert reply.status == 401
        assert time.monotonic() - started >= 0.2


def test_user_password_auth(fake: Fake) -> None:
    with RpcServer(
        fake.handlers(), rpcuser="alice", rpcpassword="s3cret:x", auth_failure_delay=0
    ) as server:
        assert server.cookie_path is None
        reply = request(
            server, {"method": "getblockcount", "id": 1}, auth=basic("alice", "s3cret:x")
        )
        assert reply.json()["result"] == 0
        reply = request(server, {"method": "getblockcount", "id": 1}, auth=basic("alice", "s3cret"))
        assert reply.status == 401


def test_cookie_and_password_together(fake: Fake, tmp_path: Path) -> None:
    with serving(fake.handlers(), tmp_path, rpcuser="u", rpcpassword="p") as server:
        for auth in (basic("u", "p"), cookie_header(server)):
            assert request(server, {"method": "getblockcount", "id": 1}, auth=auth).status == 200


def test_server_refuses_to_run_without_auth(fake: Fake) -> None:
    with pytest.raises(ValueError, match="never serves without auth"):
        RpcServer(fake.handlers())


def test_cookie_file_lifecycle(fake: Fake, tmp_path: Path) -> None:
    datadir = tmp_path / "datadir"
    server = RpcServer(fake.handlers(), cookie_dir=datadir)
    cookie = datadir / ".cookie"
    assert not cookie.exists()
    server.start()
    try:
        text = cookie.read_text()
        assert re.fullmatch(r"__cookie__:[0-9a-f]{64}", text)
        assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
        assert not (datadir / ".cookie.tmp").exists()
    finally:
        server.stop()
    assert not cookie.exists()
    server.start()  # a restart writes a fresh secret
    try:
        assert cookie.read_text() != text
    finally:
        server.stop()


def test_ephemeral_port_is_exposed(fake: Fake, tmp_path: Path) -> None:
    server = RpcServer(fake.handlers(), cookie_dir=tmp_path)
    assert server.port == 0
    with server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/"


# -- fuzzing: any body gets an answer, never a crash ---------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["id", "method", "params", "jsonrpc", "x"]), children)
    ),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "id": _json_values,
        "jsonrpc": st.sampled_from(["1.0", "2.0", "3.0", 2]) | _json_values,
        "method": st.sampled_from(sorted(Fake().handlers())) | _json_values,
        "params": st.lists(_json_values, max_size=4) | _json_values,
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_requests, st.lists(_requests, max_size=4), _json_values))
def test_dispatcher_answers_any_json(value: Any) -> None:
    dispatcher = Dispatcher(Fake().handlers())
    status, body = dispatcher.handle(json.dumps(value).encode())
    assert status in (200, 204, 400, 404, 500)
    if status == 204:
        assert body is None
    else:
        assert body is not None
        json.loads(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_dispatcher_answers_any_bytes(body: bytes) -> None:
    status, reply = Dispatcher(Fake().handlers()).handle(body)
    assert status in (200, 204, 400, 404, 500)
    if reply is not None:
        json.loads(reply)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200))
def test_server_answers_fuzz_over_http(server: RpcServer, body: bytes) -> None:
    reply = call(server, body)
    assert reply.status in (200, 204, 400, 404, 500)
    assert call(server, {"method": "getblockcount", "id": 1}).status == 200
