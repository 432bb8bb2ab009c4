-- The decision log (docs/decision-log.md): one entry per answered call,
-- appended in the transaction that records its usage event, as leaves of
-- an RFC 6962 Merkle tree.
--
-- log_heads: the size of each log; the appending transaction raises it
-- first, so concurrent writers (replicas) take turns on that row.
-- log_nodes: the hash of every complete subtree (level 0: the leaves),
-- hex. Kept forever: proofs and checkpoints need nothing else.
-- decision_entries: the entries. Retention erases `entry` and `subject`
-- (the details and the link to a person) and keeps the row, so a tenant
-- can still prove an old transaction's leaf.
-- log_checkpoints: every signed checkpoint (a C2SP signed note).

CREATE TABLE log_heads (
    log TEXT PRIMARY KEY,
    size BIGINT NOT NULL
    );

INSERT INTO log_heads (log, size) VALUES ('decisions', 0);

CREATE TABLE log_nodes (
    log TEXT NOT NULL,
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (log, level, idx)
    );

CREATE TABLE decision_entries (
    idx BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL UNIQUE,
    subject TEXT,
    entry TEXT
    );

CREATE INDEX decision_entries_by_subject ON decision_entries (subject);

CREATE INDEX decision_entries_by_time ON decision_entries (time_ms);

CREATE TABLE log_checkpoints (
    log TEXT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    signed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (log, size)
    );
