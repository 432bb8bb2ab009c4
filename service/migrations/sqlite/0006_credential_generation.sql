-- The credential generation: one counter, raised in the same transaction
-- as every change to a tenant or an API key (store/credentials.rs). An
-- authentication may reuse the key and tenant it read earlier only while
-- the counter still reads what it read then, so a cached credential never
-- outlives a revocation or a suspension. A migration that changes tenants
-- or keys must raise it too.
CREATE TABLE credential_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO credential_generation (id, generation) VALUES (1, 0);
