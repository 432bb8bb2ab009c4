-- What a signing key signs: `attestation` (answers and invoices, every
-- key before this migration) or `checkpoint` (the decision log's
-- checkpoints). One current key per purpose.
ALTER TABLE signing_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'attestation';
