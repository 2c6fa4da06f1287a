"""Bitcoin layer: transactions, scripts, taproot, BIP341 sighashes, addresses, locks, fees.

Everything here is pure (no I/O) and exact: money is integer satoshis and all
curve math goes through `superscalar.crypto` (libsecp256k1).
"""
