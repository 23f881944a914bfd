-- v1 -> v2: Outbox of received messages
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
