//! One conformance suite for every store operation, run against both
//! backends: SQLite in a temporary file, and the real PostgreSQL on
//! loopback in a database of the test's own (dropped afterwards). Each
//! check is written once and must hold on both.

use std::sync::Arc;

use ekyc_domain::field::Field;
use ekyc_domain::keys::KdfParams;
use ekyc_domain::record::{FieldTags, RecordTags};
use ekyc_service::store::{
    ApiKeyRecord, AuditEntry, DatabaseConfig, KeyWrite, META_REGISTRY_VERSION, Role, Store,
    StoreError, StoredRecord, Tenant, TenantPolicy, TenantStatus, Upserted, audit_chain_hash,
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
            tokens: vec![[tag; 16], [tag ^ 2; 16]],
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

/// The registry: Verify's single read, upserts that say what they did,
/// deletes, counts, metadata and KDF parameter registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_operations_agree_on_both_backends() {
    for b in both().await {
        let n = b.name;
        let store = b.open().await;
        assert_eq!(
            store.get_record_and_version(&[1; 32]).await.expect("read"),
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

        let (a, b1, c) = (record(1, 3, 1), record(2, 3, 2), record(3, 3, 3));
        let done = store
            .upsert_records(&[a.clone(), b1.clone(), c.clone()])
            .await
            .expect("insert");
        assert_eq!(done, [Upserted::Inserted; 3], "{n}");
        let changed = record(2, 4, 9);
        let done = store
            .upsert_records(&[a.clone(), changed.clone()])
            .await
            .expect("upsert");
        assert_eq!(done, [Upserted::Unchanged, Upserted::Updated], "{n}");
        store
            .set_meta(META_REGISTRY_VERSION, "4")
            .await
            .expect("meta");
        assert_eq!(
            store.get_record_and_version(&[2; 32]).await.expect("read"),
            (Some(changed), 4),
            "{n}: the changed record carries its new registry version"
        );
        assert_eq!(
            store.get_record_and_version(&[1; 32]).await.expect("read"),
            (Some(a), 4),
            "{n}: an unchanged record keeps the version that wrote it"
        );
        assert_eq!(store.count_records().await.expect("count"), 3, "{n}");
        assert_eq!(
            store
                .delete_records(&[[3; 32], [3; 32], [8; 32]])
                .await
                .expect("delete"),
            1,
            "{n}: deletes count the records that existed"
        );
        assert_eq!(store.count_records().await.expect("count"), 2, "{n}");
        assert_eq!(
            store.get_record_and_version(&[3; 32]).await.expect("read"),
            (None, 4),
            "{n}"
        );

        assert_eq!(store.get_meta("nothing").await.expect("meta"), None, "{n}");
        store.set_meta("k", "1").await.expect("meta");
        store.set_meta("k", "2").await.expect("meta");
        assert_eq!(
            store.get_meta("k").await.expect("meta").as_deref(),
            Some("2"),
            "{n}"
        );
        assert_eq!(store.registry_version().await.expect("version"), 4, "{n}");
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
            .publish_signing_key("a", &[1; 32], 100)
            .await
            .expect("a");
        store
            .publish_signing_key("a", &[1; 32], 150)
            .await
            .expect("a again");
        store
            .publish_signing_key("b", &[2; 32], 200)
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
            .publish_signing_key("a", &[1; 32], 300)
            .await
            .expect("rollback");
        let keys = store.list_signing_keys().await.expect("list");
        let view: Vec<(&str, Option<i64>)> = keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.retired_at_ms))
            .collect();
        assert_eq!(view, [("a", None), ("b", Some(300))], "{n}");
        assert_eq!(keys[0].public_key, [1; 32], "{n}");
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

async fn raw_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("execute");
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("execute");
    }
}
