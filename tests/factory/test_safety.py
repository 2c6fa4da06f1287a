"""The client's own bounds on proposed factory terms (`factory.safety`): each bound refused
with its code, its boundary accepted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from superscalar.factory.safety import (
    MAINNET_SAFETY,
    REGTEST_SAFETY,
    ClientSafety,
    TermsRefused,
    check_exit_window,
    check_params,
    exit_window,
    safety_for,
)
from superscalar.factory.shape import DWParams, FactoryParams, FeePolicy

HEIGHT = 1000
SAFETY = ClientSafety(
    min_factory_life=100,
    confirm_margin=5,
    min_dw_step=2,
    max_dw_step=20,
    max_states_per_layer=8,
    max_arity=4,
    max_anchor_value=500,
    max_exit_delay=300,
)


def _params(**kw: Any) -> FactoryParams:
    return FactoryParams(
        cltv_timeout=kw.get("cltv", HEIGHT + 100),
        arity=kw.get("arity", (2,)),
        dw=DWParams(kw.get("states", 4), kw.get("step", 10)),
        fees=FeePolicy(anchor_value=kw.get("anchor", 240)),
    )


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"cltv": HEIGHT + 100}, None),  # exactly the minimum life
        ({"cltv": HEIGHT + 99}, "cltv-too-soon"),
        ({"cltv": HEIGHT + 25}, "cltv-too-soon"),
        ({"cltv": HEIGHT - 1}, "cltv-too-soon"),
        ({"step": 2}, None),
        ({"step": 1}, "dw-step-too-short"),
        ({"step": 20}, None),
        ({"step": 21}, "dw-step-too-long"),
        ({"states": 8}, None),
        ({"states": 9}, "too-many-states"),
        ({"arity": (2, 4)}, None),
        ({"arity": (1, 5)}, "arity-too-wide"),
        ({"arity": (2, 2, 5)}, "arity-too-wide"),
        ({"anchor": 500}, None),
        ({"anchor": 0}, None),
        ({"anchor": 501}, "anchor-too-large"),
    ],
)
def test_params_bounds(kw: dict[str, Any], code: str | None) -> None:
    params = _params(**kw)
    if code is None:
        check_params(SAFETY, params, HEIGHT)
        return
    with pytest.raises(TermsRefused) as info:
        check_params(SAFETY, params, HEIGHT)
    assert info.value.code == code
    assert str(info.value).startswith(f"{code}: ")


WORST = 60
WINDOW = WORST + SAFETY.confirm_margin  # 65


@pytest.mark.parametrize(
    ("cltv", "worst", "locktime", "code"),
    [
        (HEIGHT + 200, WORST, HEIGHT + 200 - WINDOW, None),  # locktime exactly one window early
        (HEIGHT + 200, WORST, HEIGHT + 200 - WINDOW + 1, "distribution-too-late"),
        # the old LSP default: locktime a third of the dying period before the CLTV
        (HEIGHT + 90, WORST, HEIGHT + 80, "distribution-too-late"),
        (HEIGHT + WINDOW, WORST, HEIGHT, None),  # an exit started now ends in time
        (HEIGHT + WINDOW - 1, WORST, HEIGHT - 1, "exit-window-too-short"),
        (HEIGHT + 25, WORST, HEIGHT + 15, "exit-window-too-short"),  # past one layer only
        (HEIGHT + 1000, 300, HEIGHT, None),
        (HEIGHT + 1000, 301, HEIGHT, "exit-too-slow"),
    ],
)
def test_exit_window(cltv: int, worst: int, locktime: int, code: str | None) -> None:
    if code is None:
        check_exit_window(SAFETY, cltv, HEIGHT, worst, locktime)
        return
    with pytest.raises(TermsRefused) as info:
        check_exit_window(SAFETY, cltv, HEIGHT, worst, locktime)
    assert info.value.code == code


def test_the_window_is_the_exit_delay_plus_the_margin() -> None:
    assert exit_window(60, 5) == 65


def test_network_defaults_and_overrides() -> None:
    assert safety_for("regtest") == REGTEST_SAFETY
    assert safety_for("main") == MAINNET_SAFETY
    assert safety_for("testnet4") == MAINNET_SAFETY
    ours = safety_for("regtest", min_factory_life=500, max_dw_step=None)
    assert ours == replace(REGTEST_SAFETY, min_factory_life=500)
    with pytest.raises(ValueError, match="unknown"):
        safety_for("regtest", cltv=1)
    with pytest.raises(ValueError):
        safety_for("main", max_dw_step=3)  # below mainnet's minimum step of 6


def test_regtest_defaults_accept_what_an_honest_regtest_lsp_proposes() -> None:
    """Regtest LSP defaults: 60 + 60 blocks of life, DW 4 × 2, anchor 240, arity 2; a
    2-layer tree (4 clients) has a 12-block worst exit, the locktime 32 blocks early."""
    params = _params(cltv=HEIGHT + 120, step=2)
    check_params(REGTEST_SAFETY, params, HEIGHT)
    check_exit_window(REGTEST_SAFETY, HEIGHT + 120, HEIGHT, 12, HEIGHT + 120 - 12 - 20)
