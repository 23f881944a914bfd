-- v0 -> v1: Latest revision

-- media_conn credentials handed out by the simulated media hosts (PROTOCOL.md section
-- 7). Only a hash of each token is kept: the token itself is a credential.
CREATE TABLE metasim_media_token (
	token_hash TEXT   PRIMARY KEY, -- hex SHA-256 of the bearer token
	account    TEXT   NOT NULL,    -- who asked for it (a third-party account or a Meta user)
	expires_at BIGINT NOT NULL     -- unix milliseconds
);
CREATE INDEX metasim_media_token_expiry_idx ON metasim_media_token (expires_at);
