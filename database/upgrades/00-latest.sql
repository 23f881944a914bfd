-- v0 -> v4: Latest revision

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

-- The outbox of received messages.
-- A decrypted message is written here in the Signal store's transaction, so it commits
-- with the ratchet step before the stanza is acked, and is deleted once bridgev2
-- handled it: a crash between the ack and bridgev2 replays it instead of losing it.
CREATE TABLE interop_bridge_incoming (
	login_id    TEXT    NOT NULL,
	chat        TEXT    NOT NULL, -- the peer user (1:1) or the group JID
	sender      TEXT    NOT NULL, -- the sending device JID
	stanza_id   TEXT    NOT NULL,
	seq         BIGINT  NOT NULL, -- arrival order within the login
	is_group    BOOLEAN NOT NULL,
	sent_at     BIGINT  NOT NULL, -- unix ms from the stanza's t, 0 when absent
	msg_type    TEXT    NOT NULL, -- text, media or reaction
	media_type  TEXT    NOT NULL,
	edit        TEXT    NOT NULL,
	push_name   TEXT    NOT NULL,
	message     bytea, -- the serialized waE2E.Message; NULL when it did not decrypt
	received_at BIGINT  NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0, -- failed handlings by bridgev2 so far

	PRIMARY KEY (login_id, chat, sender, stanza_id)
);
CREATE INDEX interop_bridge_incoming_seq_idx ON interop_bridge_incoming (login_id, seq);

-- Hosted media.
-- The encrypted blobs the bridge's users send, which Meta's proxy fetches from the bridge
-- (PROTOCOL.md section 7). The blob itself is in the media store under its name; this
-- row says which network may fetch it, which message it belongs to (revoking the
-- message deletes it) and when it was stored (the sweeper deletes it after the
-- retention period).
CREATE TABLE interop_bridge_hosted_media (
	name       TEXT   PRIMARY KEY, -- random, URL-safe: the last segment of the blob's URL
	network    TEXT   NOT NULL,    -- the network whose callback secret may fetch it
	login_id   TEXT   NOT NULL,
	message_id TEXT   NOT NULL,
	size       BIGINT NOT NULL,    -- bytes of the encrypted blob; 0 while it is being written
	created_at BIGINT NOT NULL     -- unix ms
);
CREATE INDEX interop_bridge_hosted_media_message_idx ON interop_bridge_hosted_media (login_id, message_id);
CREATE INDEX interop_bridge_hosted_media_created_idx ON interop_bridge_hosted_media (created_at);

-- Matrix catch-up cursor.
-- Where the bridge bot's /sync stopped when it last looked for Matrix events the
-- homeserver accepted but never delivered in an appservice transaction.
CREATE TABLE interop_bridge_as_cursor (
	name  TEXT PRIMARY KEY, -- what the cursor is for ("catchup")
	value TEXT NOT NULL      -- the sync token (next_batch)
);
