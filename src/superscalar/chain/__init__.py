"""Chain access: script checks through Bitcoin Core's kernel, the embedded regtest
node, and the bitcoind JSON-RPC client every daemon uses."""
