"""`superscalar demo --rotation`: factory 0 dies, its clients move to factory 1, no sat lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from superscalar.cli.rotation import FEERATE, RotationResult, run_rotation


@pytest.fixture(scope="module")
def rotation(tmp_path_factory: pytest.TempPathFactory) -> RotationResult:
    return run_rotation(Path(tmp_path_factory.mktemp("rotation")))


def test_the_rotation_demo_succeeds(rotation: RotationResult) -> None:
    assert rotation.ok


def test_every_client_moves_with_its_exact_msat_balance(rotation: RotationResult) -> None:
    assert rotation.balances_moved == rotation.balances_before
    assert rotation.balances_before["alice"] != rotation.balances_before["bob"]  # paid before


def test_a_dying_factory_refuses_new_htlcs(rotation: RotationResult) -> None:
    assert "dying" in rotation.refused_htlc


def test_the_lsp_alone_close_pays_an_exact_fee_for_its_size(rotation: RotationResult) -> None:
    assert rotation.close0_fee == FEERATE.fee_for_vsize(rotation.close0_vsize)
    assert rotation.close0_txid


def test_factory_one_closes_paying_each_client_its_balance(rotation: RotationResult) -> None:
    expected = {n: v // 1000 for n, v in rotation.balances_moved.items()}
    expected["bob"] -= 20_000  # bob paid carol in factory 1
    expected["carol"] += 20_000
    assert rotation.close1_payouts == expected


def test_two_factories_are_alive_during_the_rotation(rotation: RotationResult) -> None:
    assert {"factory 0": "dying", "factory 1": "active"}.items() <= rotation.phases[-1].items()
