//! Replicas behave as one service: three `ekycd serve` processes, each with
//! a data directory of its own, sharing one PostgreSQL database (a fresh
//! one on the local server), one Redis prefix and the secret files, as a
//! Kubernetes deployment shares a database, a cache and mounted secrets.
//! (Rate limits, quotas and the subject guard across replicas are
//! `shared_limits.rs`, which the PostgreSQL pass of the suite runs on
//! PostgreSQL too.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ekyc_billing::UsageEvent;
use ekyc_billing::ledger::Ledger;
use ekyc_billing::period::Month;
use ekyc_client::{Client, v1 as pb};
use ekyc_service::store::TenantPolicy;
use ekyc_service::test_support::{
    EkycdProcess, Prepared, SHARED_REDIS_URL, TestDatabase, prepare_state, reason,
    remove_redis_prefix, unique_redis_prefix, unique_request_id,
};
use prost::Message as _;
use tonic::Code;

fn ask(index: u64, request_id: &str) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    pb::VerifyRequest {
        request_id: request_id.into(),
        id_number: c.id_number,
        claims: Some(pb::Claims {
            full_name: Some(c.full_name),
            date_of_birth: Some(c.date_of_birth),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    }
}

struct Cluster {
    replicas: Vec<EkycdProcess>,
    prepared: Prepared,
    prefix: String,
    _dirs: Vec<tempfile::TempDir>,
}

/// Prepares one shared state (registry, tenants `policies`, an agency key)
/// in a fresh PostgreSQL database and starts `n` replicas on it.
async fn cluster(test: &str, n: usize, policies: &[(&str, TenantPolicy)]) -> Cluster {
    let shared = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create().await;
    let prepared = prepare_state(shared.path(), Some(database), 50, policies).await;
    let prefix = unique_redis_prefix(test);
    let pepper = prepared.config.pepper_file();
    let signing = prepared.config.signing_key_file();
    let checkpoint = prepared.config.checkpoint_key_file();
    let replicas_count = n.to_string();
    let mut dirs = vec![shared];
    let mut replicas = Vec::new();
    for _ in 0..n {
        let own = tempfile::tempdir().expect("dir");
        replicas.push(prepared.start_ekycd(
            env!("CARGO_BIN_EXE_ekycd"),
            own.path(),
            &[
                ("EKYCD_PEPPER__FILE", pepper.to_str().expect("utf-8")),
                ("EKYCD_PEPPER__GENERATE_IF_MISSING", "false"),
                ("EKYCD_SIGNING__KEY_FILE", signing.to_str().expect("utf-8")),
                ("EKYCD_SIGNING__GENERATE_IF_MISSING", "false"),
                (
                    "EKYCD_DECISION_LOG__CHECKPOINT_KEY_FILE",
                    checkpoint.to_str().expect("utf-8"),
                ),
                ("EKYCD_LIMITS__REDIS_URL", SHARED_REDIS_URL),
                ("EKYCD_LIMITS__REDIS_KEY_PREFIX", &prefix),
                ("EKYCD_LIMITS__REPLICAS", &replicas_count),
            ],
        ));
        dirs.push(own);
    }
    Cluster {
        replicas,
        prepared,
        prefix,
        _dirs: dirs,
    }
}

impl Cluster {
    async fn client(&self, replica: usize, key: &str) -> Arc<Client> {
        Arc::new(
            Client::connect(
                &self.replicas[replica].endpoint,
                Some(key),
                Duration::from_secs(10),
            )
            .await
            .expect("connect"),
        )
    }

    async fn ledger(&self) -> Ledger {
        Ledger::open(&self.prepared.config.billing_database_url())
            .await
            .expect("ledger")
    }

    async fn finish(self) {
        remove_redis_prefix(&self.prefix).await;
    }
}

/// A tenant and key created through one replica are served by the others;
/// a key revoked or a tenant suspended through one is refused by every
/// other on its very next call; every replica publishes the same signing
/// keys, so any replica's attestation checks against any replica's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_through_one_replica_hold_on_every_other_at_the_next_call() {
    let c = cluster("replicas-admin", 3, &[]).await;
    let admin = c.client(0, &c.prepared.admin_key).await;
    let tenant = admin
        .admin()
        .create_tenant(admin.request(pb::CreateTenantRequest {
            tenant: Some(pb::Tenant {
                name: "Replica Bank".into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("create on replica 0")
        .into_inner()
        .tenant
        .expect("tenant");
    let issue = |replica: usize| {
        let tenant_id = tenant.tenant_id.clone();
        let c = &c;
        async move {
            let admin = c.client(replica, &c.prepared.admin_key).await;
            admin
                .admin()
                .issue_api_key(admin.request(pb::IssueApiKeyRequest {
                    tenant_id,
                    role: pb::Role::Verifier as i32,
                    ttl_seconds: 0,
                    live: true,
                }))
                .await
                .expect("issue")
                .into_inner()
        }
    };
    let first = issue(0).await;
    let verifiers = [
        c.client(0, &first.secret).await,
        c.client(1, &first.secret).await,
        c.client(2, &first.secret).await,
    ];
    for (i, v) in verifiers.iter().enumerate() {
        // `verify` checks the attestation against the keys this replica
        // publishes.
        v.verify(ask(i as u64, &unique_request_id(&format!("created-{i}"))))
            .await
            .unwrap_or_else(|e| panic!("replica {i} serves the new tenant: {e}"));
    }
    let published: Vec<Vec<(String, String, Vec<u8>)>> = {
        let mut all = Vec::new();
        for v in &verifiers {
            let keys = v.signing_keys().await.expect("keys");
            all.push(
                keys.into_iter()
                    .map(|k| (k.purpose, k.key_id, k.public_key))
                    .collect::<Vec<_>>(),
            );
        }
        all
    };
    let mut purposes: Vec<&str> = published[0].iter().map(|k| k.0.as_str()).collect();
    purposes.sort_unstable();
    assert_eq!(
        purposes,
        ["attestation", "checkpoint"],
        "one key per purpose: {published:?}"
    );
    assert!(
        published.iter().all(|p| p == &published[0]),
        "every replica publishes the same keys: {published:?}"
    );

    // Revoked through replica 1: refused at once on 0 and 2.
    let admin1 = c.client(1, &c.prepared.admin_key).await;
    admin1
        .admin()
        .revoke_api_key(admin1.request(pb::RevokeApiKeyRequest {
            key_id: first.api_key.expect("key").key_id,
        }))
        .await
        .expect("revoke on replica 1");
    for i in [0usize, 2] {
        let s = verifiers[i]
            .verify_unchecked(ask(7, &unique_request_id("after-revoke")))
            .await
            .expect_err("revoked");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Unauthenticated, "API_KEY_REVOKED"),
            "replica {i}"
        );
    }

    // Suspended through replica 2: refused at once on 0 and 1.
    let second = issue(2).await;
    let fresh = [
        c.client(0, &second.secret).await,
        c.client(1, &second.secret).await,
    ];
    for v in &fresh {
        v.verify_unchecked(ask(8, &unique_request_id("before-suspend")))
            .await
            .expect("answered before the suspension");
    }
    let admin2 = c.client(2, &c.prepared.admin_key).await;
    admin2
        .admin()
        .suspend_tenant(admin2.request(pb::SuspendTenantRequest {
            tenant_id: tenant.tenant_id.clone(),
            reason: "replica test".into(),
        }))
        .await
        .expect("suspend on replica 2");
    for (i, v) in fresh.iter().enumerate() {
        let s = v
            .verify_unchecked(ask(9, &unique_request_id("after-suspend")))
            .await
            .expect_err("suspended");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::PermissionDenied, "TENANT_SUSPENDED"),
            "replica {i}"
        );
    }
    c.finish().await;
}

/// One request id sent 24 times at once, spread over three replicas: every
/// caller gets the same answer, byte for byte, and the ledger holds one
/// event for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_over_every_replica_is_answered_identically_and_billed_once() {
    let c = cluster(
        "replicas-storm",
        3,
        &[("storm-bank", TenantPolicy::default())],
    )
    .await;
    let key = c.prepared.keys[0].clone();
    let request_id = unique_request_id("storm");
    let mut calls = Vec::new();
    for replica in 0..3 {
        let client = c.client(replica, &key).await;
        for _ in 0..8 {
            let (client, request_id) = (Arc::clone(&client), request_id.clone());
            calls.push(tokio::spawn(async move {
                client.verify_unchecked(ask(3, &request_id)).await
            }));
        }
    }
    let mut answers = BTreeSet::new();
    for call in calls {
        match call.await.expect("call") {
            Ok(response) => {
                answers.insert(response.encode_to_vec());
            }
            // Three replicas in flight at once stay within the subject's
            // allowance, so nothing may be refused.
            Err(s) => panic!("refused: {s:?}"),
        }
    }
    assert_eq!(answers.len(), 1, "every caller got the same answer");
    let ledger = c.ledger().await;
    let tenant_id = {
        let store = ekyc_service::store::Store::open(
            &c.prepared.config.database_url(),
            &c.prepared.config.database,
        )
        .await
        .expect("store");
        let t = store
            .find_tenant_by_name("storm-bank")
            .await
            .expect("read")
            .expect("tenant");
        store.close().await;
        t.id
    };
    let event = ledger
        .find(&tenant_id, &request_id)
        .await
        .expect("find")
        .expect("billed");
    let billed: Vec<UsageEvent> = ledger
        .events(&tenant_id, 0, i64::MAX)
        .await
        .expect("events");
    assert_eq!(billed, vec![event], "billed once");
    ledger.close().await;
    c.finish().await;
}

/// Two replicas finalizing last month's invoices at once, every tenant's
/// through both: each tenant gets one final invoice and the numbers are
/// gapless across the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_finalizing_at_once_keep_invoice_numbers_gapless() {
    let names = ["bank-1", "bank-2", "bank-3", "bank-4", "bank-5", "bank-6"];
    let policies: Vec<(&str, TenantPolicy)> = names
        .iter()
        .map(|n| (*n, TenantPolicy::default()))
        .collect();
    let c = cluster("replicas-invoices", 2, &policies).await;
    let store = ekyc_service::store::Store::open(
        &c.prepared.config.database_url(),
        &c.prepared.config.database,
    )
    .await
    .expect("store");
    let mut tenant_ids = Vec::new();
    for name in names {
        tenant_ids.push(
            store
                .find_tenant_by_name(name)
                .await
                .expect("read")
                .expect("tenant")
                .id,
        );
    }
    store.close().await;
    // Last month's usage, written to the shared ledger as replicas would
    // have written it then (a month must be over to be finalized).
    let ledger = c.ledger().await;
    let now = jiff::Timestamp::now().as_millisecond();
    let this_month = Month::containing(now, "Asia/Ho_Chi_Minh").expect("month");
    let last = Month::containing(this_month.start_ms - 1, "Asia/Ho_Chi_Minh").expect("month");
    for tenant_id in &tenant_ids {
        for n in 0..3i64 {
            ledger
                .record(UsageEvent {
                    tenant_id: tenant_id.clone(),
                    request_id: format!("past-{n}"),
                    event_time_ms: last.start_ms + 60_000 * n,
                    method: "Verify".into(),
                    fields: vec!["full_name".into()],
                    units: 1,
                    outcome: "yes".into(),
                    fingerprint: "fp".into(),
                    replay: None,
                    invoice_number: None,
                })
                .await
                .expect("record");
        }
    }
    ledger.close().await;

    let mut calls = Vec::new();
    for replica in 0..2 {
        let agency = c.client(replica, &c.prepared.admin_key).await;
        for tenant_id in &tenant_ids {
            let (agency, tenant_id) = (Arc::clone(&agency), tenant_id.clone());
            let period = last.label.clone();
            calls.push(tokio::spawn(async move {
                let result = agency
                    .billing()
                    .finalize_invoice(agency.request(pb::FinalizeInvoiceRequest {
                        tenant_id: tenant_id.clone(),
                        period,
                    }))
                    .await;
                (tenant_id, result)
            }));
        }
    }
    let mut numbers: Vec<(String, String)> = Vec::new();
    for call in calls {
        let (tenant_id, result) = call.await.expect("call");
        match result {
            Ok(r) => {
                let invoice = r.into_inner().invoice.expect("invoice");
                numbers.push((tenant_id, invoice.number));
            }
            Err(s) => assert_eq!(
                (s.code(), reason(&s).as_str()),
                (Code::FailedPrecondition, "INVOICE_FINALIZED"),
                "{s:?}"
            ),
        }
    }
    numbers.sort();
    numbers.dedup();
    let per_tenant: BTreeSet<&String> = numbers.iter().map(|(t, _)| t).collect();
    assert_eq!(
        (numbers.len(), per_tenant.len()),
        (6, 6),
        "one final invoice per tenant: {numbers:?}"
    );
    let mut issued: Vec<&str> = numbers.iter().map(|(_, n)| n.as_str()).collect();
    issued.sort();
    let expected: Vec<String> = (1..=6).map(|n| format!("EKYC-{n:06}")).collect();
    assert_eq!(issued, expected, "gapless across the replicas");
    c.finish().await;
}
