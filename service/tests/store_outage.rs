//! PostgreSQL failures: the server stopping mid-run (a private PostgreSQL
//! on a free port, never the shared one) fails calls closed with
//! `UNAVAILABLE`/`STORE_UNAVAILABLE`, loses nothing answered, and heals by
//! itself; a pool held by slow queries sheds calls instead of queueing them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_service::config::DatabaseConfig;
use ekyc_service::test_support::{
    PrivatePostgres, TestDatabase, TestOptions, TestServer, reason, unique_request_id,
};
use tonic::Code;
use tonic_types::StatusExt;

fn ask(index: u64, request_id: &str) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(42, index);
    pb::VerifyRequest {
        request_id: request_id.into(),
        id_number: c.id_number,
        claims: Some(pb::Claims {
            date_of_birth: Some(c.date_of_birth),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    }
}

async fn client(server: &TestServer) -> Arc<Client> {
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
async fn a_postgres_outage_fails_closed_loses_nothing_and_heals_by_itself() {
    let mut pg = PrivatePostgres::start();
    let server = TestServer::start(TestOptions {
        database_url: Some(pg.url()),
        database: DatabaseConfig {
            acquire_timeout_ms: 500,
            ..DatabaseConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let c = client(&server).await;
    let mut answered = Vec::new();
    for i in 0..5 {
        let id = unique_request_id(&format!("before-{i}"));
        c.verify(ask(i, &id)).await.expect("answered before");
        answered.push(id);
    }

    pg.kill();
    for i in 0..3 {
        let s = c
            .verify_unchecked(ask(10 + i, &unique_request_id("during")))
            .await
            .expect_err("the database is down");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Unavailable, "STORE_UNAVAILABLE"),
            "{s:?}"
        );
        assert!(
            s.get_error_details().retry_info().is_some(),
            "a retry is suggested"
        );
    }

    pg.restart();
    // No restart of ekycd, no operator: the pool reconnects on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let healed = loop {
        match c.verify(ask(20, &unique_request_id("after"))).await {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(Instant::now() < deadline, "did not heal: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(healed.response.decision, pb::Decision::Yes as i32);

    let tenant = server.tenant_id("test-bank").await;
    for id in &answered {
        assert!(
            server
                .app
                .ledger
                .find(&tenant, id)
                .await
                .expect("ledger")
                .is_some(),
            "{id} was answered before the outage and must be billed"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_held_by_slow_queries_sheds_calls_instead_of_queueing_them() {
    use sqlx::Connection;
    let db = TestDatabase::create().await;
    let database = DatabaseConfig {
        max_connections: 4,
        acquire_timeout_ms: 300,
        statement_timeout_ms: 1_000,
    };
    let server = TestServer::start(TestOptions {
        database_url: Some(db.url.clone()),
        database: database.clone(),
        ..TestOptions::default()
    })
    .await;
    let c = client(&server).await;
    c.verify(ask(1, &unique_request_id("warm")))
        .await
        .expect("answered");

    // Another session holds the credential generation, which every
    // authentication reads (cached key or not): every call blocks.
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE credential_generation IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("lock");

    let started = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                c.verify_unchecked(ask(i, &unique_request_id("blocked")))
                    .await
            })
        })
        .collect();
    for call in calls {
        let s = call.await.expect("call").expect_err("shed");
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Unavailable, "STORE_UNAVAILABLE"),
            "{s:?}"
        );
    }
    // Sixteen calls on four connections: four are cancelled by the
    // statement timeout (1 s), the others give up waiting for a connection
    // (0.3 s). Queued, they would take four rounds of the statement timeout
    // (4 s) or, unbounded, until the lock is released.
    let bound = Duration::from_millis(3 * database.statement_timeout_ms);
    assert!(
        started.elapsed() < bound,
        "shedding took {:?}, beyond {bound:?}",
        started.elapsed()
    );

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release");
    c.verify(ask(2, &unique_request_id("released")))
        .await
        .expect("answered once the lock is gone");
    server.stop().await;
}
