-- The PostgreSQL schema of the store, equal in meaning to the SQLite
-- migrations 0001-0003 (this backend starts at their end point).
-- Nothing here may hold a citizen's raw data: records are keyed by an
-- HMAC locator and hold only 16-byte field tags (see docs/hashing.md).

CREATE TABLE registry_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Argon2id parameter sets; a record names the set it was derived with, so
-- an id must never be reused with other costs.
CREATE TABLE kdf_params (
    id     BIGINT PRIMARY KEY,
    m_kib  BIGINT NOT NULL,
    t      BIGINT NOT NULL,
    p      BIGINT NOT NULL
);

CREATE TABLE citizen_records (
    locator               BYTEA PRIMARY KEY CHECK (octet_length(locator) = 32), -- HMAC-SHA256(K, "locator")
    pepper_version        BIGINT NOT NULL,
    kdf_params_id         BIGINT NOT NULL REFERENCES kdf_params(id),
    normalization_version BIGINT NOT NULL,
    registry_version      BIGINT NOT NULL,   -- the import that last changed it
    tags                  BYTEA NOT NULL,    -- RecordTags::encode
    updated_at_ms         BIGINT NOT NULL
);

CREATE TABLE tenants (
    id            TEXT COLLATE "C" PRIMARY KEY, -- byte order, as SQLite pages it
    name          TEXT NOT NULL CONSTRAINT tenants_name UNIQUE,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    policy        TEXT NOT NULL,              -- JSON, see TenantPolicy
    mtls_subject  TEXT,
    legal         TEXT NOT NULL DEFAULT '{}', -- JSON: legal name, address, tax code
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX tenants_mtls_subject ON tenants (mtls_subject) WHERE mtls_subject IS NOT NULL;

CREATE TABLE api_keys (
    key_id          TEXT PRIMARY KEY,         -- public part of the key
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    role            TEXT NOT NULL,
    secret_sha256   BYTEA NOT NULL,           -- SHA-256 of the secret part only
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT,
    revoked_at_ms   BIGINT,
    last_used_at_ms BIGINT,
    label           TEXT NOT NULL DEFAULT 'test' -- "live" or "test"
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at_ms);

-- Who changed what, when. Each row's chain_hash = SHA-256(previous
-- chain_hash || the row's canonical JSON), so editing or deleting a row
-- breaks every later hash. Values are JSON and never secrets. Writers
-- lock the table (SHARE ROW EXCLUSIVE) so sequences stay gapless when
-- replicas append at once.
CREATE TABLE admin_audit (
    sequence        BIGINT PRIMARY KEY,
    at_ms           BIGINT NOT NULL,
    actor_key_id    TEXT NOT NULL,
    actor_tenant_id TEXT NOT NULL,
    action          TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    field           TEXT NOT NULL,
    old_value       TEXT NOT NULL,
    new_value       TEXT NOT NULL,
    chain_hash      BYTEA NOT NULL
);
CREATE INDEX admin_audit_tenant ON admin_audit (tenant_id, sequence);

-- Public halves of every signing key ever used, so retired keys stay
-- published for the attestation validity window.
CREATE TABLE signing_keys (
    key_id        TEXT PRIMARY KEY,
    public_key    BYTEA NOT NULL,
    not_before_ms BIGINT NOT NULL,
    retired_at_ms BIGINT
);
