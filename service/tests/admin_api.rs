//! The agency's admin API over real gRPC: roles, tenant isolation,
//! suspension and revocation taking effect at once, policy enforcement in
//! Verify, validation that changes nothing, and the audit trail.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::store::{AuditEntry, audit_chain_hash};
use ekyc_service::test_support::{TestOptions, TestServer, reason};
use prost_types::FieldMask;
use tonic::{Code, Status};
use tonic_types::StatusExt;

async fn client(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(10))
        .await
        .expect("connect")
}

fn violations(s: &Status) -> Vec<(String, String)> {
    s.get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.reason.clone()))
                .collect()
        })
        .unwrap_or_default()
}

struct Admin {
    client: Client,
    secret: String,
}

impl Admin {
    async fn new(server: &TestServer) -> Admin {
        let (_, key) =
            ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
                .await
                .expect("bootstrap");
        Admin {
            client: client(server, &key.token).await,
            secret: key.token,
        }
    }

    async fn create(&self, name: &str, policy: pb::TenantPolicy) -> Result<pb::Tenant, Status> {
        let c = &self.client;
        let req = pb::CreateTenantRequest {
            tenant: Some(pb::Tenant {
                name: name.into(),
                policy: Some(policy),
                ..Default::default()
            }),
        };
        Ok(c.admin()
            .create_tenant(c.request(req))
            .await?
            .into_inner()
            .tenant
            .expect("tenant"))
    }

    async fn issue(
        &self,
        tenant_id: &str,
        role: pb::Role,
        ttl_seconds: i64,
    ) -> pb::IssueApiKeyResponse {
        let c = &self.client;
        c.admin()
            .issue_api_key(c.request(pb::IssueApiKeyRequest {
                tenant_id: tenant_id.into(),
                role: role as i32,
                ttl_seconds,
                live: true,
            }))
            .await
            .expect("issue")
            .into_inner()
    }

    async fn audit(&self) -> Vec<pb::AuditEvent> {
        let c = &self.client;
        c.admin()
            .list_audit_events(c.request(pb::ListAuditEventsRequest {
                page_size: 1000,
                ..Default::default()
            }))
            .await
            .expect("audit")
            .into_inner()
            .events
    }

    async fn tenant_count(&self) -> usize {
        let c = &self.client;
        c.admin()
            .list_tenants(c.request(pb::ListTenantsRequest {
                page_size: 500,
                ..Default::default()
            }))
            .await
            .expect("list")
            .into_inner()
            .tenants
            .len()
    }
}

fn verify_request(c: &ekyc_synth::Citizen, purpose: &str) -> pb::VerifyRequest {
    pb::VerifyRequest {
        request_id: ekyc_service::test_support::unique_request_id("admin"),
        id_number: c.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(c.full_name.clone()),
            date_of_birth: Some(c.date_of_birth.clone()),
            ..Default::default()
        }),
        purpose_code: purpose.into(),
        consent_reference: "consent-1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tenant_isolation() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let a = admin
        .create("bank-a", pb::TenantPolicy::default())
        .await
        .expect("a");
    let b = admin
        .create("bank-b", pb::TenantPolicy::default())
        .await
        .expect("b");

    // A verifier key may call no admin method.
    let verifier = client(&server, &server.api_key).await;
    let s = verifier
        .admin()
        .list_tenants(verifier.request(pb::ListTenantsRequest::default()))
        .await
        .expect_err("verifier");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::PermissionDenied, "ROLE_NOT_ALLOWED")
    );
    let s = verifier
        .admin()
        .get_tenant(verifier.request(pb::GetTenantRequest {
            tenant_id: a.tenant_id.clone(),
        }))
        .await
        .expect_err("verifier");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");

    // A finance key of B sees B, never A.
    let b_finance = admin.issue(&b.tenant_id, pb::Role::Finance, 0).await;
    let fb = client(&server, &b_finance.secret).await;
    let own = fb
        .admin()
        .get_tenant(fb.request(pb::GetTenantRequest {
            tenant_id: b.tenant_id.clone(),
        }))
        .await
        .expect("own tenant")
        .into_inner();
    assert_eq!(own.tenant.expect("tenant").name, "bank-b");
    for call in ["get", "keys"] {
        let s = match call {
            "get" => fb
                .admin()
                .get_tenant(fb.request(pb::GetTenantRequest {
                    tenant_id: a.tenant_id.clone(),
                }))
                .await
                .map(|_| ()),
            _ => fb
                .admin()
                .list_api_keys(fb.request(pb::ListApiKeysRequest {
                    tenant_id: a.tenant_id.clone(),
                }))
                .await
                .map(|_| ()),
        }
        .expect_err("other tenant");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::PermissionDenied, "TENANT_NOT_ACCESSIBLE")
        );
        assert!(!s.message().contains("bank-a"));
    }
    let s = fb
        .admin()
        .list_tenants(fb.request(pb::ListTenantsRequest::default()))
        .await
        .expect_err("finance cannot list all tenants");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");

    // Listing pages through every tenant exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let c = &admin.client;
        let page = c
            .admin()
            .list_tenants(c.request(pb::ListTenantsRequest {
                page_size: 1,
                page_token: token.clone(),
            }))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.tenants.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    assert_eq!(seen, vec!["agency", "bank-a", "bank-b", "test-bank"]);

    // Bootstrap refuses to run twice.
    assert!(
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_revocation_and_expiry_take_effect_on_the_next_call() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let t = admin
        .create("telco", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    let key = admin.issue(&t.tenant_id, pb::Role::Verifier, 0).await;
    let telco = client(&server, &key.secret).await;
    let citizen = ekyc_synth::citizen(42, 2);
    telco
        .verify(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect("works");

    let c = &admin.client;
    c.admin()
        .suspend_tenant(c.request(pb::SuspendTenantRequest {
            tenant_id: t.tenant_id.clone(),
            reason: "unpaid invoice".into(),
        }))
        .await
        .expect("suspend");
    let s = telco
        .verify_unchecked(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect_err("suspended");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::PermissionDenied, "TENANT_SUSPENDED")
    );
    c.admin()
        .resume_tenant(c.request(pb::ResumeTenantRequest {
            tenant_id: t.tenant_id.clone(),
        }))
        .await
        .expect("resume");
    telco
        .verify(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect("resumed");

    // An admin cannot lock the agency out by suspending its own tenant.
    let agency = c
        .admin()
        .list_tenants(c.request(pb::ListTenantsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tenants
        .into_iter()
        .find(|t| t.name == "agency")
        .expect("agency tenant");
    let s = c
        .admin()
        .suspend_tenant(c.request(pb::SuspendTenantRequest {
            tenant_id: agency.tenant_id,
            reason: String::new(),
        }))
        .await
        .expect_err("own tenant");
    assert_eq!(reason(&s), "CANNOT_SUSPEND_OWN_TENANT");

    // Rotation without grace: the old key has expired at once.
    let rotated = c
        .admin()
        .rotate_api_key(c.request(pb::RotateApiKeyRequest {
            key_id: key.api_key.expect("key").key_id,
            grace_seconds: 0,
        }))
        .await
        .expect("rotate")
        .into_inner();
    assert!(
        rotated.secret.starts_with("ekyc_live_"),
        "rotation keeps the label"
    );
    let s = telco
        .verify_unchecked(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect_err("old key expired");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::Unauthenticated, "API_KEY_EXPIRED")
    );
    let fresh = client(&server, &rotated.secret).await;
    fresh
        .verify(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect("new key");

    c.admin()
        .revoke_api_key(c.request(pb::RevokeApiKeyRequest {
            key_id: rotated.api_key.expect("key").key_id,
        }))
        .await
        .expect("revoke");
    let s = fresh
        .verify_unchecked(verify_request(&citizen, "SIM_REGISTRATION"))
        .await
        .expect_err("revoked");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::Unauthenticated, "API_KEY_REVOKED")
    );

    // Keys are listed with their state and last use, never their secrets.
    let keys = c
        .admin()
        .list_api_keys(c.request(pb::ListApiKeysRequest {
            tenant_id: t.tenant_id.clone(),
        }))
        .await
        .expect("keys")
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| !k.usable));
    assert!(keys.iter().all(|k| k.last_used_time.is_some()));
    assert!(!format!("{keys:?}").contains(&key.secret[27..]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_limits_fields_and_purposes_and_disclosure() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let t = admin
        .create(
            "narrow-bank",
            pb::TenantPolicy {
                allowed_fields: vec!["full_name".into(), "gender".into()],
                allowed_purposes: vec!["ACCOUNT_OPENING".into()],
                ..Default::default()
            },
        )
        .await
        .expect("tenant");
    let key = admin.issue(&t.tenant_id, pb::Role::Verifier, 0).await;
    let narrow = client(&server, &key.secret).await;
    let citizen = ekyc_synth::citizen(42, 4);
    let before = server.app.pool.stats().evaluations.load(Ordering::SeqCst);
    let s = narrow
        .verify_unchecked(verify_request(&citizen, "ACCOUNT_OPENING"))
        .await
        .expect_err("date_of_birth not allowed");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::PermissionDenied, "FIELD_NOT_ALLOWED")
    );
    assert!(
        s.message().contains("date_of_birth") && !s.message().contains("full_name"),
        "{}",
        s.message()
    );
    let mut only_name = verify_request(&citizen, "MARKETING");
    only_name.claims = Some(pb::Claims {
        full_name: Some(citizen.full_name.clone()),
        ..Default::default()
    });
    let s = narrow
        .verify_unchecked(only_name.clone())
        .await
        .expect_err("purpose");
    assert_eq!(reason(&s), "PURPOSE_NOT_ALLOWED");
    assert_eq!(
        server.app.pool.stats().evaluations.load(Ordering::SeqCst),
        before,
        "policy refusals cost no hashing"
    );
    only_name.purpose_code = "ACCOUNT_OPENING".into();
    let ok = narrow.verify(only_name.clone()).await.expect("allowed");
    assert_eq!(ok.response.decision, pb::Decision::Yes as i32);

    // Disclosure: off, an unknown subject is a mismatch; on, it is named.
    let mut unknown = only_name.clone();
    unknown.request_id = ekyc_service::test_support::unique_request_id("admin");
    unknown.id_number = ekyc_synth::citizen(42, 9000).id_number;
    let uniform = narrow.verify(unknown.clone()).await.expect("uniform");
    assert_eq!(
        uniform.response.subject_status,
        pb::SubjectStatus::Unspecified as i32
    );
    let c = &admin.client;
    let update = |paths: &[&str]| {
        c.request(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                tenant_id: t.tenant_id.clone(),
                policy: Some(pb::TenantPolicy {
                    disclose_not_found: true,
                    limits: Some(pb::Limits {
                        requests_per_second: 100,
                        burst: 20,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
    };
    // A burst alone (the tenant has no rate) means nothing: refused.
    let s = c
        .admin()
        .update_tenant(update(&["policy.limits.burst"]))
        .await
        .expect_err("burst without rate");
    let details = s.get_error_details();
    let violation = &details.bad_request().expect("bad request").field_violations[0];
    assert_eq!(
        (violation.field.as_str(), violation.reason.as_str()),
        ("tenant.policy.limits.burst", "REQUIRES_RATE")
    );
    let updated = c
        .admin()
        .update_tenant(update(&[
            "policy.disclose_not_found",
            "policy.limits.burst",
            "policy.limits.requests_per_second",
        ]))
        .await
        .expect("update")
        .into_inner()
        .tenant
        .expect("tenant");
    let policy = updated.policy.expect("policy");
    assert!(policy.disclose_not_found);
    assert_eq!(policy.limits.expect("limits").burst, 20);
    assert_eq!(policy.time_zone, "Asia/Ho_Chi_Minh", "the default zone");
    assert_eq!(
        policy.allowed_fields,
        vec!["full_name", "gender"],
        "unmasked fields keep their values"
    );
    // A new request (the same request id would be answered as before).
    unknown.request_id = ekyc_service::test_support::unique_request_id("admin");
    let disclosed = narrow.verify(unknown).await.expect("disclosed");
    assert_eq!(
        disclosed.response.subject_status,
        pb::SubjectStatus::NotFound as i32
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_input_is_refused_and_changes_nothing() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    admin
        .create("existing-bank", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    let tenants_before = admin.tenant_count().await;
    let audit_before = admin.audit().await.len();

    let cases: Vec<(&str, pb::TenantPolicy, &str, &str)> = vec![
        (
            "neg-limits",
            pb::TenantPolicy {
                limits: Some(pb::Limits {
                    requests_per_second: -5,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "tenant.policy.limits.requests_per_second",
            "NEGATIVE",
        ),
        (
            "unknown-field",
            pb::TenantPolicy {
                allowed_fields: vec!["shoe_size".into()],
                ..Default::default()
            },
            "tenant.policy.allowed_fields",
            "UNKNOWN_FIELD",
        ),
        ("", pb::TenantPolicy::default(), "tenant.name", "REQUIRED"),
        (
            "existing-bank",
            pb::TenantPolicy::default(),
            "tenant.name",
            "ALREADY_EXISTS",
        ),
    ];
    for (name, policy, field, rule) in cases {
        let s = admin.create(name, policy).await.expect_err(field);
        assert_eq!(s.code(), Code::InvalidArgument, "{field}");
        assert!(
            violations(&s).contains(&(field.to_string(), rule.to_string())),
            "{field}/{rule}: {:?}",
            violations(&s)
        );
    }
    // An update naming a bad value or an unknown path changes nothing.
    let c = &admin.client;
    let target = admin
        .create("target-bank", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    let tenants_before = tenants_before + 1;
    let audit_before = audit_before + 1;
    let get = |id: String| {
        let c = &admin.client;
        async move {
            c.admin()
                .get_tenant(c.request(pb::GetTenantRequest { tenant_id: id }))
                .await
                .expect("get")
                .into_inner()
                .tenant
                .expect("tenant")
        }
    };
    let before = get(target.tenant_id.clone()).await;
    for (paths, burst, name, field, rule) in [
        (
            vec!["policy.limits.burst"],
            -1,
            "",
            "tenant.policy.limits.burst",
            "NEGATIVE",
        ),
        (vec!["policy.colour"], 1, "", "update_mask", "UNKNOWN_PATH"),
        (vec![], 1, "", "update_mask", "REQUIRED"),
        (
            vec!["name"],
            1,
            "existing-bank",
            "tenant.name",
            "ALREADY_EXISTS",
        ),
        (
            vec!["name", "policy.limits.burst"],
            -3,
            "",
            "tenant.name",
            "REQUIRED",
        ),
    ] {
        let s = c
            .admin()
            .update_tenant(c.request(pb::UpdateTenantRequest {
                tenant: Some(pb::Tenant {
                    tenant_id: target.tenant_id.clone(),
                    name: name.into(),
                    policy: Some(pb::TenantPolicy {
                        limits: Some(pb::Limits {
                            burst,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
            }))
            .await
            .expect_err("bad update");
        assert_eq!(s.code(), Code::InvalidArgument, "{paths:?}");
        assert!(
            violations(&s).contains(&(field.to_string(), rule.to_string())),
            "{paths:?}: {:?}",
            violations(&s)
        );
    }
    let issue = c
        .admin()
        .issue_api_key(c.request(pb::IssueApiKeyRequest {
            tenant_id: target.tenant_id.clone(),
            role: pb::Role::Unspecified as i32,
            ttl_seconds: -1,
            live: false,
        }))
        .await
        .expect_err("bad key request");
    assert_eq!(violations(&issue).len(), 2);
    assert_eq!(admin.tenant_count().await, tenants_before);
    assert_eq!(
        admin.audit().await.len(),
        audit_before,
        "refused calls leave no audit entry"
    );
    assert_eq!(
        get(target.tenant_id.clone()).await,
        before,
        "refused updates change nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_chained_and_holds_no_secrets() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let t = admin
        .create("audited-bank", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    let key = admin.issue(&t.tenant_id, pb::Role::Verifier, 3600).await;
    let c = &admin.client;
    c.admin()
        .update_tenant(c.request(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                tenant_id: t.tenant_id.clone(),
                name: "audited-bank-2".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        }))
        .await
        .expect("rename");
    c.admin()
        .revoke_api_key(c.request(pb::RevokeApiKeyRequest {
            key_id: key.api_key.clone().expect("key").key_id,
        }))
        .await
        .expect("revoke");

    let mut events = admin.audit().await;
    events.reverse();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "tenant.create",
        "api_key.issue",
        "tenant.update",
        "api_key.revoke",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let rename = events
        .iter()
        .find(|e| e.action == "tenant.update")
        .expect("update");
    assert_eq!(rename.field, "name");
    assert_eq!(
        (rename.old_value.as_str(), rename.new_value.as_str()),
        ("\"audited-bank\"", "\"audited-bank-2\"")
    );
    assert!(
        events.iter().any(|e| e.actor_key_id.len() == 16),
        "changes name the admin's key id"
    );

    // Gapless, and each hash chains to the previous one.
    let mut previous = [0u8; 32];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as i64 + 1);
        let entry = AuditEntry {
            at_ms: e
                .time
                .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
            actor_key_id: e.actor_key_id.clone(),
            actor_tenant_id: e.actor_tenant_id.clone(),
            action: e.action.clone(),
            tenant_id: e.tenant_id.clone(),
            field: e.field.clone(),
            old_value: e.old_value.clone(),
            new_value: e.new_value.clone(),
        };
        previous = audit_chain_hash(&previous, &entry);
        assert_eq!(e.chain_hash, hex::encode(previous), "event {}", e.sequence);
    }
    let dump = format!("{events:?}");
    for secret in [&key.secret, &admin.secret, &server.api_key] {
        let secret_part = &secret[secret.len() - 64..];
        assert!(
            !dump.contains(secret_part),
            "the audit trail must not hold secrets"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agency_admins_of_the_agency_tenant_change_anything() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let bank = admin
        .create("bank-c", pb::TenantPolicy::default())
        .await
        .expect("tenant");

    // Agency roles are never issued to a bank.
    for role in [pb::Role::AgencyAdmin, pb::Role::RegistryOperator] {
        let c = &admin.client;
        let s = c
            .admin()
            .issue_api_key(c.request(pb::IssueApiKeyRequest {
                tenant_id: bank.tenant_id.clone(),
                role: role as i32,
                ttl_seconds: 0,
                live: true,
            }))
            .await
            .expect_err("agency role for a bank");
        assert!(
            violations(&s).contains(&("role".into(), "AGENCY_ONLY".into())),
            "{s:?}"
        );
    }

    // Even an agency-admin key that reached a bank by other means (written
    // straight into the store here) has no power outside the agency.
    let bank_tenant = server
        .app
        .store
        .get_tenant(&bank.tenant_id)
        .await
        .expect("store")
        .expect("tenant");
    let rogue = ekyc_service::tenants::issue_key(
        &server.app.store,
        &bank_tenant,
        ekyc_service::store::Role::AgencyAdmin,
        true,
        None,
        &ekyc_service::tenants::Actor::local("test"),
    )
    .await
    .expect("rogue key");
    let verifier = admin
        .issue(&bank.tenant_id, pb::Role::Verifier, 0)
        .await
        .secret;
    let finance = admin
        .issue(&bank.tenant_id, pb::Role::Finance, 0)
        .await
        .secret;
    let agency_id = server
        .app
        .store
        .get_meta(ekyc_service::tenants::META_AGENCY_TENANT)
        .await
        .expect("meta")
        .expect("agency id");
    for (who, key) in [
        ("rogue admin", rogue.token.as_str()),
        ("verifier", &verifier),
        ("finance", &finance),
    ] {
        let c = client(&server, key).await;
        let a = c.admin();
        let tenant = || pb::Tenant {
            tenant_id: bank.tenant_id.clone(),
            name: "renamed".into(),
            ..Default::default()
        };
        let calls: Vec<(&str, Result<(), Status>)> = vec![
            (
                "create",
                a.clone()
                    .create_tenant(c.request(pb::CreateTenantRequest {
                        tenant: Some(pb::Tenant {
                            name: "x".into(),
                            ..Default::default()
                        }),
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "list",
                a.clone()
                    .list_tenants(c.request(pb::ListTenantsRequest::default()))
                    .await
                    .map(|_| ()),
            ),
            (
                "update",
                a.clone()
                    .update_tenant(c.request(pb::UpdateTenantRequest {
                        tenant: Some(tenant()),
                        update_mask: Some(FieldMask {
                            paths: vec!["name".into()],
                        }),
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "suspend agency",
                a.clone()
                    .suspend_tenant(c.request(pb::SuspendTenantRequest {
                        tenant_id: agency_id.clone(),
                        reason: String::new(),
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "resume",
                a.clone()
                    .resume_tenant(c.request(pb::ResumeTenantRequest {
                        tenant_id: bank.tenant_id.clone(),
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "issue",
                a.clone()
                    .issue_api_key(c.request(pb::IssueApiKeyRequest {
                        tenant_id: bank.tenant_id.clone(),
                        role: pb::Role::Verifier as i32,
                        ttl_seconds: 0,
                        live: false,
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "rotate",
                a.clone()
                    .rotate_api_key(c.request(pb::RotateApiKeyRequest {
                        key_id: rogue.record.key_id.clone(),
                        grace_seconds: 0,
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "revoke",
                a.clone()
                    .revoke_api_key(c.request(pb::RevokeApiKeyRequest {
                        key_id: rogue.record.key_id.clone(),
                    }))
                    .await
                    .map(|_| ()),
            ),
            (
                "audit",
                a.clone()
                    .list_audit_events(c.request(pb::ListAuditEventsRequest::default()))
                    .await
                    .map(|_| ()),
            ),
            (
                "get agency",
                a.clone()
                    .get_tenant(c.request(pb::GetTenantRequest {
                        tenant_id: agency_id.clone(),
                    }))
                    .await
                    .map(|_| ()),
            ),
        ];
        for (call, result) in calls {
            let s = result.expect_err(&format!("{who} must not {call}"));
            assert_eq!(s.code(), Code::PermissionDenied, "{who} {call}: {s:?}");
        }
    }
    // Nothing changed: the bank keeps its name, the agency is active.
    let c = &admin.client;
    let t = c
        .admin()
        .get_tenant(c.request(pb::GetTenantRequest {
            tenant_id: bank.tenant_id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .tenant
        .expect("tenant");
    assert_eq!(t.name, "bank-c");
    let s = c
        .admin()
        .suspend_tenant(c.request(pb::SuspendTenantRequest {
            tenant_id: agency_id,
            reason: String::new(),
        }))
        .await
        .expect_err("the agency tenant is never suspended");
    assert_eq!(reason(&s), "CANNOT_SUSPEND_OWN_TENANT");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_never_undo_a_revocation_or_a_suspension() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = std::sync::Arc::new(Admin::new(&server).await);
    let t = admin
        .create("racy-bank", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    for round in 0..10 {
        let key = admin.issue(&t.tenant_id, pb::Role::Verifier, 0).await;
        let key_id = key.api_key.expect("key").key_id;
        let (a, b) = (std::sync::Arc::clone(&admin), std::sync::Arc::clone(&admin));
        let (k1, k2) = (key_id.clone(), key_id.clone());
        let rotate = tokio::spawn(async move {
            let c = &a.client;
            c.admin()
                .rotate_api_key(c.request(pb::RotateApiKeyRequest {
                    key_id: k1,
                    grace_seconds: 3600,
                }))
                .await
        });
        let revoke = tokio::spawn(async move {
            let c = &b.client;
            c.admin()
                .revoke_api_key(c.request(pb::RevokeApiKeyRequest { key_id: k2 }))
                .await
        });
        let (rotated, revoked) = (rotate.await.expect("join"), revoke.await.expect("join"));
        for r in [rotated.as_ref().err(), revoked.as_ref().err()]
            .into_iter()
            .flatten()
        {
            assert!(
                matches!(r.code(), Code::Aborted | Code::FailedPrecondition),
                "round {round}: a losing call says so: {r:?}"
            );
        }
        let c = &admin.client;
        let keys = c
            .admin()
            .list_api_keys(c.request(pb::ListApiKeysRequest {
                tenant_id: t.tenant_id.clone(),
            }))
            .await
            .expect("keys")
            .into_inner()
            .api_keys;
        let old = keys.iter().find(|k| k.key_id == key_id).expect("old key");
        if revoked.is_ok() {
            assert!(
                old.revoke_time.is_some() && !old.usable,
                "round {round}: a revocation that succeeded holds"
            );
        }
    }
    // A concurrent edit and a suspension: the suspension is never lost.
    for round in 0..5 {
        let (a, b) = (std::sync::Arc::clone(&admin), std::sync::Arc::clone(&admin));
        let (id1, id2) = (t.tenant_id.clone(), t.tenant_id.clone());
        let edit = tokio::spawn(async move {
            let c = &a.client;
            c.admin()
                .update_tenant(c.request(pb::UpdateTenantRequest {
                    tenant: Some(pb::Tenant {
                        tenant_id: id1,
                        policy: Some(pb::TenantPolicy {
                            limits: Some(pb::Limits {
                                burst: 10 + round,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["policy.limits.burst".into()],
                    }),
                }))
                .await
        });
        let suspend = tokio::spawn(async move {
            let c = &b.client;
            c.admin()
                .suspend_tenant(c.request(pb::SuspendTenantRequest {
                    tenant_id: id2,
                    reason: String::new(),
                }))
                .await
        });
        let (_, suspended) = (edit.await.expect("join"), suspend.await.expect("join"));
        let c = &admin.client;
        let now = c
            .admin()
            .get_tenant(c.request(pb::GetTenantRequest {
                tenant_id: t.tenant_id.clone(),
            }))
            .await
            .expect("get")
            .into_inner()
            .tenant
            .expect("tenant");
        if suspended.is_ok() {
            assert_eq!(
                now.status,
                pb::TenantStatus::Suspended as i32,
                "round {round}: suspension held"
            );
        }
        c.admin()
            .resume_tenant(c.request(pb::ResumeTenantRequest {
                tenant_id: t.tenant_id.clone(),
            }))
            .await
            .expect("resume");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_text_and_a_lax_fuzzy_threshold_are_refused_and_change_nothing() {
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Admin::new(&server).await;
    let target = admin
        .create(
            "Ngân hàng TMCP Ngoại thương Việt Nam",
            pb::TenantPolicy::default(),
        )
        .await
        .expect("a Vietnamese legal name is fine");
    let tenants_before = admin.tenant_count().await;
    let audit_before = admin.audit().await.len();
    let nfd: String = "Ngân hàng B"
        .chars()
        .flat_map(|c| match c {
            'â' => vec!['a', '\u{302}'],
            'à' => vec!['a', '\u{300}'],
            c => vec![c],
        })
        .collect();
    for (name, rule) in [
        ("Bank\u{202E}lanigiro", "INVISIBLE_CHARACTER"),
        ("Bank\u{200B}A", "INVISIBLE_CHARACTER"),
        ("Bank\u{2066}A\u{2069}", "INVISIBLE_CHARACTER"),
        ("Bank\u{FEFF}", "INVISIBLE_CHARACTER"),
        ("Bank\u{00A0}A", "INVALID_WHITESPACE"),
        ("Bank  A", "INVALID_WHITESPACE"),
        (nfd.as_str(), "NOT_NFC"),
    ] {
        let s = admin
            .create(name, pb::TenantPolicy::default())
            .await
            .expect_err(name);
        assert_eq!(s.code(), Code::InvalidArgument, "{name:?}");
        assert_eq!(
            violations(&s),
            [("tenant.name".to_string(), rule.to_string())],
            "{name:?}"
        );
        assert!(s.message().contains("invisible"), "{}", s.message());
    }
    let c = &admin.client;
    let create_with = |tenant: pb::Tenant| {
        let c = &admin.client;
        async move {
            c.admin()
                .create_tenant(c.request(pb::CreateTenantRequest {
                    tenant: Some(tenant),
                }))
                .await
        }
    };
    let s = create_with(pb::Tenant {
        name: "mtls-bank".into(),
        mtls_subject: "gw.bank\u{200D}.vn".into(),
        ..Default::default()
    })
    .await
    .expect_err("zero-width joiner in the subject");
    assert_eq!(
        violations(&s),
        [(
            "tenant.mtls_subject".to_string(),
            "INVISIBLE_CHARACTER".to_string()
        )]
    );
    // A threshold that lets one shared name decide is refused; 0 (the
    // default) and the floor are fine.
    for (threshold, refused) in [(1, true), (69, true), (101, true), (70, false), (0, false)] {
        let r = create_with(pb::Tenant {
            name: format!("fuzzy-bank-{threshold}"),
            policy: Some(pb::TenantPolicy {
                fuzzy_matching: true,
                fuzzy_threshold: threshold,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
        match (r, refused) {
            (Err(s), true) => assert_eq!(
                violations(&s),
                [(
                    "tenant.policy.fuzzy_threshold".to_string(),
                    "OUT_OF_RANGE".to_string()
                )]
            ),
            (Ok(_), false) => {}
            (r, _) => panic!("threshold {threshold}: {r:?}"),
        }
    }
    // An update with invisible text changes nothing either.
    let s = c
        .admin()
        .update_tenant(c.request(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                tenant_id: target.tenant_id.clone(),
                name: "Ngân hàng\u{202E}".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        }))
        .await
        .expect_err("update");
    assert_eq!(
        violations(&s),
        [("tenant.name".to_string(), "INVISIBLE_CHARACTER".to_string())]
    );
    // The two accepted fuzzy tenants are the only change.
    assert_eq!(admin.tenant_count().await, tenants_before + 2);
    assert_eq!(admin.audit().await.len(), audit_before + 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tenants_get_default_limits_and_admin_calls_have_their_own() {
    let server = TestServer::start(TestOptions {
        limits: ekyc_limits::LimitsConfig {
            default_requests_per_second: 2,
            default_burst: 3,
            default_daily_quota_units: 1_000,
            admin_requests_per_second: 1,
            admin_burst: 20,
            ..ekyc_service::test_support::test_limits()
        },
        ..TestOptions::default()
    })
    .await;
    let admin = Admin::new(&server).await;
    // Created without limits: the defaults, stored and shown.
    let bank = admin
        .create("default-bank", pb::TenantPolicy::default())
        .await
        .expect("tenant");
    let limits = bank.policy.expect("policy").limits.expect("limits");
    assert_eq!(
        (
            limits.requests_per_second,
            limits.burst,
            limits.daily_quota_units,
            limits.monthly_quota_units
        ),
        (2, 3, 1_000, 0)
    );
    // What the agency sets wins.
    let own = admin
        .create(
            "own-limits-bank",
            pb::TenantPolicy {
                limits: Some(pb::Limits {
                    requests_per_second: 50,
                    burst: 60,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("tenant")
        .policy
        .expect("policy")
        .limits
        .expect("limits");
    assert_eq!(
        (own.requests_per_second, own.burst, own.daily_quota_units),
        (50, 60, 1_000)
    );
    // The default rate holds in Verify.
    let key = admin
        .issue(&bank.tenant_id, pb::Role::Verifier, 0)
        .await
        .secret;
    let verifier = client(&server, &key).await;
    let citizen = ekyc_synth::citizen(42, 1);
    let mut refused = 0;
    for n in 0..6 {
        let r = verifier
            .verify_unchecked(pb::VerifyRequest {
                request_id: format!("default-{n}"),
                id_number: citizen.id_number.clone(),
                claims: Some(pb::Claims {
                    full_name: Some(citizen.full_name.clone()),
                    ..Default::default()
                }),
                purpose_code: "ACCOUNT_OPENING".into(),
                consent_reference: "c-1".into(),
            })
            .await;
        if let Err(s) = r {
            assert_eq!(reason(&s), "RATE_LIMITED");
            refused += 1;
        }
    }
    assert!(refused >= 2, "burst 3 at 2/s: {refused} of 6 refused");

    // Admin and billing calls: 20 at once from one tenant, then 1/s. The
    // agency has used some on the calls above; a flood is cut.
    let finance = admin
        .issue(&bank.tenant_id, pb::Role::Finance, 0)
        .await
        .secret;
    let f = client(&server, &finance).await;
    let mut limited = None;
    for _ in 0..25 {
        let r = f
            .billing()
            .create_invoice(f.request(pb::CreateInvoiceRequest {
                tenant_id: bank.tenant_id.clone(),
                period: "2026-11".into(),
            }))
            .await;
        if let Err(s) = r {
            limited = Some(s);
            break;
        }
    }
    let s = limited.expect("the finance key's drafts are rate limited");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::ResourceExhausted, "RATE_LIMITED")
    );
    assert!(s.get_error_details().retry_info().is_some());
    // Another tenant's admin calls have their own allowance.
    admin
        .client
        .admin()
        .get_tenant(admin.client.request(pb::GetTenantRequest {
            tenant_id: bank.tenant_id.clone(),
        }))
        .await
        .expect("the agency's own bucket");
    server.stop().await;
}
