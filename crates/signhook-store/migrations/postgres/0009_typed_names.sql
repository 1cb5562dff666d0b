-- A signer signs by agreeing to sign electronically and typing their full
-- name (issue 15). The consent is part of every signature, so only the name
-- needs a column; both also go into the audit trail with the signer's time,
-- IP and user agent. Signatures from before have none.
ALTER TABLE signers ADD COLUMN typed_name TEXT;
