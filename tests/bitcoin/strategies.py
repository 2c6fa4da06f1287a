"""Hypothesis strategies for bitcoin-layer values: outpoints, inputs, outputs, transactions."""

from __future__ import annotations

from hypothesis import strategies as st

from superscalar.bitcoin.tx import MAX_MONEY, OutPoint, Transaction, TxIn, TxOut

u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
amounts = st.integers(min_value=0, max_value=MAX_MONEY)
scripts = st.binary(max_size=80)

outpoints = st.builds(OutPoint, st.binary(min_size=32, max_size=32), u32)
witness_items = st.binary(max_size=80)
witnesses = st.lists(witness_items, max_size=4).map(tuple)


@st.composite
def tx_inputs(draw: st.DrawFn, with_witness: bool | None = None) -> TxIn:
    """A TxIn; `with_witness` True/False forces a non-empty/empty witness stack."""
    if with_witness is None:
        witness = draw(witnesses)
    elif with_witness:
        witness = tuple(draw(st.lists(witness_items, min_size=1, max_size=4)))
    else:
        witness = ()
    return TxIn(draw(outpoints), draw(scripts), draw(u32), witness)


tx_outputs = st.builds(TxOut, amounts, scripts)


@st.composite
def transactions(
    draw: st.DrawFn, with_witness: bool | None = None, min_outputs: int = 0
) -> Transaction:
    """A well-formed transaction with at least one input.

    `with_witness=True` guarantees a segwit serialization, False a legacy one.
    (Zero inputs are left out: their legacy form is indistinguishable from the
    segwit marker, and consensus refuses them anyway.)
    """
    inputs = draw(
        st.lists(tx_inputs(None if with_witness is None else False), min_size=1, max_size=4)
    )
    if with_witness:
        index = draw(st.integers(min_value=0, max_value=len(inputs) - 1))
        inputs[index] = draw(tx_inputs(True))
    outputs = draw(st.lists(tx_outputs, min_size=min_outputs, max_size=4))
    return Transaction(draw(u32), tuple(inputs), tuple(outputs), draw(u32))
