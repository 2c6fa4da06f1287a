"""Persistence: SQLite (WAL, synchronous=FULL), schema migrations, one transaction per change."""
