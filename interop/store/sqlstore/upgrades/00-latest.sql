-- v0 -> v1: Latest revision

-- Every row belongs to one local account (a bridge login or one simulated device), so
-- one database can hold many accounts; deleting the account row removes all its keys.
CREATE TABLE interop_account (
	jid             TEXT   PRIMARY KEY,
	registration_id BIGINT NOT NULL,
	identity_pub    bytea  NOT NULL,
	identity_priv   bytea  NOT NULL,
	-- the first id of the next GeneratePreKeys batch, always within 1..0xFFFFFF
	next_prekey_id  BIGINT NOT NULL DEFAULT 1,
	created_at      BIGINT NOT NULL -- unix milliseconds, like every time column here
);

CREATE TABLE interop_identity (
	account_jid TEXT   NOT NULL,
	their_name  TEXT   NOT NULL,
	device_id   BIGINT NOT NULL,
	identity    bytea  NOT NULL, -- 32-byte Curve25519 public key

	PRIMARY KEY (account_jid, their_name, device_id),
	CONSTRAINT interop_identity_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE interop_session (
	account_jid TEXT   NOT NULL,
	their_name  TEXT   NOT NULL,
	device_id   BIGINT NOT NULL,
	session     bytea  NOT NULL,

	PRIMARY KEY (account_jid, their_name, device_id),
	CONSTRAINT interop_session_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE interop_prekey (
	account_jid TEXT    NOT NULL,
	key_id      BIGINT  NOT NULL,
	record      bytea   NOT NULL,
	uploaded    BOOLEAN NOT NULL DEFAULT false,

	PRIMARY KEY (account_jid, key_id),
	CONSTRAINT interop_prekey_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE interop_signed_prekey (
	account_jid TEXT   NOT NULL,
	key_id      BIGINT NOT NULL,
	record      bytea  NOT NULL,
	created_at  BIGINT NOT NULL,

	PRIMARY KEY (account_jid, key_id),
	CONSTRAINT interop_signed_prekey_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE interop_sender_key (
	account_jid   TEXT   NOT NULL,
	group_id      TEXT   NOT NULL,
	sender_name   TEXT   NOT NULL,
	sender_device BIGINT NOT NULL,
	record        bytea  NOT NULL,

	PRIMARY KEY (account_jid, group_id, sender_name, sender_device),
	CONSTRAINT interop_sender_key_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

-- Devices that already received our current sender key for a group.
CREATE TABLE interop_sender_key_holder (
	account_jid TEXT NOT NULL,
	group_jid   TEXT NOT NULL,
	device_jid  TEXT NOT NULL,

	PRIMARY KEY (account_jid, group_jid, device_jid),
	CONSTRAINT interop_sender_key_holder_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);

-- Copies of what we sent, to re-encrypt for retry receipts.
CREATE TABLE interop_sent_message (
	account_jid TEXT   NOT NULL,
	chat_jid    TEXT   NOT NULL,
	message_id  TEXT   NOT NULL,
	plaintext   bytea  NOT NULL,
	sent_at     BIGINT NOT NULL,

	PRIMARY KEY (account_jid, chat_jid, message_id),
	CONSTRAINT interop_sent_message_account_fkey FOREIGN KEY (account_jid)
		REFERENCES interop_account (jid) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX interop_sent_message_sent_at_idx ON interop_sent_message (account_jid, sent_at);
