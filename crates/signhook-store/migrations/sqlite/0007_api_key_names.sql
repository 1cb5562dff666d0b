-- API keys a tenant manages itself: a name to tell them apart, and the last
-- four characters of the key to recognize it by (the key itself is only
-- ever stored as its SHA-256). Keys from before are named `default`.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT 'default';
ALTER TABLE api_keys ADD COLUMN hint TEXT NOT NULL DEFAULT '';
