-- v0 -> v1: Latest revision

-- Every table is keyed by network ("whatsapp" or "messenger"): the simulator runs one
-- gateway per network over one database. Times are unix milliseconds.

-- Meta users (WhatsApp phones or Messenger ids), driven by the control API.
CREATE TABLE metasim_user (
	network       TEXT    NOT NULL,
	jid           TEXT    NOT NULL,
	phone         TEXT    NOT NULL DEFAULT '', -- E.164 digits, for contact lookups
	name          TEXT    NOT NULL DEFAULT '',
	read_receipts BOOLEAN NOT NULL,
	eea           BOOLEAN NOT NULL,
	-- device ids are never reused, as in WhatsApp, so a removed device's sessions
	-- cannot be mistaken for a new one's
	next_device   BIGINT  NOT NULL DEFAULT 1,
	created_at    BIGINT  NOT NULL,

	PRIMARY KEY (network, jid)
);
CREATE INDEX metasim_user_phone_idx ON metasim_user (network, phone);

CREATE TABLE metasim_device (
	network    TEXT   NOT NULL,
	jid        TEXT   NOT NULL, -- device JID
	user_jid   TEXT   NOT NULL,
	device_id  BIGINT NOT NULL,
	created_at BIGINT NOT NULL,

	PRIMARY KEY (network, jid),
	CONSTRAINT metasim_device_user_fkey FOREIGN KEY (network, user_jid)
		REFERENCES metasim_user (network, jid) ON DELETE CASCADE
);
CREATE INDEX metasim_device_user_idx ON metasim_device (network, user_jid);

-- A row means: third-party chats are on and this integrator is allowed.
CREATE TABLE metasim_optin (
	network    TEXT   NOT NULL,
	user_jid   TEXT   NOT NULL,
	integrator BIGINT NOT NULL,

	PRIMARY KEY (network, user_jid, integrator),
	CONSTRAINT metasim_optin_user_fkey FOREIGN KEY (network, user_jid)
		REFERENCES metasim_user (network, jid) ON DELETE CASCADE
);

-- Third-party accounts, known from their first accepted login.
CREATE TABLE metasim_account (
	network       TEXT    NOT NULL,
	jid           TEXT    NOT NULL,
	integrator    BIGINT  NOT NULL,
	read_receipts BOOLEAN NOT NULL, -- enableReadReceipts of the latest connection
	first_seen    BIGINT  NOT NULL,
	last_seen     BIGINT  NOT NULL,

	PRIMARY KEY (network, jid)
);

-- The key directory: one row per device (Meta device or third-party account) that
-- uploaded keys.
CREATE TABLE metasim_keys (
	network      TEXT   NOT NULL,
	device_jid   TEXT   NOT NULL,
	user_jid     TEXT   NOT NULL,
	registration BIGINT NOT NULL,
	identity     bytea  NOT NULL,
	skey_id      BIGINT NOT NULL,
	skey_pub     bytea  NOT NULL,
	skey_sig     bytea  NOT NULL,
	updated_at   BIGINT NOT NULL,

	PRIMARY KEY (network, device_jid)
);
CREATE INDEX metasim_keys_user_idx ON metasim_keys (network, user_jid);

CREATE TABLE metasim_prekey (
	network    TEXT   NOT NULL,
	device_jid TEXT   NOT NULL,
	key_id     BIGINT NOT NULL,
	pub        bytea  NOT NULL,

	PRIMARY KEY (network, device_jid, key_id)
);

CREATE TABLE metasim_group (
	network        TEXT   NOT NULL,
	jid            TEXT   NOT NULL,
	creator        TEXT   NOT NULL,
	subject        TEXT   NOT NULL,
	subject_owner  TEXT   NOT NULL,
	subject_t      BIGINT NOT NULL,
	description    TEXT   NOT NULL DEFAULT '',
	description_id TEXT   NOT NULL DEFAULT '',
	created_at     BIGINT NOT NULL,

	PRIMARY KEY (network, jid)
);

CREATE TABLE metasim_group_member (
	network   TEXT   NOT NULL,
	group_jid TEXT   NOT NULL,
	user_jid  TEXT   NOT NULL,
	role      TEXT   NOT NULL, -- '', 'admin' or 'superadmin'
	joined_at BIGINT NOT NULL,

	PRIMARY KEY (network, group_jid, user_jid),
	CONSTRAINT metasim_group_member_group_fkey FOREIGN KEY (network, group_jid)
		REFERENCES metasim_group (network, jid) ON DELETE CASCADE
);
CREATE INDEX metasim_group_member_user_idx ON metasim_group_member (network, user_jid);

CREATE TABLE metasim_block (
	network TEXT NOT NULL,
	blocker TEXT NOT NULL,
	blocked TEXT NOT NULL,

	PRIMARY KEY (network, blocker, blocked)
);

-- Spam reports since the reported user's last restriction.
CREATE TABLE metasim_report (
	network     TEXT   NOT NULL,
	reported    TEXT   NOT NULL,
	reporter    TEXT   NOT NULL,
	message_id  TEXT   NOT NULL,
	reported_at BIGINT NOT NULL,

	PRIMARY KEY (network, reported, reporter, message_id)
);

CREATE TABLE metasim_restriction (
	network  TEXT   NOT NULL,
	user_jid TEXT   NOT NULL,
	reason   TEXT   NOT NULL,
	until_ts BIGINT NOT NULL,

	PRIMARY KEY (network, user_jid)
);

-- Who wrote to whom (1:1, accepted messages): a Meta user that never wrote to a
-- third-party account makes a new conversation for the rate limit, and identity and
-- device changes are announced to the users a user talked with.
CREATE TABLE metasim_contact (
	network   TEXT   NOT NULL,
	from_user TEXT   NOT NULL,
	to_user   TEXT   NOT NULL,
	first_at  BIGINT NOT NULL,

	PRIMARY KEY (network, from_user, to_user)
);
CREATE INDEX metasim_contact_to_idx ON metasim_contact (network, to_user);

-- New conversations a third-party account started, for the 24 h limit.
CREATE TABLE metasim_conversation (
	network    TEXT   NOT NULL,
	account    TEXT   NOT NULL,
	peer       TEXT   NOT NULL,
	started_at BIGINT NOT NULL,

	PRIMARY KEY (network, account, peer)
);

-- Stanzas waiting for an endpoint's ack: sent again on every connection until acked.
-- seq only grows (never reused), so a connection can send "everything after seq".
CREATE TABLE metasim_queue (
-- only: postgres
	seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
-- only: sqlite
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	network     TEXT   NOT NULL,
	endpoint    TEXT   NOT NULL,
	class       TEXT   NOT NULL,
	stanza_id   TEXT   NOT NULL,
	-- the receipt or notification type: a delivered and a read receipt for one
	-- message share class, id and from, and the client's ack echoes the type
	stanza_type TEXT   NOT NULL,
	from_jid    TEXT   NOT NULL,
	participant TEXT   NOT NULL,
	frame       bytea  NOT NULL,
	created_at  BIGINT NOT NULL
);
CREATE INDEX metasim_queue_endpoint_idx ON metasim_queue (network, endpoint, seq);
CREATE INDEX metasim_queue_ack_idx ON metasim_queue (network, endpoint, class, stanza_id);
CREATE INDEX metasim_queue_created_idx ON metasim_queue (created_at);
