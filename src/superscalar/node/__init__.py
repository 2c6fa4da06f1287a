"""The daemons: thin asyncio shells (sockets, chain, SQLite) around the sans-IO factory core."""
