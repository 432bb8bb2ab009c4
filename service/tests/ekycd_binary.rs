//! The `ekycd` binary as an agency and a platform engineer use it: registry
//! import from files, and a served registry whose database, WAL and logs
//! hold no personal data.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_service::demo::strip_diacritics;

/// Runs `ekycd` in `dir` with cheap Argon2 parameters and debug logging,
/// isolated from any EKYCD_* variables of the caller. A test that keeps
/// its stores in PostgreSQL writes the URL to `dir/database-url`.
fn ekycd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ekycd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EKYCD_") {
            cmd.env_remove(k);
        }
    }
    if let Ok(url) = std::fs::read_to_string(dir.join("database-url")) {
        cmd.env("EKYCD_DATABASE_URL", url.trim());
    }
    cmd.current_dir(dir)
        .env("EKYCD_DATA_DIR", dir.join("data"))
        .env("EKYCD_ARGON2__PARAMS_ID", "100")
        .env("EKYCD_ARGON2__MEMORY_KIB", "64")
        .env("EKYCD_ARGON2__ITERATIONS", "1")
        // Log everything at trace, our crates and sqlx included (the
        // transport's frame-level trace is capped: it never sees values).
        .env("EKYCD_LOG__FILTER", "trace,h2=info,hyper=info,tower=info")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run ekycd");
    assert!(
        out.status.success(),
        "ekycd failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The named counts of an import report.
fn counts<const N: usize>(report: &serde_json::Value, keys: [&str; N]) -> [u64; N] {
    keys.map(|k| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing from {report}"))
    })
}

/// The JSON report line `ekycd import` prints first.
fn report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().expect("report line");
    serde_json::from_str(line).expect("json report")
}

#[test]
fn import_is_validated_idempotent_and_reports_progress() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    run_ok(ekycd(dir).args([
        "synth",
        "--count",
        "10000",
        "--seed",
        "5",
        "--out",
        "registry.csv",
    ]));

    let first = run_ok(ekycd(dir).args(["import", "registry.csv"]));
    let r = report(&first);
    assert_eq!(
        counts(&r, ["rows", "inserted", "rejected"]),
        [10000, 10000, 0]
    );
    assert_eq!(r["registry_version"], 1);
    let progress = String::from_utf8_lossy(&first.stderr);
    assert!(
        progress.contains("import: 10000/10000 records (") && progress.contains("records/s, eta"),
        "progress with rate and eta is shown: {progress}"
    );

    // Importing the same file again changes nothing.
    let again = report(&run_ok(ekycd(dir).args([
        "import",
        "registry.csv",
        "--quiet",
    ])));
    assert_eq!(
        counts(&again, ["inserted", "updated", "unchanged"]),
        [0, 0, 10000]
    );
    assert_eq!(
        again["registry_version"], 1,
        "a no-op import keeps the version"
    );

    // Bad rows are reported by line, field and rule; good rows still land.
    let c0 = ekyc_synth::citizen(5, 0);
    let c1 = ekyc_synth::citizen(5, 1);
    let renamed = ekyc_synth::Citizen {
        full_name: "Trần Thị Kim Oanh".into(),
        ..c0.clone()
    };
    let bad_id = ekyc_synth::Citizen {
        id_number: "12345".into(),
        ..c1.clone()
    };
    let bad_date = ekyc_synth::Citizen {
        date_of_birth: "1990-02-30".into(),
        ..c1.clone()
    };
    let bad_gender = ekyc_synth::Citizen {
        gender: "robot".into(),
        ..c1.clone()
    };
    // Lines 2-6: a changed record, three bad rows, a duplicate of line 2;
    // line 7: the wrong number of columns.
    let mut update = Vec::new();
    ekyc_synth::write_csv(
        &mut update,
        [renamed.clone(), bad_id, bad_date, bad_gender, renamed],
    )
    .expect("csv");
    update.extend_from_slice(b"\"001085000001\",\"only two\"\n");
    std::fs::write(dir.join("update.csv"), update).expect("write");
    let upd = report(&run_ok(ekycd(dir).args([
        "import",
        "update.csv",
        "--rejects",
        "rejects.csv",
        "--quiet",
    ])));
    assert_eq!(counts(&upd, ["updated", "inserted", "rejected"]), [1, 0, 5]);
    assert_eq!(upd["registry_version"], 2);
    let rejects = std::fs::read_to_string(dir.join("rejects.csv")).expect("reject report");
    let mut got: Vec<(String, String, String)> = csv::Reader::from_reader(rejects.as_bytes())
        .records()
        .map(|r| {
            let r = r.expect("csv");
            (r[0].to_string(), r[1].to_string(), r[2].to_string())
        })
        .collect();
    got.sort();
    let want = [
        ("3", "id_number", "invalid_length"),
        ("4", "date_of_birth", "impossible_date"),
        ("5", "gender", "unknown_value"),
        ("6", "id_number", "duplicate_id"),
        ("7", "row", "malformed_csv"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want, "{rejects}");
    for value in [
        &c1.full_name,
        &c1.id_number,
        &"1990-02-30".to_string(),
        &"robot".to_string(),
    ] {
        assert!(
            !rejects.contains(value.as_str()),
            "the reject report must not hold values"
        );
    }

    // JSON Lines, then a delete list.
    let extra: Vec<_> = ekyc_synth::citizens(77, 2).collect();
    let mut jsonl = Vec::new();
    ekyc_synth::write_jsonl(&mut jsonl, extra.clone()).expect("jsonl");
    std::fs::write(dir.join("extra.jsonl"), jsonl).expect("write");
    let add = report(&run_ok(ekycd(dir).args([
        "import",
        "extra.jsonl",
        "--quiet",
    ])));
    assert_eq!(add["inserted"], 2);
    assert_eq!(add["registry_version"], 3);

    let unknown = ekyc_synth::citizen(77, 50).id_number;
    std::fs::write(
        dir.join("delete.txt"),
        format!(
            "# removed by court order\n{}\n{}\nnot-an-id\n{unknown}\n",
            extra[0].id_number, extra[1].id_number
        ),
    )
    .expect("write");
    let del = report(&run_ok(ekycd(dir).args([
        "import",
        "--delete",
        "delete.txt",
        "--quiet",
    ])));
    assert_eq!(
        counts(&del, ["deleted", "delete_not_found", "rejected"]),
        [2, 1, 1]
    );
    assert_eq!(del["registry_version"], 4);
}

/// Starts `ekycd serve` on a free port, logging to `log`; returns the
/// process and its address once it listens.
fn serve(dir: &Path, log: &Path) -> (Child, String) {
    serve_with(ekycd(dir), log)
}

/// [`serve`] with a prepared `ekycd` command.
fn serve_with(mut cmd: Command, log: &Path) -> (Child, String) {
    let mut server = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn ekycd");
    let addr = wait_for_listen(&mut server);
    (server, addr)
}

/// Waits for the "ekycd listening on ADDR" line.
fn wait_for_listen(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ekycd listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("ekycd did not start listening")
}

#[test]
fn no_personal_data_in_the_database_its_wal_or_any_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // On a PostgreSQL run every store is there, and its dump is searched
    // (PostgreSQL's own WAL and log are the server's, outside the test's
    // reach; the dump holds every row they could).
    let database = ekyc_service::test_support::postgres_run()
        .then(|| runtime.block_on(ekyc_service::test_support::TestDatabase::create()));
    if let Some(db) = &database {
        std::fs::write(dir.join("database-url"), &db.url).expect("write url");
    }
    let citizens: Vec<_> = ekyc_synth::citizens(11, 300).collect();
    let export = dir.join("export");
    std::fs::create_dir(&export).expect("mkdir");
    let mut csv_bytes = Vec::new();
    ekyc_synth::write_csv(&mut csv_bytes, citizens.clone()).expect("csv");
    std::fs::write(export.join("registry.csv"), &csv_bytes).expect("write");

    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    let issued = run_ok(ekycd(dir).args(["issue-key", "--tenant", "privacy-bank"]));
    let stdout = String::from_utf8_lossy(&issued.stdout).to_string();
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("ekyc_"))
        .expect("key printed once")
        .to_string();
    logs.push(("issue-key stderr".into(), issued.stderr));

    let server_log = dir.join("server.log");
    let (mut server, addr) = serve(dir, &server_log);

    // Import while the server runs (no downtime): the server's open
    // connection keeps the import's writes in the WAL, which is searched.
    let import = run_ok(ekycd(dir).args([
        "import",
        "export/registry.csv",
        "--rejects",
        "export/rejects.csv",
    ]));
    assert_eq!(report(&import)["inserted"], 300);
    logs.push(("import stdout".into(), import.stdout));
    logs.push(("import stderr".into(), import.stderr));

    runtime.block_on(async {
        let client = Client::connect(
            &format!("http://{addr}"),
            Some(&key),
            Duration::from_secs(10),
        )
        .await
        .expect("connect");
        for (i, c) in citizens.iter().take(20).enumerate() {
            let name = if i % 2 == 0 {
                c.full_name.clone()
            } else {
                strip_diacritics(&c.full_name)
            };
            let req = pb::VerifyRequest {
                request_id: format!("privacy-{i}"),
                id_number: c.id_number.clone(),
                claims: Some(pb::Claims {
                    full_name: Some(name),
                    date_of_birth: Some(if i % 3 == 0 {
                        "1901-01-01".into()
                    } else {
                        c.date_of_birth.clone()
                    }),
                    place_of_residence: Some(c.place_of_residence.clone()),
                    ..Default::default()
                }),
                purpose_code: "ACCOUNT_OPENING".into(),
                consent_reference: format!("consent-{i}"),
            };
            client.verify(req.clone()).await.expect("verify");
            // The same data in a refused request must not leak either.
            let bad = pb::VerifyRequest {
                claims: Some(pb::Claims {
                    gender: Some(format!("{} ?", c.full_name)),
                    ..req.claims.clone().unwrap_or_default()
                }),
                ..req
            };
            assert!(client.verify_unchecked(bad).await.is_err());
        }
    });

    let data = dir.join("data");
    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    let snapshot = |stored: &mut Vec<(String, Vec<u8>)>, when: &str| {
        for name in [
            "ekyc.db",
            "ekyc.db-wal",
            "ekyc.db-shm",
            "billing.db",
            "billing.db-wal",
            "billing.db-shm",
        ] {
            if let Ok(bytes) = std::fs::read(data.join(name)) {
                stored.push((format!("{name} ({when})"), bytes));
            }
        }
        if let Some(db) = &database {
            let dump = Command::new("pg_dump")
                .args(["--dbname", &db.url])
                .output()
                .expect("run pg_dump");
            assert!(dump.status.success(), "pg_dump failed");
            stored.push((format!("pg_dump ({when})"), dump.stdout));
        }
    };
    snapshot(&mut stored, "while serving");
    if database.is_some() {
        let dump = stored
            .iter()
            .find(|(n, _)| n.starts_with("pg_dump"))
            .map(|(_, b)| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default();
        assert!(
            dump.contains("COPY public.citizen_records") && dump.contains("privacy-19"),
            "the dump searched holds the registry and the ledger"
        );
    } else {
        assert!(
            stored
                .iter()
                .any(|(n, b)| n.starts_with("ekyc.db-wal") && !b.is_empty()),
            "the WAL is searched while it holds data"
        );
        assert!(
            stored
                .iter()
                .any(|(n, b)| n.starts_with("billing.db") && !b.is_empty()),
            "the usage ledger is searched too"
        );
    }

    // Graceful shutdown on SIGTERM: exits cleanly within the grace period.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ekycd did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "ekycd exits 0 after SIGTERM: {status}");
    snapshot(&mut stored, "after shutdown");
    let log = std::fs::read(&server_log).expect("server log");
    assert!(
        String::from_utf8_lossy(&log).contains("verify answered"),
        "the server logged its calls"
    );
    logs.push(("server log".into(), log));
    stored.extend(logs);
    for entry in std::fs::read_dir(&export).expect("export dir") {
        let path: PathBuf = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("rejects"))
        {
            stored.push(("reject report".into(), std::fs::read(&path).expect("read")));
        }
    }

    let needles = ekyc_service::test_support::personal_values(&citizens);
    // The search itself works: the export holds every needle.
    let haystack_check = String::from_utf8_lossy(&csv_bytes).to_string();
    let in_export = needles
        .iter()
        .filter(|n| haystack_check.contains(n.as_str()))
        .count();
    assert!(
        in_export >= needles.len() * 3 / 5,
        "sanity: needles are found where they are"
    );

    for (what, bytes) in &stored {
        // Lossy decoding keeps every valid UTF-8 run intact, so a needle
        // stored anywhere survives it; std's substring search is fast.
        let text = String::from_utf8_lossy(bytes);
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{what} contains personal data (a loaded value of {} bytes)",
                needle.len()
            );
        }
    }
}

#[test]
fn no_secret_in_logs_errors_or_the_audit_trail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let boot = run_ok(ekycd(dir).args(["admin", "bootstrap"]));
    let admin_key = String::from_utf8_lossy(&boot.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("ekyc_"))
        .expect("admin key printed once")
        .to_string();
    let mut logs: Vec<(String, Vec<u8>)> = vec![("bootstrap stderr".into(), boot.stderr)];
    let again = ekycd(dir)
        .args(["admin", "bootstrap"])
        .output()
        .expect("run");
    assert!(!again.status.success(), "bootstrap refuses to run twice");
    logs.push(("second bootstrap stdout".into(), again.stdout));
    logs.push(("second bootstrap stderr".into(), again.stderr));

    let server_log = dir.join("server.log");
    let (mut server, addr) = serve(dir, &server_log);
    let endpoint = format!("http://{addr}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut secrets, messages, audit) = runtime.block_on(async {
        let admin = Client::connect(&endpoint, Some(&admin_key), Duration::from_secs(10))
            .await
            .expect("connect");
        let tenant = admin
            .admin()
            .create_tenant(admin.request(pb::CreateTenantRequest {
                tenant: Some(pb::Tenant {
                    name: "secretive-bank".into(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("create")
            .into_inner()
            .tenant
            .expect("tenant");
        let mut secrets = vec![admin_key.clone()];
        let mut messages = Vec::new();
        for role in [pb::Role::Verifier, pb::Role::Finance] {
            let issued = admin
                .admin()
                .issue_api_key(admin.request(pb::IssueApiKeyRequest {
                    tenant_id: tenant.tenant_id.clone(),
                    role: role as i32,
                    ttl_seconds: 0,
                    live: true,
                }))
                .await
                .expect("issue")
                .into_inner();
            secrets.push(issued.secret.clone());
            let key_id = issued.api_key.expect("key").key_id;
            let rotated = admin
                .admin()
                .rotate_api_key(admin.request(pb::RotateApiKeyRequest {
                    key_id,
                    grace_seconds: 0,
                }))
                .await
                .expect("rotate")
                .into_inner();
            secrets.push(rotated.secret.clone());
            // Old (expired), new, and a forged secret on a real key id.
            let forged = format!(
                "{}{}",
                &rotated.secret[..rotated.secret.len() - 64],
                "1".repeat(64)
            );
            for key in [&issued.secret, &rotated.secret, &forged] {
                let c = Client::connect(&endpoint, Some(key), Duration::from_secs(10))
                    .await
                    .expect("connect");
                let citizen = ekyc_synth::citizen(1, 0);
                let result = c
                    .verify_unchecked(pb::VerifyRequest {
                        request_id: "secret-test".into(),
                        id_number: citizen.id_number,
                        claims: Some(pb::Claims {
                            gender: Some("F".into()),
                            ..Default::default()
                        }),
                        purpose_code: "ACCOUNT_OPENING".into(),
                        consent_reference: "c".into(),
                    })
                    .await;
                if let Err(status) = result {
                    messages.push(format!("{status:?}"));
                }
            }
        }
        let audit = admin
            .admin()
            .list_audit_events(admin.request(pb::ListAuditEventsRequest::default()))
            .await
            .expect("audit")
            .into_inner();
        (secrets, messages, format!("{audit:?}"))
    });
    assert!(
        messages.len() >= 4,
        "expired and forged keys were refused: {messages:?}"
    );

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(server.wait().expect("wait").success());
    logs.push((
        "server log".into(),
        std::fs::read(&server_log).expect("log"),
    ));
    logs.push(("error messages".into(), messages.join("\n").into_bytes()));
    logs.push(("audit trail".into(), audit.into_bytes()));

    // The service's own secrets, as stored in their files.
    for f in ["pepper-v1.key", "signing.key"] {
        let hex = std::fs::read_to_string(dir.join("data/keys").join(f)).expect("key file");
        secrets.push(hex.trim().to_string());
    }
    let mut needles: Vec<String> = Vec::new();
    for s in &secrets {
        needles.push(s.clone());
        needles.push(s[s.len() - 64..].to_string());
    }
    for (what, bytes) in &logs {
        let text = String::from_utf8_lossy(bytes);
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{what} contains a secret");
        }
    }
}

/// A pepper rotation as docs/hashing.md gives it: the registry re-imported
/// under pepper version 2, then every row of version 1 purged; the purge
/// refuses the pepper ekycd derives with, and a served registry answers
/// under the new pepper afterwards.
#[test]
fn a_retired_pepper_s_records_are_purged_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    run_ok(ekycd(dir).args(["synth", "--count", "300", "--out", "registry.csv"]));
    let v1 = report(&run_ok(ekycd(dir).args([
        "import",
        "registry.csv",
        "--quiet",
    ])));
    assert_eq!(v1["inserted"], 300);
    let v2 = report(&run_ok(
        ekycd(dir)
            .env("EKYCD_PEPPER__VERSION", "2")
            .args(["import", "registry.csv", "--quiet"]),
    ));
    assert_eq!(
        v2["inserted"], 300,
        "under a new pepper every record is at a new locator"
    );

    let refused = ekycd(dir)
        .env("EKYCD_PEPPER__VERSION", "2")
        .args(["purge-pepper", "--pepper-version", "2"])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("purge only a retired version"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let purged = run_ok(ekycd(dir).env("EKYCD_PEPPER__VERSION", "2").args([
        "purge-pepper",
        "--pepper-version",
        "1",
    ]));
    let line: serde_json::Value = serde_json::from_slice(&purged.stdout).expect("json line");
    assert_eq!(line["removed"], 300, "{line}");
    let again = run_ok(ekycd(dir).env("EKYCD_PEPPER__VERSION", "2").args([
        "purge-pepper",
        "--pepper-version",
        "1",
    ]));
    let line: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json line");
    assert_eq!(line["removed"], 0, "nothing of pepper 1 is left");

    // Served under pepper 2, the registry still answers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issued = run_ok(ekycd(dir).env("EKYCD_PEPPER__VERSION", "2").args([
        "issue-key",
        "--tenant",
        "rotation-bank",
    ]));
    let key = String::from_utf8_lossy(&issued.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("ekyc_"))
        .expect("key")
        .to_string();
    let mut serve_cmd = ekycd(dir);
    serve_cmd.env("EKYCD_PEPPER__VERSION", "2");
    let (mut server, addr) = serve_with(serve_cmd, &dir.join("server.log"));
    let citizen = ekyc_synth::citizen(42, 3);
    runtime.block_on(async {
        let client = Client::connect(
            &format!("http://{addr}"),
            Some(&key),
            Duration::from_secs(10),
        )
        .await
        .expect("connect");
        let answer = client
            .verify(pb::VerifyRequest {
                request_id: "rotated-1".into(),
                id_number: citizen.id_number.clone(),
                claims: Some(pb::Claims {
                    date_of_birth: Some(citizen.date_of_birth.clone()),
                    ..Default::default()
                }),
                purpose_code: "ACCOUNT_OPENING".into(),
                consent_reference: "consent-1".into(),
            })
            .await
            .expect("verify");
        assert_eq!(answer.response.decision, pb::Decision::Yes as i32);
    });
    let _ = server.kill();
    let _ = server.wait();
}

/// What a Kubernetes pod runs besides `serve`: the health-only listener
/// its probes call, the `migrate` init step, and the `pause` preStop hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_migrations_and_the_prestop_pause() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let dir = tempfile::tempdir().expect("dir");
    let prepared = ekyc_service::test_support::prepare_data_dir(
        dir.path(),
        10,
        &[("probe-bank", ekyc_service::store::TenantPolicy::default())],
    )
    .await;
    let mut server = prepared.start_ekycd(
        env!("CARGO_BIN_EXE_ekycd"),
        dir.path(),
        &[("EKYCD_HEALTH_LISTEN", "127.0.0.1:0")],
    );
    let probe = server.health.clone().expect("health listener address");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{probe}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the health port");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "liveness", "ekyc.v1.VerificationService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    // Health only: the API is not on the probe port.
    let mut api = pb::verification_service_client::VerificationServiceClient::new(channel);
    let refused = api
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .expect_err("no API on the probe port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    let status = server.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    // `migrate` needs no secrets: a fresh directory gets its databases and
    // no key files.
    let fresh = tempfile::tempdir().expect("dir");
    let out = run_ok(ekycd(fresh.path()).arg("migrate"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated"));
    assert!(
        !fresh.path().join("data").join("keys").exists(),
        "no secret generated"
    );
    // Run again: nothing to do, still fine.
    run_ok(ekycd(fresh.path()).arg("migrate"));

    // `pause` reads nothing, not even a broken configuration.
    let started = Instant::now();
    run_ok(
        ekycd(fresh.path())
            .env("EKYCD_LISTN", "oops")
            .args(["pause", "--secs", "1"]),
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let too_long = ekycd(fresh.path())
        .args(["pause", "--secs", "301"])
        .output()
        .expect("run");
    assert!(!too_long.status.success(), "pause is bounded");
}
