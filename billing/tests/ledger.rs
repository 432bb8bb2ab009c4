//! The ledger and invoices against a real database: every test runs on
//! SQLite and on PostgreSQL (a database of its own, dropped at the end).

use std::sync::Arc;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use ekyc_billing::invoices::{InvoiceError, InvoiceRequest, InvoiceSigner, InvoiceStatus};
use ekyc_billing::ledger::{Ledger, LedgerError, Recorded, UsageEvent};
use ekyc_billing::period::Month;
use ekyc_billing::{Issuer, LineKind, Party, PricePlan, Tier};
use rust_decimal::Decimal;

const PG_ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/test";
const TZ: &str = "Asia/Ho_Chi_Minh";

/// A fresh ledger on each backend; the PostgreSQL one in its own database.
struct Backends {
    dir: tempfile::TempDir,
    pg_database: String,
}

impl Backends {
    async fn new() -> Backends {
        let nonce: u64 = rand_u64();
        let pg_database = format!("ekyc_billing_test_{nonce:016x}");
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (scripts/services.sh starts it)");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {pg_database}"
        )))
        .execute(&admin)
        .await
        .expect("create test database");
        admin.close().await;
        Backends {
            dir: tempfile::tempdir().expect("dir"),
            pg_database,
        }
    }

    fn urls(&self) -> [String; 2] {
        [
            format!("sqlite://{}", self.dir.path().join("billing.db").display()),
            format!("postgres://root@127.0.0.1:5432/{}", self.pg_database),
        ]
    }

    async fn drop_pg(self) {
        let admin = sqlx::AnyPool::connect(PG_ADMIN_URL).await.expect("admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.pg_database
        )))
        .execute(&admin)
        .await
        .expect("drop test database");
        admin.close().await;
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    u64::from_le_bytes(b)
}

struct TestSigner(SigningKey);

impl InvoiceSigner for TestSigner {
    fn key_id(&self) -> &str {
        "ed25519-test"
    }
    fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        self.0.sign(bytes).to_bytes().to_vec()
    }
}

fn ms(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .expect("time")
        .as_millisecond()
}

fn event(tenant: &str, request_id: &str, at: &str, units: u64) -> UsageEvent {
    UsageEvent {
        tenant_id: tenant.into(),
        request_id: request_id.into(),
        event_time_ms: ms(at),
        method: "Verify".into(),
        fields: ["full_name", "date_of_birth", "gender"][..units.min(3) as usize]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        units,
        outcome: "yes".into(),
        fingerprint: format!("fp-{request_id}"),
        replay: Some("{}".into()),
        invoice_number: None,
    }
}

fn tiered_plan() -> PricePlan {
    PricePlan {
        id: "bank-standard".into(),
        version: 1,
        name: "Bank standard".into(),
        currency: "VND".into(),
        minor_units: 0,
        per_call: Decimal::from(50),
        per_field_tiers: vec![
            Tier {
                up_to: Some(10_000),
                unit_price: Decimal::from(1000),
            },
            Tier {
                up_to: Some(100_000),
                unit_price: Decimal::from(900),
            },
            Tier {
                up_to: None,
                unit_price: Decimal::from(800),
            },
        ],
        included_units: 100,
        monthly_minimum: Decimal::from(1_000_000),
        tax_rate: Decimal::new(10, 2),
    }
}

fn request(tenant: &str, period: &str, plan: &str) -> InvoiceRequest {
    InvoiceRequest {
        tenant_id: tenant.into(),
        tenant_name: format!("{tenant} name"),
        buyer: Party {
            legal_name: format!("{tenant} legal name"),
            address: "1 Test Street".into(),
            tax_code: "0100112437".into(),
        },
        period: period.into(),
        time_zone: TZ.into(),
        plan_id: plan.into(),
        issuer: Issuer {
            id: "EKYC".into(),
            name: "eKYC test issuer".into(),
            party: Some(Party::default()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_recorded_once_and_batched() {
    let backends = Backends::new().await;
    for url in backends.urls() {
        let ledger = Arc::new(Ledger::open(&url).await.expect("open"));
        let first = event("tn_a", "req-1", "2026-10-05T03:00:00Z", 2);
        assert_eq!(
            ledger.record(first.clone()).await.expect("record"),
            Recorded::Inserted
        );
        let mut again = first.clone();
        again.fingerprint = "other".into();
        match ledger.record(again).await.expect("record") {
            Recorded::Existing(stored) => assert_eq!(*stored, first, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
        // 400 concurrent writers, 10 of them duplicates of others.
        let tasks: Vec<_> = (0..400)
            .map(|n| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    let id = format!("req-c{}", n % 390);
                    ledger
                        .record(event("tn_a", &id, "2026-10-06T03:00:00Z", 1))
                        .await
                        .expect("record")
                })
            })
            .collect();
        let mut inserted = 0;
        for t in tasks {
            if t.await.expect("task") == Recorded::Inserted {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 390, "{url}");
        let month = Month::parse("2026-10", TZ).expect("month");
        let usage = ledger
            .usage_by_method("tn_a", month.start_ms, month.end_ms)
            .await
            .expect("usage");
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].1.calls, usage[0].1.units), (391, 392), "{url}");
        assert_eq!(
            ledger.find("tn_a", "req-1").await.expect("find"),
            Some(first),
            "{url}"
        );
        ledger.close().await;
    }
    backends.drop_pg().await;
}

/// Prices every field unit one at a time, in a loop independent of the
/// pricing code, for the plan above.
fn independent_subtotal(calls: u64, units: u64) -> i64 {
    let mut subtotal: i64 = 50 * calls as i64;
    for unit in 1..=units {
        subtotal += match unit {
            1..=100 => 0,
            101..=10_000 => 1000,
            10_001..=100_000 => 900,
            _ => 800,
        };
    }
    subtotal.max(1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_over_100k_events_matches_an_independent_computation() {
    let backends = Backends::new().await;
    let signing = SigningKey::from_bytes(&[7; 32]);
    let signer = TestSigner(signing.clone());
    for url in backends.urls() {
        let ledger = Arc::new(Ledger::open(&url).await.expect("open"));
        ledger.put_plan(&tiered_plan(), 0).await.expect("plan");
        let month = Month::parse("2026-09", TZ).expect("month");
        // 100,000 events spread over the month, 1 to 3 units each.
        let writers: Vec<_> = (0..50u64)
            .map(|w| {
                let ledger = Arc::clone(&ledger);
                let span = month.end_ms - month.start_ms;
                tokio::spawn(async move {
                    for n in 0..2_000u64 {
                        let i = w * 2_000 + n;
                        let mut e = event(
                            "tn_big",
                            &format!("r{i}"),
                            "2026-09-01T00:00:00Z",
                            1 + i % 3,
                        );
                        e.event_time_ms = month.start_ms + (i as i64 * 7919) % span;
                        ledger.record(e).await.expect("record");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
        // One event just outside the month on each side: not billed here.
        for (id, at) in [("before", month.start_ms - 1), ("after", month.end_ms)] {
            let mut e = event("tn_big", id, "2026-09-01T00:00:00Z", 3);
            e.event_time_ms = at;
            ledger.record(e).await.expect("record");
        }
        let units: u64 = (0..100_000u64).map(|i| 1 + i % 3).sum();
        let inv = ledger
            .finalize_invoice(
                &request("tn_big", "2026-09", "bank-standard"),
                &signer,
                month.end_ms + 1,
            )
            .await
            .expect("finalize");
        let doc = &inv.signed.document;
        assert_eq!(doc.event_count, 100_000, "{url}");
        let expected = independent_subtotal(100_000, units);
        assert_eq!(doc.priced.subtotal, Decimal::from(expected), "{url}");
        assert_eq!(doc.priced.tax, Decimal::from(expected / 10), "{url}");
        assert_eq!(
            doc.priced.total,
            Decimal::from(expected + expected / 10),
            "{url}"
        );
        let field_units: u64 = doc
            .priced
            .lines
            .iter()
            .filter(|l| matches!(l.kind, LineKind::FieldUnits | LineKind::IncludedUnits))
            .map(|l| l.quantity)
            .sum();
        assert_eq!(field_units, units, "{url}");
        // Signed, reproducible, reconciled.
        let signature = ed25519_dalek::Signature::from_slice(&inv.signed.signature).expect("sig");
        signing
            .verifying_key()
            .verify(&inv.signed.bytes, &signature)
            .expect("signature verifies");
        assert_eq!(
            ledger
                .regenerate(&inv.invoice_id)
                .await
                .expect("regenerate"),
            inv.signed.bytes,
            "{url}"
        );
        let report = ledger
            .reconcile("tn_big", Some("2026-09"))
            .await
            .expect("reconcile");
        assert!(report.is_clean(), "{url}: {report:?}");
        assert_eq!(report.invoices[0].ledger.calls, 100_000);
        ledger.close().await;
    }
    backends.drop_pg().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_gapless_finals_immutable_and_late_events_become_adjustments() {
    let backends = Backends::new().await;
    let signer = TestSigner(SigningKey::from_bytes(&[9; 32]));
    for url in backends.urls() {
        let ledger = Ledger::open(&url).await.expect("open");
        ledger.put_plan(&tiered_plan(), 0).await.expect("plan");
        let oct = Month::parse("2026-10", TZ).expect("month");
        let nov = Month::parse("2026-11", TZ).expect("month");
        for (tenant, n) in [("tn_a", 3), ("tn_b", 2)] {
            for i in 0..n {
                ledger
                    .record(event(
                        tenant,
                        &format!("oct-{i}"),
                        "2026-10-10T00:00:00Z",
                        2,
                    ))
                    .await
                    .expect("record");
            }
        }
        // Too early: the month is not over, and no number is used.
        let early = ledger
            .finalize_invoice(
                &request("tn_a", "2026-10", "bank-standard"),
                &signer,
                oct.end_ms - 1,
            )
            .await;
        assert!(
            matches!(
                early,
                Err(LedgerError::Invoice(InvoiceError::PeriodNotOver))
            ),
            "{early:?}"
        );
        let draft = ledger
            .draft_invoice(&request("tn_a", "2026-10", "bank-standard"), oct.end_ms - 1)
            .await
            .expect("draft");
        assert_eq!(draft.status, InvoiceStatus::Draft);
        assert_eq!(draft.signed.document.number, "");
        let a = ledger
            .finalize_invoice(
                &request("tn_a", "2026-10", "bank-standard"),
                &signer,
                oct.end_ms,
            )
            .await
            .expect("final a");
        let b = ledger
            .finalize_invoice(
                &request("tn_b", "2026-10", "bank-standard"),
                &signer,
                oct.end_ms,
            )
            .await
            .expect("final b");
        assert_eq!(
            (
                a.signed.document.number.as_str(),
                b.signed.document.number.as_str()
            ),
            ("EKYC-000001", "EKYC-000002"),
            "{url}"
        );
        let again = ledger
            .finalize_invoice(
                &request("tn_a", "2026-10", "bank-standard"),
                &signer,
                oct.end_ms,
            )
            .await;
        assert!(matches!(
            again,
            Err(LedgerError::Invoice(InvoiceError::AlreadyFinal))
        ));
        let redraft = ledger
            .draft_invoice(&request("tn_a", "2026-10", "bank-standard"), oct.end_ms)
            .await;
        assert!(matches!(
            redraft,
            Err(LedgerError::Invoice(InvoiceError::AlreadyFinal))
        ));

        // A late October event (answered at 23:59:59.999 local, recorded
        // after the invoice) and a November one.
        let mut late = event("tn_a", "oct-late", "2026-10-10T00:00:00Z", 3);
        late.event_time_ms = oct.end_ms - 1;
        ledger.record(late.clone()).await.expect("late");
        ledger
            .record(event("tn_a", "nov-1", "2026-11-10T00:00:00Z", 1))
            .await
            .expect("nov");
        let report = ledger.reconcile("tn_a", None).await.expect("reconcile");
        assert_eq!(
            report.unaccounted.len(),
            1,
            "{url}: the late event is listed"
        );
        assert_eq!(report.unaccounted[0].request_id, "oct-late");
        let c = ledger
            .finalize_invoice(
                &request("tn_a", "2026-11", "bank-standard"),
                &signer,
                nov.end_ms,
            )
            .await
            .expect("final nov");
        assert_eq!(c.signed.document.number, "EKYC-000003", "{url}");
        let adjustments: Vec<_> = c
            .signed
            .document
            .priced
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Adjustment)
            .collect();
        assert!(
            adjustments
                .iter()
                .any(|l| l.description.contains("2026-10") && l.quantity == 3),
            "{url}: {adjustments:?}"
        );
        assert_eq!(c.signed.document.event_count, 2);
        let report = ledger.reconcile("tn_a", None).await.expect("reconcile");
        assert!(report.is_clean(), "{url}: {report:?}");
        assert_eq!(report.invoices.len(), 2);
        // The October invoice did not change.
        assert_eq!(
            ledger.invoice(&a.invoice_id).await.expect("a").signed.bytes,
            a.signed.bytes
        );
        // Plan versions are immutable.
        let mut changed = tiered_plan();
        changed.per_call = Decimal::from(60);
        assert!(matches!(
            ledger.put_plan(&changed, 0).await,
            Err(LedgerError::Invoice(InvoiceError::PlanVersionExists))
        ));
        changed.version = 2;
        ledger.put_plan(&changed, 0).await.expect("new version");
        assert_eq!(
            ledger
                .plan("bank-standard", None)
                .await
                .expect("plan")
                .map(|p| p.version),
            Some(2)
        );
        ledger.close().await;
    }
    backends.drop_pg().await;
}
