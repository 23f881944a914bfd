-- v0 -> v1: Latest revision

-- Login tokens the gateway checks through the auth callback (PROTOCOL.md section 9).
-- Only a SHA-256 of each token is kept: a leaked database does not let anyone log in.
-- Times are unix milliseconds, like the interop store's.
CREATE TABLE interop_bridge_login_token (
	network     TEXT    NOT NULL, -- "whatsapp" or "messenger"
	account_jid TEXT    NOT NULL, -- {integrator}-{number}@interop
	token_hash  bytea   NOT NULL,
	created_at  BIGINT  NOT NULL,
	expires_at  BIGINT  NOT NULL,
	revoked     BOOLEAN NOT NULL DEFAULT false,

	PRIMARY KEY (network, account_jid, token_hash)
);

-- Phone numbers an admin gave to Matrix users: a number is the user part of the interop
-- account, so one number belongs to at most one Matrix user per network.
CREATE TABLE interop_bridge_number (
	network     TEXT   NOT NULL,
	number      TEXT   NOT NULL, -- E.164 digits without "+"
	mxid        TEXT   NOT NULL,
	assigned_by TEXT   NOT NULL,
	assigned_at BIGINT NOT NULL,

	PRIMARY KEY (network, number)
);
CREATE INDEX interop_bridge_number_mxid_idx ON interop_bridge_number (mxid);

-- Appservice transaction events, persisted before the homeserver gets its 200 so that
-- a crash between the answer and the handling does not lose an event.
CREATE TABLE interop_bridge_as_txn (
	event_id    TEXT   PRIMARY KEY,
	txn_id      TEXT   NOT NULL,
	seq         BIGINT NOT NULL, -- arrival order across transactions
	body        TEXT   NOT NULL, -- the event's JSON as received
	received_at BIGINT NOT NULL,
	handled_at  BIGINT
);
CREATE INDEX interop_bridge_as_txn_unhandled_idx ON interop_bridge_as_txn (seq) WHERE handled_at IS NULL;
