//! One conformance suite for every store operation, run against both
//! backends: SQLite in a temporary file, and the real PostgreSQL on
//! loopback in a database of the test's own (dropped afterwards). Each
//! check is written once and must hold on both.

use std::sync::Arc;

use ekyc_domain::field::Field;
use ekyc_domain::keys::KdfParams;
use ekyc_domain::record::{FieldTags, RecordTags};
use ekyc_service::store::{
    ApiKeyRecord, AuditEntry, DatabaseConfig, KeyWrite, PURPOSE_ATTESTATION, PURPOSE_CHECKPOINT,
    Role, STAGED_KEEP_MS, STAGING_STALE_MS, Store, StoreError, StoredRecord, Tenant, TenantPolicy,
    TenantStatus, Upserted, audit_chain_hash,
};
use ekyc_service::test_support::TestDatabase;

/// A store of one backend and what keeps it alive.
struct Backend {
    name: &'static str,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDatabase>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("ekyc.db").display());
    Backend {
        name: "sqlite",
        url,
        _dir: Some(dir),
        _db: None,
    }
}

async fn postgres() -> Backend {
    let db = TestDatabase::create().await;
    Backend {
        name: "postgres",
        url: db.url.clone(),
        _dir: None,
        _db: Some(db),
    }
}

async fn both() -> [Backend; 2] {
    [sqlite().await, postgres().await]
}

impl Backend {
    async fn open(&self) -> Store {
        Store::open(&self.url, &DatabaseConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{}: open: {e}", self.name))
    }
}

fn record(byte: u8, registry_version: u64, tag: u8) -> StoredRecord {
    let mut tags = RecordTags::default();
    tags.fields.insert(
        Field::FullName,
        FieldTags {
            exact: [tag; 16],
            folded: Some([tag ^ 1; 16]),
            // Sorted and distinct, as stored tags always are.
            tokens: {
                let mut t = vec![[tag; 16], [tag ^ 2; 16]];
                t.sort();
                t
            },
        },
    );
    StoredRecord {
        locator: [byte; 32],
        pepper_version: 1,
        kdf_params_id: KdfParams::DEFAULT.id,
        normalization_version: 1,
        registry_version,
        tags,
    }
}

fn tenant(id: &str, name: &str, mtls: Option<&str>) -> Tenant {
    Tenant {
        id: id.into(),
        name: name.into(),
        status: TenantStatus::Active,
        policy: TenantPolicy::default(),
        mtls_subject: mtls.map(str::to_string),
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        legal: Default::default(),
    }
}

fn audit(tenant_id: &str, field: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        at_ms,
        actor_key_id: "local:test".into(),
        actor_tenant_id: "agency".into(),
        action: "update_tenant".into(),
        tenant_id: tenant_id.into(),
        field: field.into(),
        old_value: "\"a\"".into(),
        new_value: "\"b\"".into(),
    }
}

fn key(id: &str, tenant_id: &str, role: Role, created_at_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.into(),
        tenant_id: tenant_id.into(),
        role,
        secret_sha256: [7; 32],
        created_at_ms,
        expires_at_ms: None,
        revoked_at_ms: None,
        last_used_at_ms: None,
        live: true,
    }
}

/// The record at `locator` and the current version, as Verify reads them.
async fn read(store: &Store, locator: &[u8; 32]) -> (Option<StoredRecord>, u64) {
    let lookup = store.lookup(locator).await.expect("read");
    (lookup.record, lookup.registry_version)
}

/// A fixed "now" for the staging claims (Unix ms).
const NOW: i64 = 1_800_000_000_000;

/// The registry: versions built beside the current one and switched at
/// once, discarded without a trace, one import's claim at a time; Verify's
/// single read, upserts that say what they did, deletes, counts, metadata
/// and KDF parameter registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_operations_agree_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        assert_eq!(
            read(&store, &[1; 32]).await,
            (None, 0),
            "{n}: an empty registry is version 0"
        );
        store
            .register_kdf_params(&KdfParams::DEFAULT)
            .await
            .expect("params");
        store
            .register_kdf_params(&KdfParams::DEFAULT)
            .await
            .expect("the same params again");
        let other = KdfParams {
            m_kib: KdfParams::DEFAULT.m_kib * 2,
            ..KdfParams::DEFAULT
        };
        assert!(
            matches!(
                store.register_kdf_params(&other).await,
                Err(StoreError::ParamsConflict(id)) if id == other.id
            ),
            "{n}: a params id reused with other costs is refused"
        );

        // Version 1: staged, invisible, then published in one switch.
        let (a, b1, c) = (record(1, 1, 1), record(2, 1, 2), record(3, 1, 3));
        let v1 = store.begin_version(NOW, 1).await.expect("begin");
        assert_eq!(v1.version, 1, "{n}");
        let done = store
            .upsert_records(&v1, &[a.clone(), b1.clone(), c.clone()], NOW)
            .await
            .expect("insert");
        assert_eq!(done, [Upserted::Inserted; 3], "{n}");
        assert_eq!(
            read(&store, &[1; 32]).await,
            (None, 0),
            "{n}: a staged version is invisible"
        );
        assert_eq!(store.count_records().await.expect("count"), 0, "{n}");
        store.publish_version(&v1, &[]).await.expect("publish");
        assert_eq!(read(&store, &[1; 32]).await, (Some(a.clone()), 1), "{n}");
        assert_eq!(store.count_records().await.expect("count"), 3, "{n}");

        // Version 2: an unchanged, a changed and a deleted record; the
        // current version answers unchanged until the switch.
        let v2 = store.begin_version(NOW, 1).await.expect("begin");
        let changed = record(2, 2, 9);
        let done = store
            .upsert_records(&v2, &[a.clone(), changed.clone()], NOW)
            .await
            .expect("upsert");
        assert_eq!(done, [Upserted::Unchanged, Upserted::Updated], "{n}");
        assert_eq!(
            store
                .delete_records(&v2, &[[3; 32], [3; 32], [8; 32]], NOW)
                .await
                .expect("delete"),
            1,
            "{n}: deletes count the records the version held"
        );
        assert_eq!(
            read(&store, &[2; 32]).await,
            (Some(b1.clone()), 1),
            "{n}: the old record answers while the new version is built"
        );
        assert_eq!(
            read(&store, &[3; 32]).await,
            (Some(c.clone()), 1),
            "{n}: a staged delete is invisible too"
        );
        store.publish_version(&v2, &[]).await.expect("publish");
        assert_eq!(
            read(&store, &[2; 32]).await,
            (Some(changed.clone()), 2),
            "{n}: the changed record carries its new registry version"
        );
        assert_eq!(
            read(&store, &[1; 32]).await,
            (Some(a.clone()), 2),
            "{n}: an unchanged record keeps the version that wrote it"
        );
        assert_eq!(
            read(&store, &[3; 32]).await,
            (None, 2),
            "{n}: deleted in version 2"
        );
        assert_eq!(store.count_records().await.expect("count"), 2, "{n}");
        assert_eq!(store.registry_version().await.expect("version"), 2, "{n}");

        // A discarded version leaves no trace; one claim at a time.
        let v3 = store.begin_version(NOW, 1).await.expect("begin");
        assert!(
            matches!(
                store.begin_version(NOW + 1_000, 1).await,
                Err(StoreError::ImportInProgress { version: 3, .. })
            ),
            "{n}: a second import is refused while the first is active"
        );
        store
            .upsert_records(&v3, &[record(4, 3, 4)], NOW)
            .await
            .expect("staged");
        store
            .delete_records(&v3, &[[1; 32]], NOW)
            .await
            .expect("staged delete");
        store.discard_version(&v3).await.expect("discard");
        assert_eq!(
            read(&store, &[1; 32]).await,
            (Some(a.clone()), 2),
            "{n}: a discarded delete never happened"
        );
        // Beginning version 3 purged version 1's rows that version 2
        // replaced; the discard removed the staged row: a and the change.
        assert_eq!(
            raw_count(&b.url, "SELECT COUNT(*) FROM citizen_records").await,
            2,
            "{n}: nothing of the discarded version is stored"
        );

        // An abandoned claim is taken over once idle, and its writer can
        // no longer write.
        let abandoned = store.begin_version(NOW, 1).await.expect("begin");
        store
            .upsert_records(&abandoned, &[record(5, 3, 5)], NOW)
            .await
            .expect("staged");
        let later = NOW + STAGING_STALE_MS;
        let v3 = store.begin_version(later, 1).await.expect("take over");
        assert_eq!(v3.version, 3, "{n}");
        assert!(
            matches!(
                store
                    .upsert_records(&abandoned, &[record(6, 3, 6)], later)
                    .await,
                Err(StoreError::Stale)
            ),
            "{n}: the abandoned import cannot write into the new claim"
        );
        // A record deleted in version 2 comes back as new; a record
        // written twice into one version keeps the last.
        let again = store
            .upsert_records(&v3, &[record(3, 3, 7), record(2, 3, 10)], later)
            .await
            .expect("upsert");
        assert_eq!(again, [Upserted::Inserted, Upserted::Updated], "{n}");
        let twice = store
            .upsert_records(&v3, &[record(2, 3, 11)], later)
            .await
            .expect("upsert");
        assert_eq!(twice, [Upserted::Updated], "{n}");
        store.publish_version(&v3, &[]).await.expect("publish");
        assert_eq!(
            read(&store, &[2; 32]).await,
            (Some(record(2, 3, 11)), 3),
            "{n}"
        );
        assert_eq!(
            read(&store, &[5; 32]).await,
            (None, 3),
            "{n}: the abandoned import's record was removed"
        );
        assert_eq!(store.count_records().await.expect("count"), 3, "{n}");
        // The next import purges rows the current version no longer sees
        // (record 2 as version 2 wrote it).
        let v4 = store.begin_version(later, 1).await.expect("begin");
        store.discard_version(&v4).await.expect("discard");
        assert_eq!(
            raw_count(&b.url, "SELECT COUNT(*) FROM citizen_records").await,
            3,
            "{n}: only the current version's rows are kept"
        );

        assert_eq!(store.get_meta("nothing").await.expect("meta"), None, "{n}");
        store.set_meta("k", "1").await.expect("meta");
        store.set_meta("k", "2").await.expect("meta");
        assert_eq!(
            store.get_meta("k").await.expect("meta").as_deref(),
            Some("2"),
            "{n}"
        );
        store.close().await;
    }
}

/// Tenants: unique names and mTLS subjects named in the conflict, reads
/// by id, name and subject, paging in byte order, stale updates refused
/// with nothing written, and every change's audit in its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_operations_agree_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        // Upper case sorts before lower case in byte order; a locale
        // collation would page these differently.
        for (id, name, mtls) in [
            ("t-b", "Bank B", Some("cn-b")),
            ("T-a", "Bank A", None),
            ("t-c", "Telco C", Some("cn-c")),
        ] {
            store
                .insert_tenant(&tenant(id, name, mtls), &[audit(id, "create", 1)])
                .await
                .expect("insert");
        }
        assert!(
            matches!(
                store
                    .insert_tenant(&tenant("t-d", "Bank B", None), &[audit("t-d", "create", 2)])
                    .await,
                Err(StoreError::Conflict("name"))
            ),
            "{n}: a taken name is refused by name"
        );
        assert!(
            matches!(
                store
                    .insert_tenant(&tenant("t-d", "Bank D", Some("cn-b")), &[])
                    .await,
                Err(StoreError::Conflict("mtls_subject"))
            ),
            "{n}: a taken mTLS subject is refused by name"
        );
        assert!(
            matches!(
                store
                    .insert_tenant(&tenant("t-b", "Bank E", None), &[])
                    .await,
                Err(StoreError::Conflict("id"))
            ),
            "{n}"
        );
        let page: Vec<String> = store
            .list_tenants(None, 2)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(page, ["T-a", "t-b"], "{n}: pages in byte order");
        let rest: Vec<String> = store
            .list_tenants(Some("t-b"), 10)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(rest, ["t-c"], "{n}");
        assert_eq!(
            store
                .find_tenant_by_name("Bank A")
                .await
                .expect("by name")
                .map(|t| t.id),
            Some("T-a".to_string()),
            "{n}"
        );
        assert_eq!(
            store
                .find_tenant_by_mtls_subject("cn-c")
                .await
                .expect("by subject")
                .map(|t| t.id),
            Some("t-c".to_string()),
            "{n}"
        );

        let read = store.get_tenant("t-b").await.expect("get").expect("there");
        let mut suspended = read.clone();
        suspended.status = TenantStatus::Suspended;
        suspended.updated_at_ms = 2_000;
        suspended.legal.tax_code = "0100112437".into();
        store
            .update_tenant(&suspended, read.updated_at_ms, &[audit("t-b", "status", 2)])
            .await
            .expect("update");
        assert_eq!(
            store.get_tenant("t-b").await.expect("get"),
            Some(suspended.clone()),
            "{n}: the update is read back whole"
        );
        let mut late = read.clone();
        late.name = "Late".into();
        assert!(
            matches!(
                store
                    .update_tenant(&late, read.updated_at_ms, &[audit("t-b", "name", 3)])
                    .await,
                Err(StoreError::Stale)
            ),
            "{n}: an update from a stale read is refused"
        );
        assert_eq!(
            store.get_tenant("t-b").await.expect("get"),
            Some(suspended),
            "{n}: and wrote nothing"
        );
        let trail = store.list_audit(None, None, 100).await.expect("audit");
        assert_eq!(
            trail.len(),
            4,
            "{n}: three creations and one update; refused writes left no audit"
        );
        store.close().await;
    }
}

/// API keys: insert, read with and without the tenant, newest first,
/// lifecycle updates only from the state read, use times and role counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_agree_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        store
            .insert_tenant(&tenant("t1", "Bank", None), &[])
            .await
            .expect("tenant");
        let k1 = key("k1", "t1", Role::Verifier, 10);
        let k2 = key("k2", "t1", Role::AgencyAdmin, 20);
        store
            .write_api_keys(&[KeyWrite::Insert(&k1), KeyWrite::Insert(&k2)], &[])
            .await
            .expect("keys");
        assert!(
            matches!(
                store.write_api_keys(&[KeyWrite::Insert(&k1)], &[]).await,
                Err(StoreError::Conflict("id"))
            ),
            "{n}"
        );
        let listed: Vec<String> = store
            .list_api_keys("t1")
            .await
            .expect("list")
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(listed, ["k2", "k1"], "{n}: newest first");
        let (read, with) = store
            .get_api_key_with_tenant("k1")
            .await
            .expect("read")
            .expect("there");
        assert!(read == k1, "{n}: the key reads back whole");
        assert_eq!(with.map(|t| t.id).as_deref(), Some("t1"), "{n}");
        assert!(
            store
                .get_api_key_with_tenant("nope")
                .await
                .expect("read")
                .is_none(),
            "{n}"
        );

        let revoked = ApiKeyRecord {
            revoked_at_ms: Some(30),
            ..k1.clone()
        };
        store
            .write_api_keys(
                &[KeyWrite::Update {
                    old: &k1,
                    new: &revoked,
                }],
                &[audit("t1", "revoke", 30)],
            )
            .await
            .expect("revoke");
        // A rotation that read the key before the revocation must not
        // undo it: its update is from a state that is gone.
        let expiring = ApiKeyRecord {
            expires_at_ms: Some(99),
            ..k1.clone()
        };
        assert!(
            matches!(
                store
                    .write_api_keys(
                        &[KeyWrite::Update {
                            old: &k1,
                            new: &expiring,
                        }],
                        &[],
                    )
                    .await,
                Err(StoreError::Stale)
            ),
            "{n}"
        );
        let now = store.get_api_key("k1").await.expect("read").expect("there");
        assert_eq!(now.revoked_at_ms, Some(30), "{n}: the revocation holds");
        assert_eq!(now.expires_at_ms, None, "{n}");

        store.touch_api_key("k2", 40).await.expect("touch");
        assert_eq!(
            store
                .get_api_key("k2")
                .await
                .expect("read")
                .and_then(|k| k.last_used_at_ms),
            Some(40),
            "{n}"
        );
        assert_eq!(
            store
                .count_usable_keys_with_role(Role::Verifier, 50)
                .await
                .expect("count"),
            0,
            "{n}: a revoked key is not usable"
        );
        assert_eq!(
            store
                .count_usable_keys_with_role(Role::AgencyAdmin, 50)
                .await
                .expect("count"),
            1,
            "{n}"
        );
        store.close().await;
    }
}

/// Authentication reads a key from its cache only while no tenant or key
/// has changed anywhere: two handles on one database stand for two
/// processes (or replicas), each with its own cache, and a revocation or a
/// suspension made through one is seen by the next read through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_credentials_never_outlive_a_change_made_elsewhere_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let (here, there) = (b.open().await, b.open().await);
        let t1 = tenant("t1", "Bank", None);
        there.insert_tenant(&t1, &[]).await.expect("tenant");
        let k1 = key("k1", "t1", Role::Verifier, 10);
        there
            .write_api_keys(&[KeyWrite::Insert(&k1)], &[])
            .await
            .expect("key");
        let read = |store: &Store| {
            let store = store.clone();
            async move {
                store
                    .get_api_key_with_tenant("k1")
                    .await
                    .expect("read")
                    .expect("there")
            }
        };
        let (first, _) = read(&here).await;
        assert!(first == k1, "{n}");
        assert_eq!(here.credential_cache_hits(), 0, "{n}: the first read fills");
        read(&here).await;
        assert_eq!(
            here.credential_cache_hits(),
            1,
            "{n}: nothing changed: cached"
        );

        // Revoked elsewhere: the very next read here sees it.
        let revoked = ApiKeyRecord {
            revoked_at_ms: Some(30),
            ..k1.clone()
        };
        there
            .write_api_keys(
                &[KeyWrite::Update {
                    old: &k1,
                    new: &revoked,
                }],
                &[],
            )
            .await
            .expect("revoke");
        let (key_now, _) = read(&here).await;
        assert_eq!(
            key_now.revoked_at_ms,
            Some(30),
            "{n}: the revocation holds at once"
        );
        assert_eq!(
            here.credential_cache_hits(),
            1,
            "{n}: read again after the change"
        );

        // Suspended elsewhere: likewise.
        let suspended = Tenant {
            status: TenantStatus::Suspended,
            updated_at_ms: 2_000,
            ..t1.clone()
        };
        there
            .update_tenant(&suspended, t1.updated_at_ms, &[])
            .await
            .expect("suspend");
        let (_, tenant_now) = read(&here).await;
        assert_eq!(
            tenant_now.map(|t| t.status),
            Some(TenantStatus::Suspended),
            "{n}: the suspension holds at once"
        );
        read(&here).await;
        assert_eq!(
            here.credential_cache_hits(),
            2,
            "{n}: cached again once read"
        );

        // A recorded use shows in the cached copy, so a busy key is not
        // written on every call.
        here.touch_api_key("k1", 77).await.expect("touch");
        let (touched, _) = read(&here).await;
        assert_eq!(touched.last_used_at_ms, Some(77), "{n}");
        assert_eq!(here.credential_cache_hits(), 3, "{n}");

        if n == "sqlite" {
            // A writer that announced a change and died before committing
            // leaves the announcement ahead of the database: nothing
            // cached matches it, so every read goes to the database
            // until the next change commits, and none is served stale.
            let db = b.url.trim_start_matches("sqlite://");
            let announce = format!("{db}-credentials");
            let bytes = std::fs::read(&announce).expect("announce file");
            let at = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            let mut ahead = (at + 5).to_le_bytes().to_vec();
            ahead.extend_from_slice(&(!(at + 5)).to_le_bytes());
            std::fs::write(&announce, ahead).expect("announce ahead");
            read(&here).await;
            read(&here).await;
            assert_eq!(
                here.credential_cache_hits(),
                3,
                "{n}: bypassed, not trusted"
            );
            let resumed = ApiKeyRecord {
                expires_at_ms: Some(9_000),
                ..revoked.clone()
            };
            there
                .write_api_keys(
                    &[KeyWrite::Update {
                        old: &revoked,
                        new: &resumed,
                    }],
                    &[],
                )
                .await
                .expect("change");
            let (key_now, _) = read(&here).await;
            assert_eq!(key_now.expires_at_ms, Some(9_000), "{n}");
            read(&here).await;
            assert_eq!(here.credential_cache_hits(), 4, "{n}: cached again");
        }
        here.close().await;
        there.close().await;
    }
}

/// The audit trail stays one gapless chain when many writers append at
/// once (on PostgreSQL, as replicas would), and pages newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_audit_appends_stay_one_gapless_chain_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = Arc::new(b.open().await);
        let mut writers = Vec::new();
        for w in 0..8 {
            let store = Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                for i in 0..5 {
                    let tenant_id = if w % 2 == 0 { "even" } else { "odd" };
                    store
                        .append_audit(&[
                            audit(tenant_id, &format!("w{w}-{i}-a"), i),
                            audit(tenant_id, &format!("w{w}-{i}-b"), i),
                        ])
                        .await
                        .expect("append");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        let mut all = store.list_audit(None, None, 1000).await.expect("audit");
        assert_eq!(all.len(), 80, "{n}");
        all.reverse();
        let mut previous = [0u8; 32];
        for (i, event) in all.iter().enumerate() {
            assert_eq!(event.sequence, i as i64 + 1, "{n}: gapless");
            previous = audit_chain_hash(&previous, &event.entry);
            assert_eq!(event.chain_hash, previous, "{n}: chained at {i}");
        }
        // Each pair was appended in one transaction: adjacent.
        for pair in all.chunks(2) {
            assert_eq!(
                pair[0].entry.field.trim_end_matches("-a"),
                pair[1].entry.field.trim_end_matches("-b"),
                "{n}"
            );
        }
        let odd = store
            .list_audit(Some("odd"), Some(41), 5)
            .await
            .expect("page");
        assert_eq!(odd.len(), 5, "{n}");
        assert!(
            odd.windows(2).all(|w| w[0].sequence > w[1].sequence)
                && odd
                    .iter()
                    .all(|e| e.sequence < 41 && e.entry.tenant_id == "odd"),
            "{n}: newest first, below the cursor, one tenant"
        );
        store.close().await;
    }
}

/// Signing keys: publishing one retires the others, a key that signs
/// again is current again, and current keys list first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_operations_agree_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        store
            .publish_signing_key(PURPOSE_ATTESTATION, "a", &[1; 32], 100)
            .await
            .expect("a");
        store
            .publish_signing_key(PURPOSE_ATTESTATION, "a", &[1; 32], 150)
            .await
            .expect("a again");
        store
            .publish_signing_key(PURPOSE_ATTESTATION, "b", &[2; 32], 200)
            .await
            .expect("b");
        let keys = store.list_signing_keys().await.expect("list");
        let view: Vec<(&str, i64, Option<i64>)> = keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.not_before_ms, k.retired_at_ms))
            .collect();
        assert_eq!(
            view,
            [("b", 200, None), ("a", 100, Some(200))],
            "{n}: publishing again keeps the first not-before"
        );
        store
            .publish_signing_key(PURPOSE_ATTESTATION, "a", &[1; 32], 300)
            .await
            .expect("rollback");
        let keys = store.list_signing_keys().await.expect("list");
        let view: Vec<(&str, Option<i64>)> = keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.retired_at_ms))
            .collect();
        assert_eq!(view, [("a", None), ("b", Some(300))], "{n}");
        assert_eq!(keys[0].public_key, [1; 32], "{n}");
        // A key of another purpose retires none of these, and is listed
        // with its purpose.
        store
            .publish_signing_key(PURPOSE_CHECKPOINT, "c", &[3; 32], 400)
            .await
            .expect("checkpoint key");
        let keys = store.list_signing_keys().await.expect("list");
        let view: Vec<(&str, &str, Option<i64>)> = keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.purpose.as_str(), k.retired_at_ms))
            .collect();
        assert_eq!(
            view,
            [
                ("c", PURPOSE_CHECKPOINT, None),
                ("a", PURPOSE_ATTESTATION, None),
                ("b", PURPOSE_ATTESTATION, Some(300))
            ],
            "{n}"
        );
        store.close().await;
    }
}

/// Opening is idempotent, replicas opening a fresh database at once
/// migrate it once between them, and a database a newer build migrated
/// is refused with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_race_free_and_refuse_a_newer_schema() {
    for b in both().await {
        let n = b.name;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = b.url.clone();
                tokio::spawn(async move { Store::open(&url, &DatabaseConfig::default()).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("{n}: concurrent open: {e}"));
            store.close().await;
        }
        let store = b.open().await;
        store.close().await;

        // What a newer build would leave: a migration this one lacks.
        let mark = "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                    execution_time) VALUES (9999, 'from the future', TRUE, X'00', 0)";
        let mark = if n == "postgres" {
            mark.replace("X'00'", "'\\x00'::bytea")
        } else {
            mark.to_string()
        };
        raw_execute(&b.url, &mark).await;
        match Store::open(&b.url, &DatabaseConfig::default()).await {
            Err(e @ StoreError::SchemaTooNew { found: 9999, .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("9999") && text.contains("newer than this ekycd"),
                    "{n}: {text}"
                );
            }
            Err(e) => panic!("{n}: wrong refusal: {e}"),
            Ok(_) => panic!("{n}: a newer schema was accepted"),
        }
    }
}

/// An unreachable database is "unavailable" (callers fail closed with
/// `UNAVAILABLE`), not an internal fault.
#[tokio::test]
async fn an_unreachable_postgres_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // Nothing listens there once the listener above is dropped.
    let config = DatabaseConfig {
        acquire_timeout_ms: 500,
        ..DatabaseConfig::default()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    match Store::open(&url, &config).await {
        Err(e) => assert!(e.is_unavailable(), "not unavailable: {e:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// A plain connection to a backend's database (either driver, through
/// `sqlx::Any`), for what the store API cannot do: an old schema, a
/// newer build's mark, a count of every stored row.
async fn raw_connection(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite") {
        format!("{url}?mode=rwc")
    } else {
        url.to_string()
    };
    sqlx::AnyConnection::connect(&url).await.expect("connect")
}

async fn raw_execute(url: &str, sql: &str) {
    let mut c = raw_connection(url).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .expect("execute");
}

async fn raw_count(url: &str, sql: &str) -> i64 {
    let mut c = raw_connection(url).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .expect("count")
}

/// A registry written before versions existed (its last migration before
/// them applied) keeps answering every record after the upgrade, also one
/// left by an import that failed before its version was recorded (which
/// lookups saw then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_a_registry_from_before_versions_keeps_every_record() {
    for b in both().await {
        let n = b.name;
        let (migrator, last_before): (sqlx::migrate::Migrator, i64) = if n == "postgres" {
            (sqlx::migrate!("./migrations/postgres"), 1)
        } else {
            (sqlx::migrate!("./migrations/sqlite"), 3)
        };
        let insert = "INSERT INTO citizen_records (locator, pepper_version, kdf_params_id, \
                      normalization_version, registry_version, tags, updated_at_ms) \
                      VALUES ($1, 1, 1, 1, $2, $3, 0)";
        let tags = record(0, 0, 1).tags.encode();
        {
            let mut c = raw_connection(&b.url).await;
            migrator
                .run_to(last_before, &mut c)
                .await
                .expect("old schema");
            for sql in [
                "INSERT INTO kdf_params (id, m_kib, t, p) VALUES (1, 19456, 2, 1)",
                "INSERT INTO registry_meta (key, value) VALUES ('registry_version', '2')",
            ] {
                sqlx::query(sql).execute(&mut c).await.expect("setup");
            }
            for (byte, version) in [(1u8, 1i64), (2, 2), (3, 3)] {
                sqlx::query(insert)
                    .bind(vec![byte; 32])
                    .bind(version)
                    .bind(&tags)
                    .execute(&mut c)
                    .await
                    .expect("old row");
            }
        }
        let store = b.open().await;
        for byte in [1u8, 2, 3] {
            let (found, version) = read(&store, &[byte; 32]).await;
            assert_eq!(version, 2, "{n}");
            assert!(found.is_some(), "{n}: record {byte} survives the upgrade");
        }
        assert_eq!(store.count_records().await.expect("count"), 3, "{n}");
        // And the next import builds on it.
        let v3 = store.begin_version(NOW, 1).await.expect("begin");
        assert_eq!(v3.version, 3, "{n}");
        store.discard_version(&v3).await.expect("discard");
        store.close().await;
    }
}

/// A pepper rotation: a version built under a new pepper holds only that
/// pepper's rows and moves lookups to it in its switch; an import under an
/// older pepper is refused; purging removes exactly the retired pepper's
/// rows, records who did it in the audit chain, waits for an active
/// import and refuses the pepper that serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pepper_rotation_switches_at_once_and_purges_the_old_rows() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        store
            .register_kdf_params(&KdfParams::DEFAULT)
            .await
            .expect("params");
        let v1 = store.begin_version(NOW, 1).await.expect("begin");
        let old: Vec<StoredRecord> = (1..=4u8).map(|byte| record(byte, 1, byte)).collect();
        store.upsert_records(&v1, &old, NOW).await.expect("rows");
        store.publish_version(&v1, &[]).await.expect("publish");
        let read = store.lookup(&[1; 32]).await.expect("read");
        assert_eq!((read.registry_version, read.pepper_version), (1, 1), "{n}");
        assert_eq!(store.registry_pepper_version().await.expect("meta"), 1);

        // The re-import under pepper 2: new locators, invisible until the
        // switch, which leaves pepper 1's rows out of version 2.
        let v2 = store.begin_version(NOW, 2).await.expect("begin");
        let new: Vec<StoredRecord> = (5..=6u8)
            .map(|byte| StoredRecord {
                pepper_version: 2,
                ..record(byte, 2, byte)
            })
            .collect();
        store.upsert_records(&v2, &new, NOW).await.expect("rows");
        let before = store.lookup(&[5; 32]).await.expect("read");
        assert!(before.record.is_none(), "{n}: staged rows are invisible");
        assert_eq!(before.pepper_version, 1, "{n}");
        store.publish_version(&v2, &[]).await.expect("publish");
        let found = store.lookup(&[5; 32]).await.expect("read");
        assert_eq!(found.record, Some(new[0].clone()), "{n}");
        assert_eq!(
            (found.registry_version, found.pepper_version),
            (2, 2),
            "{n}"
        );
        assert!(
            store.lookup(&[1; 32]).await.expect("read").record.is_none(),
            "{n}: the old pepper's rows are not in the new version"
        );
        assert_eq!(store.count_records().await.expect("count"), 2, "{n}");
        assert!(
            matches!(
                store.begin_version(NOW, 1).await,
                Err(StoreError::PepperBehind {
                    import: 1,
                    current: 2
                })
            ),
            "{n}: an import under the old pepper would move lookups back"
        );

        let audit = |removed: u64| AuditEntry {
            action: "purge_pepper".into(),
            new_value: format!("{removed}"),
            ..audit("", "pepper_version", NOW)
        };
        assert!(
            matches!(
                store.purge_pepper(2, NOW, &audit).await,
                Err(StoreError::PepperInUse(2))
            ),
            "{n}: the serving pepper's rows stay"
        );
        let active = store.begin_version(NOW, 2).await.expect("an import starts");
        assert!(
            matches!(
                store.purge_pepper(1, NOW + 1, &audit).await,
                Err(StoreError::ImportInProgress { .. })
            ),
            "{n}: not while an import may write rows of that pepper"
        );
        store.discard_version(&active).await.expect("discard");
        assert_eq!(
            store.purge_pepper(1, NOW, &audit).await.expect("purge"),
            4,
            "{n}"
        );
        assert_eq!(store.count_records().await.expect("count"), 2, "{n}");
        assert_eq!(
            store.purge_pepper(1, NOW, &audit).await.expect("again"),
            0,
            "{n}"
        );
        let trail = store.list_audit(None, None, 10).await.expect("audit");
        let values: Vec<&str> = trail.iter().map(|e| e.entry.new_value.as_str()).collect();
        assert_eq!(
            values,
            ["0", "4"],
            "{n}: each purge is audited with its count"
        );
        store.close().await;
    }
}

/// A built version kept for a separate publish: invisible, blocking other
/// imports for a day (not the ten minutes of an idle import), published or
/// discarded only by its version, and replaced after the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_version_waits_for_its_publish() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        store
            .register_kdf_params(&KdfParams::DEFAULT)
            .await
            .expect("params");
        let v1 = store.begin_version(NOW, 1).await.expect("begin");
        store
            .upsert_records(&v1, &[record(1, 1, 1), record(2, 1, 2)], NOW)
            .await
            .expect("rows");
        assert_eq!(store.count_staged(&v1).await.expect("count"), 2, "{n}");
        store
            .keep_staged(&v1, NOW, &[audit("", "registry_version", NOW)])
            .await
            .expect("keep");
        assert_eq!(read(&store, &[1; 32]).await, (None, 0), "{n}: invisible");
        let later = NOW + STAGING_STALE_MS + 1;
        assert!(
            matches!(
                store.begin_version(later, 1).await,
                Err(StoreError::VersionStaged { version: 1 })
            ),
            "{n}: kept past an idle import's ten minutes"
        );
        assert!(
            matches!(
                store.staged_version(2).await,
                Err(StoreError::NotStaged {
                    asked: 2,
                    staged: Some(1)
                })
            ),
            "{n}"
        );
        let staged = store.staged_version(1).await.expect("staged");
        assert_eq!((staged.version, staged.pepper, staged.ready), (1, 1, true));
        store.publish_version(&staged, &[]).await.expect("publish");
        assert_eq!(read(&store, &[1; 32]).await.1, 1, "{n}");
        assert!(
            matches!(
                store.staged_version(1).await,
                Err(StoreError::NotStaged { staged: None, .. })
            ),
            "{n}: published, no longer staged"
        );

        // Kept and forgotten: a day later the next import replaces it.
        let v2 = store.begin_version(NOW, 1).await.expect("begin");
        store
            .upsert_records(&v2, &[record(3, 2, 3)], NOW)
            .await
            .expect("rows");
        store.keep_staged(&v2, NOW, &[]).await.expect("keep");
        let next_day = NOW + STAGED_KEEP_MS + 1;
        let v2_again = store.begin_version(next_day, 1).await.expect("take over");
        assert_eq!(v2_again.version, 2, "{n}");
        store.discard_version(&v2_again).await.expect("discard");
        assert_eq!(read(&store, &[3; 32]).await, (None, 1), "{n}: no trace");
        store.close().await;
    }
}
