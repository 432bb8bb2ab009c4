-- Registry versions: an import builds version N beside the current one,
-- and a single write of registry_meta.registry_version switches every
-- lookup to it at once. A row belongs to versions
-- [registry_version, until_version); until_version NULL means it is in
-- the newest version. Lookups read the row valid at the current version,
-- so rows staged for N (registry_version = N) and rows N closes
-- (until_version = N) are invisible until the switch. A failed import's
-- rows are removed by the next import; rows no longer visible to the
-- current version are purged then too.

CREATE TABLE citizen_records_versioned (
    locator               BLOB NOT NULL,      -- HMAC-SHA256(K, "locator")
    registry_version      INTEGER NOT NULL,   -- first version holding this row
    until_version         INTEGER,            -- first version without it; NULL: newest
    pepper_version        INTEGER NOT NULL,
    kdf_params_id         INTEGER NOT NULL REFERENCES kdf_params(id),
    normalization_version INTEGER NOT NULL,
    tags                  BLOB NOT NULL,      -- RecordTags::encode
    updated_at_ms         INTEGER NOT NULL,
    PRIMARY KEY (locator, registry_version)
) WITHOUT ROWID;

-- Before versions, an import that failed after writing left rows stamped
-- with a version that never became current, and lookups still saw them:
-- they keep being seen, as rows of the current version.
INSERT INTO citizen_records_versioned
SELECT locator,
       MIN(registry_version,
           COALESCE((SELECT CAST(value AS INTEGER) FROM registry_meta
                     WHERE key = 'registry_version'), 0)),
       NULL, pepper_version, kdf_params_id, normalization_version, tags, updated_at_ms
FROM citizen_records;

DROP TABLE citizen_records;
ALTER TABLE citizen_records_versioned RENAME TO citizen_records;
CREATE INDEX citizen_records_until ON citizen_records (until_version)
    WHERE until_version IS NOT NULL;
CREATE INDEX citizen_records_pepper ON citizen_records (pepper_version);
-- Finding a staged version's rows (discards, abandoned imports).
CREATE INDEX citizen_records_version ON citizen_records (registry_version);
