//! The Verify path over real gRPC: answers, bad input, credentials, the
//! bounded hashing pool, signing keys, health and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ekyc_client::{Client, ClientError, v1 as pb};
use ekyc_service::demo::strip_diacritics;
use ekyc_service::test_support::{TestOptions, TestServer};
use tonic::Code;
use tonic_types::StatusExt;

fn claims_of(c: &ekyc_synth::Citizen) -> pb::Claims {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    pb::Claims {
        full_name: opt(&c.full_name),
        date_of_birth: opt(&c.date_of_birth),
        gender: opt(&c.gender),
        nationality: opt(&c.nationality),
        place_of_origin: opt(&c.place_of_origin),
        place_of_residence: opt(&c.place_of_residence),
        id_issue_date: opt(&c.id_issue_date),
        id_expiry_date: opt(&c.id_expiry_date),
        phone_number: opt(&c.phone_number),
    }
}

fn request(id: &str, claims: pb::Claims) -> pb::VerifyRequest {
    pb::VerifyRequest {
        request_id: ekyc_service::test_support::unique_request_id(&format!("req-{id}")),
        id_number: id.to_string(),
        claims: Some(claims),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-123".into(),
    }
}

fn results(r: &pb::VerifyResponse) -> Vec<(String, &'static str)> {
    r.results
        .iter()
        .map(|f| {
            (
                ekyc_client::field_name(f.field),
                ekyc_client::result_name(f.result),
            )
        })
        .collect()
}

async fn client(server: &TestServer, key: Option<&str>) -> Client {
    Client::connect(&server.endpoint(), key, Duration::from_secs(10))
        .await
        .expect("connect")
}

fn evaluations(server: &TestServer) -> u64 {
    server.app.pool.stats().evaluations.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_folded_mismatch_and_unknown() {
    let server = TestServer::start(TestOptions::default()).await;
    let c = client(&server, Some(&server.api_key)).await;
    let citizen = ekyc_synth::citizen(42, 3);
    let before = evaluations(&server);

    // Every field as the registry holds it.
    let all = c
        .verify(request(&citizen.id_number, claims_of(&citizen)))
        .await
        .expect("verify");
    assert_eq!(all.response.decision, pb::Decision::Yes as i32);
    assert!(results(&all.response).iter().all(|(_, r)| *r == "MATCH"));
    assert_eq!(all.response.registry_version, 1);

    // The same name without diacritics.
    let folded = pb::Claims {
        full_name: Some(strip_diacritics(&citizen.full_name)),
        date_of_birth: Some(citizen.date_of_birth.clone()),
        ..Default::default()
    };
    let answer = c
        .verify(request(&citizen.id_number, folded))
        .await
        .expect("verify");
    assert_eq!(
        results(&answer.response),
        vec![
            ("full_name".to_string(), "MATCH_FOLDED"),
            ("date_of_birth".to_string(), "MATCH")
        ]
    );

    // A wrong birth date.
    let wrong = pb::Claims {
        full_name: Some(citizen.full_name.clone()),
        date_of_birth: Some("1901-01-01".into()),
        ..Default::default()
    };
    let answer = c
        .verify(request(&citizen.id_number, wrong.clone()))
        .await
        .expect("verify");
    assert_eq!(answer.response.decision, pb::Decision::No as i32);
    assert_eq!(
        results(&answer.response),
        vec![
            ("full_name".to_string(), "MATCH"),
            ("date_of_birth".to_string(), "NO_MATCH")
        ]
    );

    // An ID not in the registry looks like a subject whose fields all
    // differ, including fields the registry lacks (phone for some).
    let unknown = ekyc_synth::citizen(42, 5000);
    let stranger = pb::Claims {
        full_name: Some("Lê Thị Hồng".into()),
        date_of_birth: Some("1901-01-01".into()),
        phone_number: Some("+84900000001".into()),
        ..Default::default()
    };
    let u = c
        .verify(request(&unknown.id_number, stranger.clone()))
        .await
        .expect("verify unknown");
    let k = c
        .verify(request(&citizen.id_number, stranger))
        .await
        .expect("verify known");
    assert_eq!(results(&u.response), results(&k.response));
    assert!(results(&u.response).iter().all(|(_, r)| *r == "NO_MATCH"));
    assert_eq!(u.response.decision, pb::Decision::No as i32);
    assert_eq!(
        u.response.subject_status,
        pb::SubjectStatus::Unspecified as i32
    );

    // One Argon2 evaluation per answered call, subject known or not.
    assert_eq!(evaluations(&server) - before, 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_field_violations_and_costs_no_hashing() {
    let server = TestServer::start(TestOptions::default()).await;
    let c = client(&server, Some(&server.api_key)).await;
    let citizen = ekyc_synth::citizen(42, 1);
    let id = citizen.id_number.clone();
    let name = |n: &str| pb::Claims {
        full_name: Some(n.into()),
        ..Default::default()
    };
    let long_name = "Nguyễn ".repeat(60);
    let cases: Vec<(&str, pb::VerifyRequest, &str, &str)> = vec![
        (
            "empty request",
            pb::VerifyRequest::default(),
            "id_number",
            "EMPTY",
        ),
        (
            "only an id",
            request(&id, pb::Claims::default()),
            "claims",
            "REQUIRED",
        ),
        (
            "malformed id",
            request("12345", name("An")),
            "id_number",
            "INVALID_LENGTH",
        ),
        (
            "letters in id",
            request("07908500123A", name("An")),
            "id_number",
            "INVALID_FORMAT",
        ),
        (
            "unknown province",
            request("003085001234", name("An")),
            "id_number",
            "UNKNOWN_PROVINCE_CODE",
        ),
        (
            "impossible date",
            request(
                &id,
                pb::Claims {
                    date_of_birth: Some("1990-02-30".into()),
                    ..Default::default()
                },
            ),
            "claims.date_of_birth",
            "IMPOSSIBLE_DATE",
        ),
        (
            "unknown gender",
            request(
                &id,
                pb::Claims {
                    gender: Some("robot".into()),
                    ..Default::default()
                },
            ),
            "claims.gender",
            "UNKNOWN_VALUE",
        ),
        (
            "oversized name",
            request(&id, name(&long_name)),
            "claims.full_name",
            "TOO_LONG",
        ),
        (
            "control character",
            request(&id, name(&format!("{}\u{7}", citizen.full_name))),
            "claims.full_name",
            "CONTROL_CHARACTER",
        ),
        (
            "missing request id",
            pb::VerifyRequest {
                request_id: String::new(),
                ..request(&id, name("An"))
            },
            "request_id",
            "REQUIRED",
        ),
        (
            "bad purpose",
            pb::VerifyRequest {
                purpose_code: "open account".into(),
                ..request(&id, name("An"))
            },
            "purpose_code",
            "INVALID_FORMAT",
        ),
    ];
    let before = evaluations(&server);
    for (what, req, field, rule) in cases {
        let raw_values: Vec<String> = std::iter::once(req.id_number.clone())
            .chain(
                req.claims
                    .iter()
                    .flat_map(|c| c.present().into_iter().map(|(_, v)| v.to_string())),
            )
            .filter(|v| v.len() > 3)
            .collect();
        let status = c.verify_unchecked(req).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .expect("bad request detail")
            .field_violations;
        assert!(
            violations
                .iter()
                .any(|v| v.field == field && v.reason == rule),
            "{what}: expected {field}/{rule}, got {violations:?}"
        );
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("INVALID_REQUEST")
        );
        for v in &raw_values {
            assert!(
                !status.message().contains(v.as_str()),
                "{what}: message leaks a value"
            );
            for fv in violations {
                assert!(
                    !fv.description.contains(v.as_str()),
                    "{what}: violation leaks a value"
                );
            }
        }
    }
    assert_eq!(evaluations(&server), before, "bad input must not be hashed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_checked() {
    let server = TestServer::start(TestOptions::default()).await;
    let citizen = ekyc_synth::citizen(42, 0);
    let req = request(&citizen.id_number, claims_of(&citizen));
    let key_id = &server.api_key["ekyc_test_".len().."ekyc_test_".len() + 16];
    let wrong_secret = format!("ekyc_test_{key_id}_{}", "0".repeat(64));
    let unknown_id = format!("ekyc_test_{}_{}", "f".repeat(16), "0".repeat(64));
    let before = evaluations(&server);
    for (key, reason) in [
        (None, "API_KEY_MISSING"),
        (Some("not-a-key"), "API_KEY_MALFORMED"),
        (Some(wrong_secret.as_str()), "API_KEY_INVALID"),
        (Some(unknown_id.as_str()), "API_KEY_INVALID"),
    ] {
        let c = client(&server, key).await;
        let status = c.verify_unchecked(req.clone()).await.expect_err(reason);
        assert_eq!(status.code(), Code::Unauthenticated, "{reason}");
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .as_deref(),
            Some(reason)
        );
        assert!(!status.message().contains(&"0".repeat(64)));
    }
    assert_eq!(
        evaluations(&server),
        before,
        "refused calls must not be hashed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hashing_pool_bounds_concurrent_argon2() {
    let server = TestServer::start(TestOptions {
        // Costly enough (a few ms) that calls overlap inside the pool.
        memory_kib: 4096,
        iterations: 2,
        pool_threads: 3,
        queue_capacity: 64,
        ..TestOptions::default()
    })
    .await;
    let c = Arc::new(client(&server, Some(&server.api_key)).await);
    let before = evaluations(&server);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let citizen = ekyc_synth::citizen(42, i % 50);
            c.verify(request(&citizen.id_number, claims_of(&citizen)))
                .await
                .map(|a| a.response.decision)
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("join").expect("verify"),
            pb::Decision::Yes as i32
        );
    }
    let stats = server.app.pool.stats();
    assert_eq!(stats.evaluations.load(Ordering::SeqCst) - before, 50);
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} evaluations ran at once with a pool of 3");
    assert!(max >= 2, "calls should have overlapped (max {max})");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_with_retry_info() {
    let server = TestServer::start(TestOptions {
        citizens: 5,
        memory_kib: 16 * 1024,
        iterations: 4,
        pool_threads: 1,
        queue_capacity: 1,
        ..TestOptions::default()
    })
    .await;
    let c = Arc::new(client(&server, Some(&server.api_key)).await);
    let shed_before = server.app.pool.stats().shed.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let citizen = ekyc_synth::citizen(42, 0);
            let started = Instant::now();
            let r = c
                .verify(request(&citizen.id_number, claims_of(&citizen)))
                .await;
            (r, started.elapsed())
        }));
    }
    let mut shed = 0;
    for t in tasks {
        match t.await.expect("join") {
            (Ok(_), _) => {}
            (Err(ClientError::Status(s)), took) => {
                assert_eq!(s.code(), Code::ResourceExhausted);
                assert!(s.get_error_details().retry_info().is_some());
                assert!(s.metadata().get("grpc-retry-pushback-ms").is_some());
                assert!(
                    took < Duration::from_secs(2),
                    "shedding must not wait ({took:?})"
                );
                shed += 1;
            }
            (Err(e), _) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        shed >= 1,
        "a pool of 1 with a queue of 1 must shed some of 12 calls"
    );
    assert_eq!(
        server.app.pool.stats().shed.load(Ordering::SeqCst) - shed_before,
        shed
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_health_and_graceful_shutdown() {
    let server = TestServer::start(TestOptions::default()).await;
    let c = client(&server, None).await;
    let all = c.signing_keys().await.expect("keys need no credential");
    // One key signs answers, another the decision log's checkpoints.
    let keys: Vec<_> = all.iter().filter(|k| k.purpose == "attestation").collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|k| k.purpose == "checkpoint" && k.key_id == server.app.checkpoint_key.key_id())
    );
    assert_eq!(keys[0].key_id, server.app.signer.key_id());
    assert_eq!(keys[0].public_key, server.app.signer.public_key().to_vec());
    assert!(keys[0].not_after.is_none(), "the current key has no end");

    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ekyc.v1.VerificationService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Shutdown completes (bounded drain) and the port stops answering.
    let endpoint = server.endpoint();
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown within the grace period");
    assert!(
        Client::connect(&endpoint, None, Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_dates_and_an_expiry_before_issue_are_out_of_range_and_cost_nothing() {
    let server = TestServer::start(TestOptions::default()).await;
    let c = client(&server, Some(&server.api_key)).await;
    let citizen = ekyc_synth::citizen(42, 2);
    let tomorrow_everywhere = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(14 + 24))
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let utc_now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let next_year = (utc_now.year() + 1).to_string();
    let before = evaluations(&server);
    let tenant = server.tenant_id("test-bank").await;
    let billed = || async {
        let events = server.app.ledger.events(&tenant, 0, i64::MAX).await;
        events.expect("ledger").len()
    };
    let billed_before = billed().await;
    let dates = |dob: Option<&str>, issued: Option<&str>, expires: Option<&str>| pb::Claims {
        full_name: Some(citizen.full_name.clone()),
        date_of_birth: dob.map(str::to_string),
        id_issue_date: issued.map(str::to_string),
        id_expiry_date: expires.map(str::to_string),
        ..Default::default()
    };
    for (what, claims, expected) in [
        (
            "born tomorrow everywhere",
            dates(Some(&tomorrow_everywhere), None, None),
            vec![("claims.date_of_birth", "IN_THE_FUTURE")],
        ),
        (
            "born next year",
            dates(Some(&next_year), None, None),
            vec![("claims.date_of_birth", "IN_THE_FUTURE")],
        ),
        (
            "card issued in the future",
            dates(None, Some(&tomorrow_everywhere), None),
            vec![("claims.id_issue_date", "IN_THE_FUTURE")],
        ),
        (
            "expiry before issue",
            dates(None, Some("2021-05-10"), Some("2021-05-09")),
            vec![("claims.id_expiry_date", "BEFORE_ISSUE_DATE")],
        ),
        (
            "all at once",
            dates(Some(&next_year), Some(&next_year), Some("2020")),
            vec![
                ("claims.date_of_birth", "IN_THE_FUTURE"),
                ("claims.id_issue_date", "IN_THE_FUTURE"),
                ("claims.id_expiry_date", "BEFORE_ISSUE_DATE"),
            ],
        ),
    ] {
        let s = c
            .verify_unchecked(request(&citizen.id_number, claims))
            .await
            .expect_err(what);
        assert_eq!(s.code(), Code::OutOfRange, "{what}: {s:?}");
        let details = s.get_error_details();
        assert_eq!(
            details.error_info().map(|i| i.reason.clone()).as_deref(),
            Some("VALUE_OUT_OF_RANGE")
        );
        let got: Vec<(String, String)> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|v| (v.field.clone(), v.reason.clone()))
            .collect();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(f, r)| (f.to_string(), r.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
        assert!(!s.message().contains(&next_year), "no value in the message");
    }
    // Today's date anywhere, and a valid card, are answered.
    let today_here = utc_now.date().to_string();
    c.verify_unchecked(request(
        &citizen.id_number,
        dates(Some(&today_here), Some("2021-05-10"), Some("2041-05-10")),
    ))
    .await
    .expect("today is not the future");
    // The refusals cost no hashing, no usage, no guard attempt.
    assert_eq!(evaluations(&server) - before, 1);
    assert_eq!(billed().await - billed_before, 1);
    assert_eq!(server.app.counters.guard_counts(&tenant).failures, 1);
    server.stop().await;
}
