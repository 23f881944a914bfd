-- v3 -> v4: Matrix catch-up cursor
-- Where the bridge bot's /sync stopped when it last looked for Matrix events the
-- homeserver accepted but never delivered in an appservice transaction.
CREATE TABLE interop_bridge_as_cursor (
	name  TEXT PRIMARY KEY, -- what the cursor is for ("catchup")
	value TEXT NOT NULL      -- the sync token (next_batch)
);
