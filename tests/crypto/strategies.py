"""Hypothesis strategies for crypto values."""

from __future__ import annotations

from hypothesis import strategies as st

from superscalar.crypto.keys import CURVE_ORDER, SecretKey

scalars = st.integers(min_value=1, max_value=CURVE_ORDER - 1)
secret_keys = scalars.map(SecretKey.from_int)
messages = st.binary(min_size=32, max_size=32)
