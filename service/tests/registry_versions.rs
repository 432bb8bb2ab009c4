//! Registry updates without downtime: a Verify load runs through an import
//! of 10,000 records, and through a pepper rotation (the registry
//! re-imported under a new pepper), each of which also changes records it
//! asks about. Every answer names the old or the new version and is right
//! for the version it names; once the import has switched, only the new
//! version answers; and no call fails. Runs on SQLite, and on PostgreSQL in
//! the suite's PostgreSQL pass.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::App;
use ekyc_service::auth::Credential;
use ekyc_service::clock::now_ms;
use ekyc_service::config::HeldPepper;
use ekyc_service::demo::rows_from_citizens;
use ekyc_service::error::Reason;
use ekyc_service::import::{ProgressStyle, import_rows};
use ekyc_service::store::StoreError;
use ekyc_service::tenants::Actor;
use ekyc_service::test_support::{TestOptions, TestServer, unique_request_id};
use ekyc_service::verify::VerifyService;

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

/// The subjects a load asks about (full birth dates, so a changed day is
/// a changed answer), and the same subjects with their birth day changed.
fn asked_and_changed() -> (Vec<ekyc_synth::Citizen>, Vec<ekyc_synth::Citizen>) {
    let asked: Vec<ekyc_synth::Citizen> = ekyc_synth::citizens(42, 200)
        .filter(|c| c.date_of_birth.len() == 10)
        .take(CHANGED as usize)
        .collect();
    assert_eq!(asked.len(), CHANGED as usize, "enough full dates");
    let mut changed = asked.clone();
    for c in &mut changed {
        c.date_of_birth = other_day(&c.date_of_birth);
    }
    (asked, changed)
}

/// (registry version, answered yes, started after the switch)
type Seen = (u64, bool, bool);

/// Starts [`WORKERS`] callers asking about `asked` with their old birth
/// dates until each has asked about each of its subjects once after
/// `switched` is set. Every call must be answered.
fn start_load(
    client: &Arc<Client>,
    asked: &[ekyc_synth::Citizen],
    switched: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Seen>>> {
    let mut load = Vec::new();
    for worker in 0..WORKERS {
        let (client, switched, asked) = (Arc::clone(client), Arc::clone(switched), asked.to_vec());
        load.push(tokio::spawn(async move {
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
    load
}

/// Checks a load's answers against the versions `before` and `after`: only
/// those two answer, both do, each answer is right for its version (the
/// old birth dates match the old version only), and after the switch only
/// the new version answers.
async fn check_load(load: Vec<tokio::task::JoinHandle<Vec<Seen>>>, before: u64, after: u64) {
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
}

async fn connect(server: &TestServer) -> Arc<Client> {
    Arc::new(
        Client::connect(
            &server.endpoint(),
            Some(&server.api_key),
            Duration::from_secs(30),
        )
        .await
        .expect("connect"),
    )
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
    let (asked, changed) = asked_and_changed();
    let new_rows = rows_from_citizens(ekyc_synth::citizens(7, 10_000).chain(changed));
    let client = connect(&server).await;
    let switched = Arc::new(AtomicBool::new(false));
    let load = start_load(&client, &asked, &switched);

    let (report, rejects) = import_rows(
        &server.app.store,
        Arc::clone(&server.app.pool),
        new_rows,
        Vec::new(),
        Vec::new(),
        ProgressStyle::Quiet,
        &Actor::local("test"),
    )
    .await
    .expect("import");
    switched.store(true, Ordering::Release);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!((report.inserted, report.updated), (10_000, CHANGED));
    let after = report.registry_version;
    assert_eq!(after, before + 1);
    check_load(load, before, after).await;
    assert_eq!(
        server.app.store.count_records().await.expect("count"),
        10_200
    );
    server.stop().await;
}

/// A pepper rotation as docs/hashing.md gives it: a replica holding the
/// old pepper (version 1, what its registry was built with) and the new
/// one (version 2) answers a load while the operator's replica (pepper 2,
/// holding 1) re-imports the whole registry under pepper 2. The switch
/// moves the serving replica to pepper 2 at once; then the old pepper's
/// rows are purged and counted, and a replica without the new pepper fails
/// closed instead of answering from nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_load_through_a_pepper_rotation_moves_at_the_switch() {
    let server = TestServer::start(TestOptions {
        citizens: 200,
        queue_capacity: 256,
        also_held_peppers: vec![2],
        ..TestOptions::default()
    })
    .await;
    let before = server.import.registry_version;
    assert_eq!(server.app.keyring.serving(), 1);
    let mut operator_config = server.config.clone();
    operator_config.pepper.version = 2;
    operator_config.pepper.file = None;
    operator_config.pepper.also_held = vec![HeldPepper {
        version: 1,
        file: server.config.pepper_file(),
    }];
    let operator = App::open(&operator_config).await.expect("operator replica");

    // Nothing purges the pepper the registry is built with.
    let refused = operator
        .store
        .purge_pepper(1, now_ms(), &|_| {
            Actor::local("test").entry("purge_pepper", "", "", String::new(), String::new())
        })
        .await
        .expect_err("pepper 1 serves");
    assert!(matches!(refused, StoreError::PepperInUse(1)), "{refused}");

    // The whole registry again, under pepper 2, with some birth days changed.
    let (asked, changed) = asked_and_changed();
    let changed_ids: HashSet<String> = changed.iter().map(|c| c.id_number.clone()).collect();
    let rows = rows_from_citizens(
        ekyc_synth::citizens(42, 200)
            .filter(|c| !changed_ids.contains(&c.id_number))
            .chain(changed),
    );
    let client = connect(&server).await;
    let switched = Arc::new(AtomicBool::new(false));
    let load = start_load(&client, &asked, &switched);
    // Let the load run on the old pepper before the switch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (report, rejects) = import_rows(
        &operator.store,
        Arc::clone(&operator.pool),
        rows,
        Vec::new(),
        Vec::new(),
        ProgressStyle::Quiet,
        &Actor::local("test"),
    )
    .await
    .expect("rotation import");
    switched.store(true, Ordering::Release);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(
        report.inserted, 200,
        "under a new pepper every record is at a new locator"
    );
    let after = report.registry_version;
    assert_eq!(after, before + 1);
    check_load(load, before, after).await;
    assert_eq!(server.app.keyring.serving(), 2, "the serving replica moved");
    assert_eq!(
        server.app.store.count_records().await.expect("count"),
        200,
        "the new version holds only the new pepper's rows"
    );

    // An import from a replica still deriving with pepper 1 is refused: it
    // would move lookups back.
    let behind = import_rows(
        &server.app.store,
        Arc::clone(&server.app.pool),
        rows_from_citizens(ekyc_synth::citizens(9, 5)),
        Vec::new(),
        Vec::new(),
        ProgressStyle::Quiet,
        &Actor::local("test"),
    )
    .await
    .expect_err("pepper 1 is behind");
    assert!(
        behind
            .to_string()
            .contains("older than the registry's current pepper version 2"),
        "{behind}"
    );

    // The old pepper's rows go, counted; the registry still answers.
    let removed = operator
        .store
        .purge_pepper(1, now_ms(), &|n| {
            Actor::local("test").entry(
                "purge_pepper",
                "",
                "pepper_version",
                "1".into(),
                n.to_string(),
            )
        })
        .await
        .expect("purge");
    assert_eq!(removed, 200);
    let c = &asked[0];
    let request = |id: &str| pb::VerifyRequest {
        request_id: unique_request_id(id),
        id_number: c.id_number.clone(),
        claims: Some(pb::Claims {
            date_of_birth: Some(other_day(&c.date_of_birth)),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    };
    let answer = client.verify(request("after")).await.expect("verify");
    assert_eq!(answer.response.decision, pb::Decision::Yes as i32);
    assert_eq!(answer.response.registry_version, after);

    // A replica that never got the new pepper answers nothing.
    let mut stale_config = server.config.clone();
    stale_config.pepper.also_held.clear();
    let stale = App::open(&stale_config).await.expect("stale replica");
    let refusal = VerifyService::new(&stale)
        .verify(
            &Credential::api_key(Some(&server.api_key)),
            &request("stale"),
            None,
        )
        .await
        .expect_err("pepper 2 is not held");
    assert_eq!(refusal.reason(), Reason::PepperNotHeld);
    stale.close().await;
    operator.close().await;
    server.stop().await;
}
