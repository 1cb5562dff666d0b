-- Signing links that can be replaced: a signer's token carries the version
-- it was made for, and only the current version opens the link. Renewing a
-- signer's link (a leaked or forwarded invitation) bumps it, so every link
-- given out before stops working at once, on every node. Existing links
-- are version 0 and keep working.
ALTER TABLE signers ADD COLUMN link_version BIGINT NOT NULL DEFAULT 0;
