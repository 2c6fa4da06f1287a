"""Every node RPC method takes arbitrary JSON params and answers a value or a clear RpcError."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superscalar.chain.node import RegtestNode
from superscalar.chain.rpc import Dispatcher, RpcError
from superscalar.chain.service import NodeService

# Exceptions that can only mean a bug in a handler, never bad input handled well.
BUGS = (TypeError, AttributeError, KeyError, IndexError, AssertionError, ZeroDivisionError)
UNFUZZED = {"stop", "generatetoaddress", "generateblock"}  # they act, by design

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=80)
json_values = st.recursive(
    json_scalars
    | st.decimals(allow_nan=False, allow_infinity=False, places=8)
    | st.sampled_from(["00" * 32, "ff" * 32, "0200000000", "bcrt1qxyz", "*", "1.5"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def dispatcher(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Dispatcher, RegtestNode]]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "node"
    with RegtestNode(path) as node:
        node.mine_to_address(105, node.new_address())
        yield Dispatcher(NodeService(node).handlers()), node


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_params_get_a_result_or_a_clear_error(
    dispatcher: tuple[Dispatcher, RegtestNode], data: st.DataObject
) -> None:
    rpc, node = dispatcher
    method = data.draw(st.sampled_from(sorted(set(rpc.methods) - UNFUZZED)))
    params: list[Any] = data.draw(st.lists(json_values, max_size=4))
    height = node.height
    try:
        rpc.call(method, params)
    except RpcError as exc:
        assert not isinstance(exc.__cause__, BUGS), f"{method}{params!r}: {exc.__cause__!r}"
        assert exc.message
    assert node.height == height


def test_amounts_come_back_as_exact_decimals(dispatcher: tuple[Dispatcher, RegtestNode]) -> None:
    rpc, _ = dispatcher
    balance = rpc.call("getbalance", [])
    assert isinstance(balance, Decimal) and balance == Decimal("250.00000000")
