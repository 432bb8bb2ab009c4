-- The hashed registry and the single-tenant credential store.
-- Nothing here may hold a citizen's raw data: records are keyed by an
-- HMAC locator and hold only 16-byte field tags (see docs/hashing.md).

CREATE TABLE registry_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Argon2id parameter sets; a record names the set it was derived with, so
-- an id must never be reused with other costs.
CREATE TABLE kdf_params (
    id     INTEGER PRIMARY KEY,
    m_kib  INTEGER NOT NULL,
    t      INTEGER NOT NULL,
    p      INTEGER NOT NULL
);

CREATE TABLE citizen_records (
    locator               BLOB PRIMARY KEY,   -- HMAC-SHA256(K, "locator")
    pepper_version        INTEGER NOT NULL,
    kdf_params_id         INTEGER NOT NULL REFERENCES kdf_params(id),
    normalization_version INTEGER NOT NULL,
    registry_version      INTEGER NOT NULL,   -- the import that last changed it
    tags                  BLOB NOT NULL,      -- RecordTags::encode
    updated_at_ms         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    policy        TEXT NOT NULL,              -- JSON, see TenantPolicy
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,           -- public part of the key
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    role          TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,              -- SHA-256 of the secret part only
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
) WITHOUT ROWID;

-- Public halves of every signing key ever used, so retired keys stay
-- published for the attestation validity window.
CREATE TABLE signing_keys (
    key_id           TEXT PRIMARY KEY,
    public_key       BLOB NOT NULL,
    not_before_ms    INTEGER NOT NULL,
    retired_at_ms    INTEGER
) WITHOUT ROWID;
