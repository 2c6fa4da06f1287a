"""Attack switches exist only for tests: never without --dev-tools, never off regtest."""

from __future__ import annotations

import pytest

from superscalar.node.misbehave import (
    LspMisbehaviour,
    Misbehaviour,
    MisbehaviourRefused,
)


def test_no_switch_is_always_allowed() -> None:
    Misbehaviour.check_allowed((), dev_tools=False, network="main")


def test_a_switch_needs_dev_tools() -> None:
    with pytest.raises(MisbehaviourRefused) as exc:
        Misbehaviour.check_allowed(("short-cltv",), dev_tools=False, network="regtest")
    assert exc.value.code == "needs-dev-tools"


@pytest.mark.parametrize("network", ["main", "test", "testnet4", "signet"])
def test_a_switch_is_refused_off_regtest(network: str) -> None:
    with pytest.raises(MisbehaviourRefused) as exc:
        Misbehaviour.check_allowed(("short-cltv",), dev_tools=True, network=network)
    assert exc.value.code == "not-regtest"


def test_a_switch_on_regtest_with_dev_tools_is_allowed() -> None:
    Misbehaviour.check_allowed(("short-cltv",), dev_tools=True, network="regtest")


def test_only_the_named_switch_is_on() -> None:
    m = Misbehaviour(frozenset({LspMisbehaviour.SHORT_CLTV}))
    assert m(LspMisbehaviour.SHORT_CLTV)
    assert not m(LspMisbehaviour.FAKE_CLOSE_DONE)
    assert not Misbehaviour[LspMisbehaviour]()(LspMisbehaviour.SHORT_CLTV)
