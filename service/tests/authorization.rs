//! The authorisation table walked with every role against every RPC of
//! the real server: each caller is let through exactly where the written
//! expectation below says, for its own tenant and for another, and the
//! table lists exactly the methods the proto declares.

use std::collections::BTreeSet;
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::authz::RULES;
use ekyc_service::test_support::{TestOptions, TestServer, reason};
use prost::Message;
use tonic::{Code, Status};

/// What one caller may do with one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum May {
    /// Call it about any tenant.
    Any,
    /// Call it about its own tenant only (another: TENANT_NOT_ACCESSIBLE).
    Own,
    /// Not call it at all (ROLE_NOT_ALLOWED).
    No,
}
use May::{Any, No, Own};

/// The callers, in the order of each expectation row.
const CALLERS: [&str; 7] = [
    "agency admin",
    "agency finance",
    "agency registry operator",
    "bank finance",
    "bank verifier",
    "agency auditor",
    "agency privacy officer",
];

/// What the service promises (README, docs/billing.md), written out
/// independently of `ekyc_service::authz`.
fn expected(method: &str) -> [May; 7] {
    match method {
        // Changes to tenants, keys and the guard, and the audit trail.
        "CreateTenant" | "ListTenants" | "UpdateTenant" | "SuspendTenant" | "ResumeTenant"
        | "IssueApiKey" | "RotateApiKey" | "RevokeApiKey" | "ClearSubjectGuard" => {
            [Any, No, No, No, No, No, No]
        }
        // The admin audit trail and its checkpoints: admins and auditors.
        "ListAuditEvents" | "GetAdminAuditCheckpoint" => [Any, No, No, No, No, Any, No],
        // A tenant's own record, keys and usage.
        "GetTenant" | "ListApiKeys" | "GetTenantUsage" => [Any, Own, No, Own, No, No, No],
        // Usage, drafts, invoices and exports.
        "GetUsageSummary" | "CreateInvoice" | "ListInvoices" | "ExportInvoice" => {
            [Any, Any, No, Own, No, No, No]
        }
        "FinalizeInvoice" => [Any, Any, No, No, No, No, No],
        "ListPricePlans" | "GetPricePlan" => [Any, Any, No, Any, No, No, No],
        "Verify" | "VerifyBatch" => [No, No, No, No, Any, No, No],
        // The agency's registry, loaded by its registry operators only.
        "ImportRecords" | "PublishVersion" | "DiscardVersion" | "PurgePepper" => {
            [No, No, Any, No, No, No, No]
        }
        // Public: needs no credential at all.
        "ListSigningKeys" => [Any; 7],
        // The decision log: checkpoints and consistency for every key; an
        // entry's proof for its tenant's keys (the transaction names the
        // tenant, so an unknown one is NOT_FOUND to them) and the agency's
        // auditors and admins; entries for those; a citizen's history for
        // the privacy officers only.
        "GetCheckpoint" | "GetCheckpointAt" | "GetConsistencyProof" => [Any; 7],
        "GetInclusionProof" => [Any, Any, No, Any, Any, Any, No],
        "ListLogEntries" => [Any, No, No, No, No, Any, No],
        "ListSubjectAccesses" => [No, No, No, No, No, No, Any],
        other => panic!("no expectation for {other}"),
    }
}

/// Calls `method` about `tenant` with a request that is as small as the
/// method allows and changes nothing when let through (a period that has
/// not ended, unknown ids, missing fields), so the walk never changes what
/// a later cell sees.
async fn call(c: &Client, method: &str, tenant: &str) -> Result<(), Status> {
    let t = tenant.to_string();
    let (mut a, mut b, mut v) = (c.admin(), c.billing(), c.verification());
    let mut r = c.registry();
    let future = "2099-01".to_string();
    match method {
        "Verify" => {
            v.verify(c.request(pb::VerifyRequest::default())).await?;
        }
        "VerifyBatch" => {
            // Authorised when the stream opens, before any item is read.
            let items = tokio_stream::iter(Vec::<pb::VerifyRequest>::new());
            let mut results = v.verify_batch(c.request(items)).await?.into_inner();
            while let Some(result) = tokio_stream::StreamExt::next(&mut results).await {
                result?;
            }
        }
        "ListSigningKeys" => {
            v.list_signing_keys(pb::ListSigningKeysRequest::default())
                .await?;
        }
        "CreateTenant" => {
            a.create_tenant(c.request(pb::CreateTenantRequest::default()))
                .await?;
        }
        "GetTenant" => {
            a.get_tenant(c.request(pb::GetTenantRequest { tenant_id: t }))
                .await?;
        }
        "ListTenants" => {
            a.list_tenants(c.request(pb::ListTenantsRequest::default()))
                .await?;
        }
        "UpdateTenant" => {
            a.update_tenant(c.request(pb::UpdateTenantRequest {
                tenant: Some(pb::Tenant {
                    tenant_id: t,
                    ..Default::default()
                }),
                update_mask: None,
            }))
            .await?;
        }
        "SuspendTenant" => {
            a.suspend_tenant(c.request(pb::SuspendTenantRequest {
                tenant_id: t,
                reason: "authorization walk".into(),
            }))
            .await?;
        }
        "ResumeTenant" => {
            a.resume_tenant(c.request(pb::ResumeTenantRequest { tenant_id: t }))
                .await?;
        }
        "IssueApiKey" => {
            a.issue_api_key(c.request(pb::IssueApiKeyRequest {
                tenant_id: t,
                ..Default::default()
            }))
            .await?;
        }
        "ListApiKeys" => {
            a.list_api_keys(c.request(pb::ListApiKeysRequest { tenant_id: t }))
                .await?;
        }
        "RotateApiKey" => {
            a.rotate_api_key(c.request(pb::RotateApiKeyRequest {
                key_id: "0000000000000000".into(),
                grace_seconds: 0,
            }))
            .await?;
        }
        "RevokeApiKey" => {
            a.revoke_api_key(c.request(pb::RevokeApiKeyRequest {
                key_id: "0000000000000000".into(),
            }))
            .await?;
        }
        "ListAuditEvents" => {
            a.list_audit_events(c.request(pb::ListAuditEventsRequest {
                tenant_id: t,
                ..Default::default()
            }))
            .await?;
        }
        "GetTenantUsage" => {
            a.get_tenant_usage(c.request(pb::GetTenantUsageRequest { tenant_id: t }))
                .await?;
        }
        "ClearSubjectGuard" => {
            a.clear_subject_guard(c.request(pb::ClearSubjectGuardRequest::default()))
                .await?;
        }
        "GetUsageSummary" => {
            b.get_usage_summary(c.request(pb::GetUsageSummaryRequest {
                tenant_id: t,
                period: future,
            }))
            .await?;
        }
        "ListPricePlans" => {
            b.list_price_plans(c.request(pb::ListPricePlansRequest {}))
                .await?;
        }
        "GetPricePlan" => {
            b.get_price_plan(c.request(pb::GetPricePlanRequest {
                plan_id: "demo".into(),
                version: 0,
            }))
            .await?;
        }
        "CreateInvoice" => {
            b.create_invoice(c.request(pb::CreateInvoiceRequest {
                tenant_id: t,
                period: future,
            }))
            .await?;
        }
        "FinalizeInvoice" => {
            b.finalize_invoice(c.request(pb::FinalizeInvoiceRequest {
                tenant_id: t,
                period: future,
            }))
            .await?;
        }
        "ListInvoices" => {
            b.list_invoices(c.request(pb::ListInvoicesRequest { tenant_id: t }))
                .await?;
        }
        "ExportInvoice" => {
            b.export_invoice(c.request(pb::ExportInvoiceRequest {
                invoice_id: format!("{t}:{future}"),
                ..Default::default()
            }))
            .await?;
        }
        "ImportRecords" => {
            // An empty import: nothing to change, so nothing is published.
            let chunks = tokio_stream::iter(vec![pb::ImportRecordsRequest::default()]);
            r.import_records(c.request(chunks)).await?;
        }
        "PublishVersion" => {
            // No version is staged: refused after authorisation.
            r.publish_version(c.request(pb::PublishVersionRequest {
                registry_version: 77,
            }))
            .await?;
        }
        "DiscardVersion" => {
            r.discard_version(c.request(pb::DiscardVersionRequest {
                registry_version: 77,
            }))
            .await?;
        }
        "PurgePepper" => {
            // A pepper version no record was derived under.
            r.purge_pepper(c.request(pb::PurgePepperRequest { pepper_version: 77 }))
                .await?;
        }
        "GetCheckpoint" => {
            c.audit_log()
                .get_checkpoint(c.request(pb::GetCheckpointRequest::default()))
                .await?;
        }
        "GetCheckpointAt" => {
            c.audit_log()
                .get_checkpoint_at(c.request(pb::GetCheckpointAtRequest { tree_size: 77 }))
                .await?;
        }
        "GetConsistencyProof" => {
            c.audit_log()
                .get_consistency_proof(c.request(pb::GetConsistencyProofRequest::default()))
                .await?;
        }
        "GetInclusionProof" => {
            c.audit_log()
                .get_inclusion_proof(c.request(pb::GetInclusionProofRequest {
                    transaction_id: "tx_00000000000000000000000000000000".into(),
                    tree_size: 0,
                }))
                .await?;
        }
        "ListLogEntries" => {
            c.audit_log()
                .list_log_entries(c.request(pb::ListLogEntriesRequest::default()))
                .await?;
        }
        "GetAdminAuditCheckpoint" => {
            c.audit_log()
                .get_admin_audit_checkpoint(c.request(pb::GetCheckpointRequest::default()))
                .await?;
        }
        "ListSubjectAccesses" => {
            // No ID number: refused after authorisation, before hashing.
            c.audit_log()
                .list_subject_accesses(c.request(pb::ListSubjectAccessesRequest::default()))
                .await?;
        }
        other => panic!("no call for {other}"),
    }
    Ok(())
}

/// Every method of the `ekyc.v1` services, from the proto's descriptors.
fn proto_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(ekyc_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    set.file
        .iter()
        .filter(|f| f.package() == "ekyc.v1")
        .flat_map(|f| {
            f.service.iter().flat_map(|s| {
                s.method
                    .iter()
                    .map(move |m| format!("ekyc.v1.{}/{}", s.name(), m.name()))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_let_through_exactly_where_the_table_says() {
    // The table and the proto name the same methods, each once.
    let table: BTreeSet<String> = RULES
        .iter()
        .map(|r| format!("{}/{}", r.service, r.method))
        .collect();
    assert_eq!(table.len(), RULES.len(), "a method listed twice");
    assert_eq!(table, proto_methods(), "the table and the proto differ");

    let server = TestServer::start(TestOptions::default()).await;
    let connect = |key: String| {
        let endpoint = server.endpoint();
        async move {
            Client::connect(&endpoint, Some(&key), Duration::from_secs(10))
                .await
                .expect("connect")
        }
    };
    let (agency, admin_key) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let admin = connect(admin_key.token).await;
    let bank = server.tenant_id("test-bank").await;
    let issue = |tenant: String, role: pb::Role| {
        let admin = &admin;
        async move {
            admin
                .admin()
                .issue_api_key(admin.request(pb::IssueApiKeyRequest {
                    tenant_id: tenant,
                    role: role as i32,
                    ttl_seconds: 0,
                    live: true,
                }))
                .await
                .expect("issue")
                .into_inner()
                .secret
        }
    };
    let agency_id = agency.id.clone();
    let callers = [
        (
            connect(issue(agency_id.clone(), pb::Role::AgencyAdmin).await).await,
            agency_id.clone(),
        ),
        (
            connect(issue(agency_id.clone(), pb::Role::Finance).await).await,
            agency_id.clone(),
        ),
        (
            connect(issue(agency_id.clone(), pb::Role::RegistryOperator).await).await,
            agency_id.clone(),
        ),
        (
            connect(issue(bank.clone(), pb::Role::Finance).await).await,
            bank.clone(),
        ),
        (
            connect(issue(bank.clone(), pb::Role::Verifier).await).await,
            bank.clone(),
        ),
        (
            connect(issue(agency_id.clone(), pb::Role::Auditor).await).await,
            agency_id.clone(),
        ),
        (
            connect(issue(agency_id.clone(), pb::Role::PrivacyOfficer).await).await,
            agency_id.clone(),
        ),
    ];
    // Another tenant that exists for nobody: authorisation runs before
    // any lookup, so only the answer's code tells who was let through.
    let stranger = "tn_00000000deadbeef";

    let mut cells = 0;
    for rule in RULES {
        let may = expected(rule.method);
        for (((c, own), who), may) in callers.iter().zip(CALLERS).zip(may) {
            for (target, about) in [(own.as_str(), "its own tenant"), (stranger, "another")] {
                let got = call(c, rule.method, target).await;
                let denied = got
                    .as_ref()
                    .err()
                    .filter(|s| s.code() == Code::PermissionDenied)
                    .map(reason);
                let want = match (may, target == own.as_str()) {
                    (Any, _) | (Own, true) => None,
                    (Own, false) => Some("TENANT_NOT_ACCESSIBLE"),
                    (No, _) => Some("ROLE_NOT_ALLOWED"),
                };
                assert_eq!(
                    denied.as_deref(),
                    want,
                    "{who} calling {} about {about}: {got:?}",
                    rule.method
                );
                cells += 1;
            }
        }
    }
    assert_eq!(cells, RULES.len() * CALLERS.len() * 2);

    // The walk changed nothing: both tenants are still active.
    for id in [&agency_id, &bank] {
        let t = admin
            .admin()
            .get_tenant(admin.request(pb::GetTenantRequest {
                tenant_id: id.clone(),
            }))
            .await
            .expect("tenant")
            .into_inner()
            .tenant
            .expect("tenant");
        assert_eq!(t.status, pb::TenantStatus::Active as i32, "{id}");
    }
    server.stop().await;
}
