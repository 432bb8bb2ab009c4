//! Registry updates without downtime: a Verify load runs through an import
//! of 10,000 records that also changes records it asks about. Every answer
//! names the old or the new version and is right for the version it
//! names; once the import has switched, only the new version answers; and
//! no call fails. Runs on SQLite, and on PostgreSQL in the suite's
//! PostgreSQL pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::demo::rows_from_citizens;
use ekyc_service::import::{ProgressStyle, import_rows};
use ekyc_service::test_support::{TestOptions, TestServer, unique_request_id};

/// Subjects of the loaded registry whose birth day the import changes.
const CHANGED: u64 = 40;

/// Concurrent callers of the load.
const WORKERS: usize = 4;

/// The same date one day later (or earlier at the month's end): a full
/// date still consistent with the ID's birth year.
fn other_day(date: &str) -> String {
    let (head, day) = date.rsplit_once('-').expect("a full date");
    let day: u32 = day.parse().expect("day");
    let next = if day >= 28 { day - 1 } else { day + 1 };
    format!("{head}-{next:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_load_through_an_import_never_sees_half_a_version() {
    let server = TestServer::start(TestOptions {
        citizens: 200,
        queue_capacity: 256,
        ..TestOptions::default()
    })
    .await;
    let before = server.import.registry_version;
    // The subjects asked about: full birth dates, so a changed day is a
    // changed answer.
    let asked: Vec<ekyc_synth::Citizen> = ekyc_synth::citizens(42, 200)
        .filter(|c| c.date_of_birth.len() == 10)
        .take(CHANGED as usize)
        .collect();
    assert_eq!(asked.len(), CHANGED as usize, "enough full dates");
    let mut changed = asked.clone();
    for c in &mut changed {
        c.date_of_birth = other_day(&c.date_of_birth);
    }
    let new_rows = rows_from_citizens(ekyc_synth::citizens(7, 10_000).chain(changed));

    let client = Arc::new(
        Client::connect(
            &server.endpoint(),
            Some(&server.api_key),
            Duration::from_secs(30),
        )
        .await
        .expect("connect"),
    );
    let switched = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..WORKERS {
        let (client, switched, asked) = (Arc::clone(&client), Arc::clone(&switched), asked.clone());
        load.push(tokio::spawn(async move {
            // (version, answered yes, started after the switch)
            let mut seen = Vec::new();
            let mut n = worker;
            // After the switch each worker asks each of its subjects once
            // (every "no" counts against the subject guard), then stops.
            let mut after = 0;
            while after < asked.len() / WORKERS {
                let c = &asked[n % asked.len()];
                n += WORKERS;
                let after_switch = switched.load(Ordering::Acquire);
                after += usize::from(after_switch);
                let answer = client
                    .verify(pb::VerifyRequest {
                        request_id: unique_request_id("load"),
                        id_number: c.id_number.clone(),
                        claims: Some(pb::Claims {
                            date_of_birth: Some(c.date_of_birth.clone()),
                            ..Default::default()
                        }),
                        purpose_code: "ACCOUNT_OPENING".into(),
                        consent_reference: "consent-1".into(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("a call failed during the import: {e}"));
                let yes = answer.response.decision == pb::Decision::Yes as i32;
                seen.push((answer.response.registry_version, yes, after_switch));
            }
            seen
        }));
    }

    let (report, rejects) = import_rows(
        &server.app.store,
        Arc::clone(&server.app.pool),
        new_rows,
        Vec::new(),
        Vec::new(),
        ProgressStyle::Quiet,
        &ekyc_service::tenants::Actor::local("test"),
    )
    .await
    .expect("import");
    switched.store(true, Ordering::Release);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!((report.inserted, report.updated), (10_000, CHANGED));
    let after = report.registry_version;
    assert_eq!(after, before + 1);
    let mut answers = Vec::new();
    for l in load {
        answers.extend(l.await.expect("load"));
    }
    let old = answers.iter().filter(|(v, _, _)| *v == before).count();
    let new = answers.iter().filter(|(v, _, _)| *v == after).count();
    assert_eq!(old + new, answers.len(), "only the two versions answer");
    assert!(
        old > 0 && new > 0,
        "the load spans the switch: {old} old, {new} new"
    );
    for (version, yes, after_switch) in &answers {
        // The old birth dates match the old version only.
        assert_eq!(
            *yes,
            *version == before,
            "answer {version} is right for its version"
        );
        if *after_switch {
            assert_eq!(
                *version, after,
                "after the switch only the new version answers"
            );
        }
    }
    assert_eq!(
        server.app.store.count_records().await.expect("count"),
        10_200
    );
    server.stop().await;
}
