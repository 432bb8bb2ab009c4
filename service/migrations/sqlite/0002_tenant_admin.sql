-- Tenant administration: mTLS identities, key usage, and the audit trail.

ALTER TABLE tenants ADD COLUMN mtls_subject TEXT;
ALTER TABLE tenants ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX tenants_mtls_subject ON tenants (mtls_subject) WHERE mtls_subject IS NOT NULL;

ALTER TABLE api_keys ADD COLUMN last_used_at_ms INTEGER;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at_ms);

-- Who changed what, when. Each row's chain_hash = SHA-256(previous
-- chain_hash || the row's canonical JSON), so editing or deleting a row
-- breaks every later hash. Values are JSON and never secrets.
CREATE TABLE admin_audit (
    sequence        INTEGER PRIMARY KEY,   -- gapless: max + 1 in the writing transaction
    at_ms           INTEGER NOT NULL,
    actor_key_id    TEXT NOT NULL,
    actor_tenant_id TEXT NOT NULL,
    action          TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    field           TEXT NOT NULL,
    old_value       TEXT NOT NULL,
    new_value       TEXT NOT NULL,
    chain_hash      BLOB NOT NULL
);
CREATE INDEX admin_audit_tenant ON admin_audit (tenant_id, sequence);

-- "live" or "test": the label in the key's prefix, kept so a rotation
-- issues the same kind of key.
ALTER TABLE api_keys ADD COLUMN label TEXT NOT NULL DEFAULT 'test';
