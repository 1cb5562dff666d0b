-- The API keys page and the Team page (issue 14).
--
-- When a key last opened a request, so its owner can tell a key in use from
-- one to revoke. Written at most once a minute per key and node (the server
-- remembers when it last wrote), so it is accurate to about a minute and
-- costs no write per request. NULL: never used since this column exists.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

-- The Team page lists a tenant's users.
CREATE INDEX users_by_tenant ON users (tenant_id, created_at);
-- A user's links, to use up the old ones when an invitation is re-sent and
-- to say until when the newest one works.
CREATE INDEX user_links_by_user ON user_links (user_id);
