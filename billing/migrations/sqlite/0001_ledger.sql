-- The usage ledger and invoices (SQLite).
--
-- IF NOT EXISTS: ledgers written before the ledger had migrations already
-- hold exactly these tables (created by the same statements at start-up),
-- and this first migration adopts them as they are.
--
-- usage_events: one row per billable call, keyed by (tenant, request id);
-- `fingerprint` is a keyed hash of the request and `replay` the stored
-- answer (no personal data in either; replay is cleared after the
-- idempotency window). invoice_numbers: the last number issued per
-- issuer, so numbers stay gapless.

CREATE TABLE IF NOT EXISTS usage_events (
    tenant_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    event_time_ms BIGINT NOT NULL,
    method TEXT NOT NULL,
    fields TEXT NOT NULL,
    units BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    replay TEXT,
    invoice_number TEXT,
    PRIMARY KEY (tenant_id, request_id)
    );

CREATE INDEX IF NOT EXISTS usage_events_by_time
    ON usage_events (tenant_id, event_time_ms);

CREATE INDEX IF NOT EXISTS usage_events_by_invoice
    ON usage_events (invoice_number);

CREATE TABLE IF NOT EXISTS price_plans (
    plan_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plan_id, version)
    );

CREATE TABLE IF NOT EXISTS invoices (
    invoice_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    number TEXT UNIQUE,
    document TEXT NOT NULL,
    key_id TEXT,
    signature TEXT,
    created_at_ms BIGINT NOT NULL
    );

CREATE UNIQUE INDEX IF NOT EXISTS one_final_invoice_per_period
    ON invoices (tenant_id, period) WHERE status = 'final';

CREATE UNIQUE INDEX IF NOT EXISTS one_draft_per_period
    ON invoices (tenant_id, period) WHERE status = 'draft';

CREATE TABLE IF NOT EXISTS invoice_numbers (
    issuer TEXT PRIMARY KEY,
    last_number BIGINT NOT NULL
    );
