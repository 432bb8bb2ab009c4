//! Metering and billing as tenants and finance teams meet them: retries
//! answered identically and billed once, refusals never billed, a SIGKILL
//! losing nothing a client saw answered, and invoices finalized, signed
//! and exported through `BillingService`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use ekyc_billing::UsageEvent;
use ekyc_billing::ledger::Ledger;
use ekyc_billing::period::Month;
use ekyc_client::{Client, v1 as pb};
use ekyc_service::store::{Limits, TenantPolicy};
use ekyc_service::test_support::{
    TestOptions, TestServer, prepare_data_dir, reason, unique_request_id,
};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt;

fn ask(index: u64, request_id: &str) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    pb::VerifyRequest {
        request_id: request_id.to_string(),
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

async fn client(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(10))
        .await
        .expect("connect")
}

async fn billed_calls(server: &TestServer, tenant: &str) -> u64 {
    server
        .app
        .ledger
        .usage_by_method(tenant, 0, i64::MAX)
        .await
        .expect("usage")
        .iter()
        .map(|(_, q)| q.calls)
        .sum()
}

/// A fresh PostgreSQL database for one test, dropped by `drop_pg`.
async fn pg_database() -> String {
    sqlx::any::install_default_drivers();
    let name = format!(
        "ekyc_service_test_{}",
        unique_request_id("db").replace('-', "_")
    ) + &format!("_{}", std::process::id());
    let admin = sqlx::AnyPool::connect("postgres://root@127.0.0.1:5432/test")
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 (scripts/services.sh starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    name
}

async fn drop_pg(name: &str) {
    let admin = sqlx::AnyPool::connect("postgres://root@127.0.0.1:5432/test")
        .await
        .expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop database");
    admin.close().await;
}

/// The retry storm and the refusals, on the given ledger database.
async fn retries_are_answered_once_and_refusals_never_billed(ledger_url: Option<String>) {
    let server = TestServer::start(TestOptions {
        billing_database_url: ledger_url,
        ..TestOptions::default()
    })
    .await;
    let c = Arc::new(client(&server, &server.api_key).await);
    let tenant = server.tenant_id("test-bank").await;
    let before = server
        .app
        .pool
        .stats()
        .evaluations
        .load(std::sync::atomic::Ordering::SeqCst);

    // 50 concurrent copies of one request.
    let request = ask(3, "storm-1");
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (c, r) = (Arc::clone(&c), request.clone());
            tokio::spawn(async move { c.verify(r).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        let answer = call.await.expect("task").expect("answered and attested");
        answers.push(answer.response.encode_to_vec());
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every copy gets the same bytes"
    );
    assert_eq!(billed_calls(&server, &tenant).await, 1, "billed once");
    assert_eq!(
        server
            .app
            .pool
            .stats()
            .evaluations
            .load(std::sync::atomic::Ordering::SeqCst)
            - before,
        1,
        "hashed once"
    );
    // A later retry too.
    let later = c.verify(request.clone()).await.expect("retry");
    assert_eq!(later.response.encode_to_vec(), answers[0]);
    // The same id with a changed claim is refused.
    let mut changed = request.clone();
    changed.claims.as_mut().expect("claims").date_of_birth = Some("1970-01-01".into());
    let s = c.verify_unchecked(changed).await.expect_err("reused id");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::AlreadyExists, "REQUEST_ID_REUSED")
    );

    // Refusals: invalid, rate-limited, quota: none billed, and a refused
    // request id stays free for a real answer.
    let mut invalid = ask(4, "refused-1");
    invalid.claims.as_mut().expect("claims").date_of_birth = Some("1990-02-30".into());
    let s = c.verify_unchecked(invalid).await.expect_err("invalid");
    assert_eq!(s.code(), Code::InvalidArgument);
    c.verify(ask(4, "refused-1"))
        .await
        .expect("the id is still free");
    let limited_key = server
        .tenant(
            "limited-bank",
            TenantPolicy {
                limits: Limits {
                    requests_per_second: 1,
                    burst: 1,
                    daily_quota_units: 4,
                    monthly_quota_units: 0,
                },
                ..TenantPolicy::default()
            },
        )
        .await;
    let limited = client(&server, &limited_key).await;
    let mut reasons = Vec::new();
    for n in 0..6 {
        match limited
            .verify_unchecked(ask(5, &format!("limited-{n}")))
            .await
        {
            Ok(_) => reasons.push("answered".to_string()),
            Err(s) => reasons.push(reason(&s)),
        }
        if n == 2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert_eq!(reasons[..3], ["answered", "RATE_LIMITED", "RATE_LIMITED"]);
    assert_eq!(reasons[3], "answered");
    assert!(
        reasons[4..]
            .iter()
            .all(|r| r == "RATE_LIMITED" || r == "QUOTA_EXCEEDED")
    );
    let limited_id = server.tenant_id("limited-bank").await;
    assert_eq!(billed_calls(&server, &limited_id).await, 2);
    assert_eq!(billed_calls(&server, &tenant).await, 2);

    // The draft of this month bills exactly the answered calls.
    let (_, admin) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let agency = client(&server, &admin.token).await;
    let draft = agency
        .billing()
        .create_invoice(
            agency.request(pb::CreateInvoiceRequest {
                tenant_id: limited_id.clone(),
                period: jiff::Timestamp::now()
                    .in_tz("Asia/Ho_Chi_Minh")
                    .expect("zone")
                    .strftime("%Y-%m")
                    .to_string(),
            }),
        )
        .await
        .expect("draft")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(draft.status, pb::InvoiceStatus::Draft as i32);
    // Demo plan: 1,000 VND per field, two fields per answered call.
    assert_eq!(draft.total, "4000");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_refusals_on_sqlite() {
    retries_are_answered_once_and_refusals_never_billed(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_refusals_on_postgresql() {
    let db = pg_database().await;
    retries_are_answered_once_and_refusals_never_billed(Some(format!(
        "postgres://root@127.0.0.1:5432/{db}"
    )))
    .await;
    drop_pg(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_window_is_refused() {
    let server = TestServer::start(TestOptions {
        idempotency_window_secs: 1,
        ..TestOptions::default()
    })
    .await;
    let c = client(&server, &server.api_key).await;
    let request = ask(6, "window-1");
    let first = c.verify(request.clone()).await.expect("answered");
    let again = c.verify(request.clone()).await.expect("within the window");
    assert_eq!(first.response, again.response);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let s = c
        .verify_unchecked(request)
        .await
        .expect_err("after the window");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::AlreadyExists, "REQUEST_ID_EXPIRED")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_are_finalized_signed_exported_and_access_controlled() {
    let server = TestServer::start(TestOptions {
        issuer: ekyc_billing::Party {
            legal_name: "Trung tâm Dữ liệu quốc gia về dân cư".into(),
            address: "Số 47 Phạm Văn Đồng, Hà Nội".into(),
            tax_code: "0109876543".into(),
        },
        ..TestOptions::default()
    })
    .await;
    let tenant = server.tenant_id("test-bank").await;
    // Last month's usage, as the ledger holds it (the service's clock
    // cannot be moved, and a month must be over to be finalized).
    let now = jiff::Timestamp::now().as_millisecond();
    let this_month = Month::containing(now, "Asia/Ho_Chi_Minh").expect("month");
    let last = Month::containing(this_month.start_ms - 1, "Asia/Ho_Chi_Minh").expect("month");
    for n in 0..25u64 {
        let e = UsageEvent {
            tenant_id: tenant.clone(),
            request_id: format!("past-{n}"),
            event_time_ms: last.start_ms + 60_000 * n as i64,
            method: "Verify".into(),
            fields: vec!["full_name".into(), "date_of_birth".into()],
            units: 2,
            outcome: "yes".into(),
            fingerprint: "fp".into(),
            replay: None,
            invoice_number: None,
        };
        server.app.ledger.record(e).await.expect("record");
    }
    let (_, admin) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let agency = client(&server, &admin.token).await;
    let actor = ekyc_service::tenants::Actor::local("test");
    let test_bank = server
        .app
        .store
        .get_tenant(&tenant)
        .await
        .expect("get")
        .expect("tenant");
    let finance = ekyc_service::tenants::issue_key(
        &server.app.store,
        &test_bank,
        ekyc_service::store::Role::Finance,
        false,
        None,
        &actor,
    )
    .await
    .expect("finance key");
    let finance = client(&server, &finance.token).await;
    let verifier = client(&server, &server.api_key).await;

    // Who may do what.
    let finalize = |tenant: &str| pb::FinalizeInvoiceRequest {
        tenant_id: tenant.to_string(),
        period: last.label.clone(),
    };
    let s = verifier
        .billing()
        .list_invoices(verifier.request(pb::ListInvoicesRequest {
            tenant_id: tenant.clone(),
        }))
        .await
        .expect_err("verifier");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");
    let s = finance
        .billing()
        .finalize_invoice(finance.request(finalize(&tenant)))
        .await
        .expect_err("a tenant's finance key does not finalize");
    assert_eq!(reason(&s), "ROLE_NOT_ALLOWED");
    let s = finance
        .billing()
        .list_invoices(finance.request(pb::ListInvoicesRequest::default()))
        .await
        .expect_err("every tenant");
    assert_eq!(reason(&s), "TENANT_NOT_ACCESSIBLE");
    let s = agency
        .billing()
        .finalize_invoice(agency.request(pb::FinalizeInvoiceRequest {
            tenant_id: tenant.clone(),
            period: this_month.label.clone(),
        }))
        .await
        .expect_err("this month is not over");
    assert_eq!(reason(&s), "PERIOD_NOT_OVER");

    // The agency records the bank's legal particulars; a bad tax code is
    // refused, names its field and changes nothing.
    let set_legal = |tax_code: &str| pb::UpdateTenantRequest {
        tenant: Some(pb::Tenant {
            tenant_id: tenant.clone(),
            legal: Some(pb::LegalParticulars {
                legal_name: "Ngân hàng TMCP Ngoại thương Việt Nam".into(),
                address: "198 Trần Quang Khải, Hoàn Kiếm, Hà Nội".into(),
                tax_code: tax_code.into(),
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["legal".into()],
        }),
    };
    for bad in [
        "010011243",
        "0100112437-01",
        "01001124370001",
        "0100112437 001",
    ] {
        let s = agency
            .admin()
            .update_tenant(agency.request(set_legal(bad)))
            .await
            .expect_err(bad);
        assert_eq!(s.code(), Code::InvalidArgument, "{bad}");
        let violations = s.get_error_details();
        let v = &violations
            .bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(
            (v.len(), v[0].field.as_str(), v[0].reason.as_str()),
            (1, "tenant.legal.tax_code", "INVALID_FORMAT")
        );
    }
    let unchanged = server.app.store.get_tenant(&tenant).await.expect("get");
    assert_eq!(unchanged.expect("tenant").legal, Default::default());
    let updated = agency
        .admin()
        .update_tenant(agency.request(set_legal("0100112437-001")))
        .await
        .expect("legal particulars")
        .into_inner()
        .tenant
        .expect("tenant");
    assert_eq!(updated.legal.expect("legal").tax_code, "0100112437-001");

    // The agency finalizes last month.
    let invoice = agency
        .billing()
        .finalize_invoice(agency.request(finalize(&tenant)))
        .await
        .expect("finalize")
        .into_inner()
        .invoice
        .expect("invoice");
    assert_eq!(invoice.number, "EKYC-000001");
    assert_eq!(invoice.total, "50000", "25 calls x 2 fields x 1,000 VND");
    let s = agency
        .billing()
        .finalize_invoice(agency.request(finalize(&tenant)))
        .await
        .expect_err("twice");
    assert_eq!(reason(&s), "INVOICE_FINALIZED");

    // Its signature verifies with the published key.
    let keys = agency.signing_keys().await.expect("keys");
    let key = keys
        .iter()
        .find(|k| k.key_id == invoice.key_id)
        .expect("the signing key is published");
    let public =
        VerifyingKey::from_bytes(&key.public_key[..].try_into().expect("32 bytes")).expect("key");
    public
        .verify(
            &invoice.document,
            &Signature::from_slice(&invoice.signature).expect("signature"),
        )
        .expect("the invoice signature verifies");
    assert_eq!(
        server
            .app
            .ledger
            .regenerate(&invoice.invoice_id)
            .await
            .expect("regenerate"),
        invoice.document,
        "reproducible from the ledger"
    );

    // The tenant's finance team exports it; every export is stable.
    let export = |format: pb::ExportFormat| {
        let finance = &finance;
        let id = invoice.invoice_id.clone();
        async move {
            finance
                .billing()
                .export_invoice(finance.request(pb::ExportInvoiceRequest {
                    invoice_id: id,
                    format: format as i32,
                    csv_version: 0,
                }))
                .await
                .expect("export")
                .into_inner()
        }
    };
    let dir = tempfile::tempdir().expect("dir");
    for format in [
        pb::ExportFormat::Csv,
        pb::ExportFormat::Json,
        pb::ExportFormat::Pdf,
    ] {
        let a = export(format).await;
        let b = export(format).await;
        assert_eq!(a.content, b.content, "{format:?} export is byte-stable");
        std::fs::write(dir.path().join(&a.file_name), &a.content).expect("write");
    }
    // CSV through Python's csv module.
    let python = std::env::var("EKYC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import csv,json,sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline='', encoding='utf-8')))))",
        ])
        .arg(dir.path().join("EKYC-000001.csv"))
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).expect("rows");
    assert_eq!(rows[0][0], "format_version");
    let kinds: Vec<&str> = rows[1..].iter().map(|r| r[8].as_str()).collect();
    assert_eq!(kinds, ["field_units", "subtotal", "tax", "total"]);
    assert_eq!(rows[1][0], "2", "the latest CSV layout");
    assert_eq!(rows[1][10], "50", "quantity");
    assert_eq!(rows.last().expect("total")[12], "50000");
    assert_eq!(
        rows[1][13..19],
        [
            "Trung tâm Dữ liệu quốc gia về dân cư",
            "0109876543",
            "Số 47 Phạm Văn Đồng, Hà Nội",
            "Ngân hàng TMCP Ngoại thương Việt Nam",
            "0100112437-001",
            "198 Trần Quang Khải, Hoàn Kiếm, Hà Nội",
        ]
    );
    assert_eq!(rows.last().expect("total")[19], "Năm mươi nghìn đồng");
    // The original layout stays available for accounting imports.
    let v1 = finance
        .billing()
        .export_invoice(finance.request(pb::ExportInvoiceRequest {
            invoice_id: invoice.invoice_id.clone(),
            format: pb::ExportFormat::Csv as i32,
            csv_version: 1,
        }))
        .await
        .expect("csv v1")
        .into_inner();
    let v1 = String::from_utf8(v1.content).expect("utf-8");
    assert!(v1.starts_with(&format!(
        "{}\r\n1,EKYC-000001,",
        ekyc_billing::export::csv::CSV_COLUMNS_V1.join(",")
    )));
    let s = finance
        .billing()
        .export_invoice(finance.request(pb::ExportInvoiceRequest {
            invoice_id: invoice.invoice_id.clone(),
            format: pb::ExportFormat::Csv as i32,
            csv_version: 3,
        }))
        .await
        .expect_err("no such layout");
    assert_eq!(s.code(), Code::InvalidArgument);
    // PDF through pdftotext.
    let text = std::process::Command::new("pdftotext")
        .arg(dir.path().join("EKYC-000001.pdf"))
        .arg("-")
        .output()
        .expect("pdftotext must be installed (scripts/services.sh installs poppler-utils)");
    let text = String::from_utf8_lossy(&text.stdout);
    let period = format!("{}/{}", &last.label[5..], &last.label[..4]);
    for needle in [
        "EKYC-000001",
        "test-bank",
        period.as_str(),
        "Field units",
        "50.000",
        "Ngân hàng TMCP Ngoại thương Việt Nam",
        "Trung tâm Dữ liệu quốc gia về dân cư",
        "Mã số thuế / Tax code: 0109876543",
        "Mã số thuế / Tax code: 0100112437-001",
        "Thuế suất GTGT / VAT rate: 0%",
        "Năm mươi nghìn đồng",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the PDF text:\n{text}"
        );
    }
    // Listing shows it; reconcile is clean.
    let listed = finance
        .billing()
        .list_invoices(finance.request(pb::ListInvoicesRequest {
            tenant_id: tenant.clone(),
        }))
        .await
        .expect("list")
        .into_inner()
        .invoices;
    assert_eq!(listed.len(), 1);
    let report = server
        .app
        .ledger
        .reconcile(&tenant, None)
        .await
        .expect("reconcile");
    assert!(report.is_clean(), "{report:?}");

    // The operator's reconcile command agrees, then flags a late event.
    let ekycd = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ekycd"));
        for (k, _) in std::env::vars() {
            if k.starts_with("EKYCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("EKYCD_DATA_DIR", server.dir.path())
            .env("EKYCD_LOG__FILTER", "warn")
            .envs(server.env())
            .args(args)
            .output()
            .expect("run ekycd")
    };
    let out = ekycd(&["billing", "reconcile", "--tenant", &tenant]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OK   EKYC-000001") && stdout.contains("reconciled"),
        "{stdout}"
    );
    let late = UsageEvent {
        tenant_id: tenant.clone(),
        request_id: "past-late".into(),
        event_time_ms: last.end_ms - 1,
        method: "Verify".into(),
        fields: vec!["full_name".into()],
        units: 1,
        outcome: "no".into(),
        fingerprint: "fp".into(),
        replay: None,
        invoice_number: None,
    };
    server.app.ledger.record(late).await.expect("late event");
    let out = ekycd(&["billing", "reconcile", "--tenant", &tenant]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("UNACCOUNTED past-late"), "{stdout}");

    // Plans: a new one is stored, a changed version and a bad plan refused.
    let plan = dir.path().join("plan.json");
    let mut bank_plan = ekyc_billing::pricing::demo_plan();
    bank_plan.id = "bank-2027".into();
    bank_plan.tax_rate = rust_decimal::Decimal::new(8, 2);
    std::fs::write(&plan, serde_json::to_vec(&bank_plan).expect("json")).expect("write");
    let path = plan.to_str().expect("utf-8");
    assert!(ekycd(&["billing", "put-plan", path]).status.success());
    assert!(
        ekycd(&["billing", "put-plan", path]).status.success(),
        "same again: no-op"
    );
    bank_plan.tax_rate = rust_decimal::Decimal::new(10, 2);
    std::fs::write(&plan, serde_json::to_vec(&bank_plan).expect("json")).expect("write");
    let out = ekycd(&["billing", "put-plan", path]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plans = finance
        .billing()
        .list_price_plans(finance.request(pb::ListPricePlansRequest {}))
        .await
        .expect("plans")
        .into_inner()
        .plans;
    let ids: Vec<(&str, u32)> = plans
        .iter()
        .map(|p| (p.plan_id.as_str(), p.version))
        .collect();
    assert_eq!(ids, [("bank-2027", 1), ("demo", 1)]);
    assert_eq!(plans[0].tax_rate, "0.08");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_loses_nothing_a_client_saw_answered() {
    let dir = tempfile::tempdir().expect("dir");
    let prepared =
        prepare_data_dir(dir.path(), 50, &[("load-bank", TenantPolicy::default())]).await;
    let (config, keys) = (&prepared.config, &prepared.keys);
    let mut server = prepared.start_ekycd(env!("CARGO_BIN_EXE_ekycd"), dir.path(), &[]);
    let c = Arc::new(
        Client::connect(&server.endpoint, Some(&keys[0]), Duration::from_secs(10))
            .await
            .expect("connect"),
    );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let callers = eight_callers(&c, "load", &seen);
    // Kill it mid-run, once it has answered a good number of calls.
    while seen.lock().expect("lock").len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    for caller in callers {
        caller.await.expect("caller");
    }
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() >= 200);

    assert_in_ledger(config, "load-bank", &seen).await;
}

/// Eight callers verifying one after another for up to 30 s, each answer's
/// request id (`{prefix}-{caller}-{n}`) pushed to `seen`, until the server
/// stops answering.
fn eight_callers(
    c: &Arc<Client>,
    prefix: &'static str,
    seen: &Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let stop = Instant::now() + Duration::from_secs(30);
    (0..8u64)
        .map(|caller| {
            let (c, seen) = (Arc::clone(c), Arc::clone(seen));
            tokio::spawn(async move {
                for n in 0.. {
                    if Instant::now() > stop {
                        break;
                    }
                    let id = format!("{prefix}-{caller}-{n}");
                    match c.verify(ask(caller * 5 + n % 5, &id)).await {
                        Ok(_) => seen.lock().expect("lock").push(id),
                        Err(_) => break, // the server is gone or going
                    }
                }
            })
        })
        .collect()
}

/// Every request id in `seen` (each answered to a caller) is in the
/// ledger of `tenant_name`, once.
async fn assert_in_ledger(config: &ekyc_service::Config, tenant_name: &str, seen: &[String]) {
    let ledger = Ledger::open(&config.billing_database_url())
        .await
        .expect("ledger");
    let tenant = {
        let store = ekyc_service::store::Store::open(&config.database_url(), &config.database)
            .await
            .expect("store");
        let t = store
            .list_tenants(None, 10)
            .await
            .expect("tenants")
            .into_iter()
            .find(|t| t.name == tenant_name)
            .expect("tenant")
            .id;
        store.close().await;
        t
    };
    let recorded = ledger.events(&tenant, 0, i64::MAX).await.expect("events");
    let ids: std::collections::HashSet<&str> =
        recorded.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids.len(), recorded.len(), "no request id twice");
    let missing: Vec<&String> = seen
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls are not in the ledger: {:?}",
        missing.len(),
        seen.len(),
        &missing[..missing.len().min(5)]
    );
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_under_load_drains_exits_zero_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let prepared =
        prepare_data_dir(dir.path(), 50, &[("drain-bank", TenantPolicy::default())]).await;
    let (config, keys) = (&prepared.config, &prepared.keys);
    let grace = Duration::from_secs(5);
    let mut server = prepared.start_ekycd(
        env!("CARGO_BIN_EXE_ekycd"),
        dir.path(),
        &[("EKYCD_SHUTDOWN_GRACE_SECS", "5")],
    );
    let c = Arc::new(
        Client::connect(&server.endpoint, Some(&keys[0]), Duration::from_secs(10))
            .await
            .expect("connect"),
    );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let callers = eight_callers(&c, "drain", &seen);
    while seen.lock().expect("lock").len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The drain may take the grace period, closing the parts their bound.
    let bound = grace + ekyc_service::lifecycle::CLOSE_BOUND;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate(bound + Duration::from_secs(2));
        (status, server)
    })
    .await
    .expect("terminate");
    let (status, _server) = status;
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| panic!("ekycd still running {took:?} after SIGTERM"));
    assert!(status.success(), "ekycd exited with {status} after SIGTERM");
    assert!(
        took <= bound,
        "ekycd took {took:?} to stop (bound {bound:?})"
    );
    for caller in callers {
        caller.await.expect("caller");
    }
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() >= 200);
    assert_in_ledger(config, "drain-bank", &seen).await;
}
