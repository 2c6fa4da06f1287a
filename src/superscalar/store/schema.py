"""The daemons' schema: migrations after the project's v1 (meta table).

Why one row per factory plus side tables: each ceremony step is one
transaction that moves `factories.state` forward together with what the step
produced (signatures, the funding tx), so a crash leaves either the old step or
the new one, never half. `nonce_use` records every attempt whose secret nonces
were generated: those nonces lived only in memory, so after a restart that
attempt can only be aborted, never signed again.
"""

from __future__ import annotations

from .migrations import MIGRATIONS, Migration

__all__ = ["DAEMON_MIGRATIONS"]

DAEMON_MIGRATIONS: tuple[Migration, ...] = (
    *MIGRATIONS,
    Migration(
        2,
        "daemon_factories",
        """
        CREATE TABLE node_kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        CREATE TABLE factories (
            factory_id TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('lsp', 'client')),
            attempt INTEGER NOT NULL,
            state TEXT NOT NULL,
            position INTEGER,
            propose TEXT NOT NULL,
            lstock_seed TEXT,
            funding_tx TEXT,
            funding_txid TEXT,
            close_tx TEXT,
            close_txid TEXT,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE factory_clients (
            factory_id TEXT NOT NULL REFERENCES factories(factory_id),
            position INTEGER NOT NULL,
            pubkey TEXT NOT NULL,
            amount_sat INTEGER NOT NULL,
            payout_script TEXT NOT NULL,
            PRIMARY KEY (factory_id, position)
        ) STRICT;
        CREATE TABLE tree_signatures (
            factory_id TEXT NOT NULL REFERENCES factories(factory_id),
            session_id INTEGER NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (factory_id, session_id)
        ) STRICT;
        CREATE TABLE nonce_use (
            factory_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            purpose TEXT NOT NULL,
            used_at INTEGER NOT NULL,
            PRIMARY KEY (factory_id, attempt, purpose)
        ) STRICT;
        """,
    ),
    Migration(
        3,
        "invoices",
        """
        CREATE TABLE invoices (
            payment_hash TEXT PRIMARY KEY,
            preimage TEXT NOT NULL,
            amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
            description TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'paid', 'cancelled')),
            created INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    Migration(
        4,
        "channels",
        """
        CREATE TABLE channels (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL,
            updated INTEGER NOT NULL,
            PRIMARY KEY (factory_id, position)
        ) STRICT;
        CREATE TABLE channel_revoked (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            number INTEGER NOT NULL,
            revoked TEXT NOT NULL,
            PRIMARY KEY (factory_id, position, number)
        ) STRICT;
        CREATE TABLE payments (
            payment_hash TEXT PRIMARY KEY,
            payee TEXT NOT NULL,
            amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
            state TEXT NOT NULL CHECK (state IN ('pending', 'complete', 'failed')),
            preimage TEXT,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    Migration(
        5,
        "forwards",
        """
        CREATE TABLE forwards (
            factory_id TEXT NOT NULL,
            up_position INTEGER NOT NULL,
            up_htlc_id INTEGER NOT NULL,
            payment_hash TEXT NOT NULL,
            amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
            cltv_expiry INTEGER NOT NULL,
            payee TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('received', 'forwarded', 'fulfilled', 'failed')),
            down_position INTEGER,
            down_htlc_id INTEGER,
            preimage TEXT,
            updated INTEGER NOT NULL,
            PRIMARY KEY (factory_id, up_position, up_htlc_id)
        ) STRICT;
        CREATE INDEX forwards_down ON forwards (factory_id, down_position, down_htlc_id);
        """,
    ),
    Migration(
        6,
        "watchtower",
        """
        CREATE TABLE watch_scan (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            height INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE watch_entries (
            trigger_txid TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            entry BLOB NOT NULL,
            added INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE watch_breaches (
            trigger_txid TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            height INTEGER NOT NULL,
            detected INTEGER NOT NULL,
            spender TEXT,
            won INTEGER,
            resolved_height INTEGER
        ) STRICT;
        CREATE TABLE watch_hints (
            hint_id TEXT NOT NULL,
            client TEXT NOT NULL,
            blob BLOB NOT NULL,
            received INTEGER NOT NULL,
            PRIMARY KEY (hint_id, client)
        ) STRICT;
        CREATE TABLE watch_outbox (
            tower TEXT NOT NULL,
            hint_id TEXT NOT NULL,
            blob BLOB NOT NULL,
            sent INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tower, hint_id)
        ) STRICT;
        CREATE TABLE dev_commitments (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            number INTEGER NOT NULL,
            tx TEXT NOT NULL,
            sweep TEXT NOT NULL,
            PRIMARY KEY (factory_id, position, number)
        ) STRICT;
        """,
    ),
    Migration(
        7,
        "ladder_turnovers",
        """
        CREATE TABLE turnovers (
            old_factory TEXT NOT NULL,
            client_key TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('lsp', 'client')),
            new_factory TEXT NOT NULL,
            lsp_key TEXT NOT NULL,
            stage TEXT NOT NULL,
            presig TEXT,
            secret TEXT,
            reason TEXT NOT NULL DEFAULT '',
            updated INTEGER NOT NULL,
            PRIMARY KEY (old_factory, client_key, role)
        ) STRICT;
        CREATE TABLE factory_balances (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            client_msat INTEGER NOT NULL CHECK (client_msat >= 0),
            rung INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (factory_id, position)
        ) STRICT;
        """,
    ),
    Migration(
        8,
        "ptlc_moves",
        """
        CREATE TABLE ptlc_moves (
            new_factory TEXT NOT NULL,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('lsp', 'client')),
            old_factory TEXT NOT NULL,
            old_key TEXT NOT NULL,
            amount_msat INTEGER NOT NULL CHECK (amount_msat >= 0),
            stage TEXT NOT NULL,
            htlc_id INTEGER,
            cltv_expiry INTEGER,
            reason TEXT NOT NULL DEFAULT '',
            updated INTEGER NOT NULL,
            PRIMARY KEY (new_factory, position, role)
        ) STRICT;
        """,
    ),
    Migration(
        9,
        "distribution_txs",
        """
        CREATE TABLE distributions (
            factory_id TEXT PRIMARY KEY,
            terms TEXT NOT NULL,
            locktime INTEGER NOT NULL CHECK (locktime > 0),
            payout_sat INTEGER,
            tx TEXT,
            state TEXT NOT NULL DEFAULT 'unsigned'
                CHECK (state IN ('unsigned', 'held', 'broadcast')),
            broadcast_txid TEXT,
            updated INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    Migration(
        10,
        "leaf_advances",
        """
        CREATE TABLE leaf_advances (
            factory_id TEXT NOT NULL,
            leaf INTEGER NOT NULL,
            generation INTEGER NOT NULL,
            stage TEXT NOT NULL
                CHECK (stage IN ('proposed', 'nonces', 'psigs', 'done', 'abandoned')),
            buyer INTEGER NOT NULL,
            amount_sat INTEGER NOT NULL CHECK (amount_sat > 0),
            old_tx TEXT NOT NULL,
            old_sig TEXT,
            new_tx TEXT NOT NULL,
            new_sig TEXT,
            lstock_point TEXT NOT NULL,
            lstock_secret TEXT,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            PRIMARY KEY (factory_id, leaf, generation)
        ) STRICT;
        CREATE TABLE channel_anchors (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            generation INTEGER NOT NULL,
            stage TEXT NOT NULL CHECK (stage IN ('pending', 'retired')),
            state TEXT NOT NULL,
            PRIMARY KEY (factory_id, position, generation)
        ) STRICT;
        CREATE TABLE channel_revoked_retired (
            generation INTEGER NOT NULL,
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            number INTEGER NOT NULL,
            revoked TEXT NOT NULL,
            PRIMARY KEY (factory_id, position, generation, number)
        ) STRICT;
        CREATE TABLE forwards_retired (
            generation INTEGER NOT NULL,
            factory_id TEXT NOT NULL,
            up_position INTEGER NOT NULL,
            up_htlc_id INTEGER NOT NULL,
            payment_hash TEXT NOT NULL,
            amount_msat INTEGER NOT NULL,
            cltv_expiry INTEGER NOT NULL,
            payee TEXT NOT NULL,
            state TEXT NOT NULL,
            down_position INTEGER,
            down_htlc_id INTEGER,
            preimage TEXT,
            updated INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    Migration(
        11,
        "distribution_kickoffs",
        """
        CREATE TABLE kickoffs (
            factory_id TEXT PRIMARY KEY,
            tx TEXT NOT NULL,
            txid TEXT NOT NULL,
            locktime INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'decided'
                CHECK (state IN ('decided', 'broadcast', 'confirmed')),
            decided_height INTEGER NOT NULL,
            confirmed_height INTEGER,
            updated INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    Migration(
        12,
        "client_exits",
        """
        CREATE TABLE exits (
            factory_id TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'done')),
            requested_height INTEGER NOT NULL,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE exit_steps (
            factory_id TEXT NOT NULL REFERENCES exits(factory_id),
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            tx TEXT NOT NULL,
            txid TEXT NOT NULL,
            delay INTEGER NOT NULL,
            cpfp INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'waiting'
                CHECK (state IN ('waiting', 'broadcast', 'confirmed')),
            child TEXT,
            wait_height INTEGER,
            confirmed_height INTEGER,
            last_error TEXT,
            PRIMARY KEY (factory_id, idx)
        ) STRICT;
        """,
    ),
    Migration(
        13,
        "barred_peers",
        """
        CREATE TABLE barred_peers (
            old_factory TEXT NOT NULL,
            pubkey TEXT NOT NULL,
            code TEXT NOT NULL,
            reason TEXT NOT NULL,
            height INTEGER NOT NULL,
            created INTEGER NOT NULL,
            PRIMARY KEY (old_factory, pubkey)
        ) STRICT;
        """,
    ),
    Migration(
        14,
        "lsp_htlc_enforcement",
        """
        ALTER TABLE forwards ADD COLUMN out_expiry INTEGER;
        ALTER TABLE forwards_retired ADD COLUMN out_expiry INTEGER;
        CREATE TABLE enforcements (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'done')),
            reason TEXT NOT NULL,
            requested_height INTEGER NOT NULL,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            PRIMARY KEY (factory_id, position)
        ) STRICT;
        CREATE TABLE enforce_steps (
            factory_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            tx TEXT NOT NULL,
            txid TEXT NOT NULL,
            delay INTEGER NOT NULL,
            cpfp INTEGER NOT NULL,
            amount_msat INTEGER,
            state TEXT NOT NULL DEFAULT 'waiting'
                CHECK (state IN ('waiting', 'broadcast', 'confirmed', 'skipped')),
            child TEXT,
            wait_height INTEGER,
            confirmed_height INTEGER,
            last_error TEXT,
            PRIMARY KEY (factory_id, position, idx),
            FOREIGN KEY (factory_id, position) REFERENCES enforcements(factory_id, position)
        ) STRICT;
        """,
    ),
)
