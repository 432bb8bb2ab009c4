-- Registry versions: an import builds version N beside the current one,
-- and a single write of registry_meta.registry_version switches every
-- lookup to it at once. A row belongs to versions
-- [registry_version, until_version); until_version NULL means it is in
-- the newest version (see the SQLite migration 0004 for the whole story).

ALTER TABLE citizen_records DROP CONSTRAINT citizen_records_pkey;
ALTER TABLE citizen_records ADD COLUMN until_version BIGINT;
UPDATE citizen_records SET registry_version = LEAST(registry_version,
    COALESCE((SELECT CAST(value AS BIGINT) FROM registry_meta WHERE key = 'registry_version'), 0));
ALTER TABLE citizen_records ADD PRIMARY KEY (locator, registry_version);
CREATE INDEX citizen_records_until ON citizen_records (until_version)
    WHERE until_version IS NOT NULL;
CREATE INDEX citizen_records_pepper ON citizen_records (pepper_version);
-- Finding a staged version's rows (discards, abandoned imports).
CREATE INDEX citizen_records_version ON citizen_records (registry_version);
