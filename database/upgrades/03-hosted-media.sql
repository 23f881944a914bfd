-- v2 -> v3: Hosted media
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
