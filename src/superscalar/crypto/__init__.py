"""Crypto core: keys, tagged hashes, BIP340, MuSig2, adaptor signatures, shachain."""
