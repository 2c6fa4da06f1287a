"""Wire: BOLT-8 Noise transport, message framing, typed messages, asyncio peer connections.

Modules, lowest first: `errors` (every failure a peer can cause is a
`WireError`), `noise` (sans-IO BOLT-8 handshake and packet cipher), `framing`
(messages larger than a packet, size limits), `codec` (msgspec message
framework, JSON, strict decoding), `connection` (the asyncio shell: TCP,
timeouts, server), `bench` (in-process throughput numbers).
"""
