//! `ekyc registry import` over gRPC, as the agency's registry operator runs
//! it from its own machine: it gives the same store and the same reject
//! report as `ekycd import` of the same file on the server, and a key of
//! any other role or tenant is refused before a record is read.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use ekyc_service::demo::rows_from_citizens;
use ekyc_service::import::{self, Format, ProgressStyle};
use ekyc_service::store::Role;
use ekyc_service::tenants::{self, Actor};
use ekyc_service::test_support::{TestOptions, TestServer};
use tokio::process::Command;

async fn ekyc(endpoint: &str, key: &str, dir: &Path, args: &[&str]) -> Output {
    let key_file = dir.join(format!("key-{}", key.len()));
    std::fs::write(&key_file, key).expect("key file");
    Command::new(env!("CARGO_BIN_EXE_ekyc"))
        .env_remove("EKYC_API_KEY")
        .env_remove("EKYC_ENDPOINT")
        .current_dir(dir)
        .args(["--endpoint", endpoint, "--api-key-file"])
        .arg(&key_file)
        .args(args)
        .output()
        .await
        .expect("run ekyc")
}

/// An export with good rows, two bad ones and a malformed line, and a
/// delete list.
fn write_files(dir: &Path) {
    let mut csv = Vec::new();
    ekyc_synth::write_csv(&mut csv, ekyc_synth::citizens(9, 120)).expect("csv");
    let mut text = String::from_utf8(csv).expect("utf-8");
    let columns = text.lines().next().expect("header").split(',').count();
    // A row with a bad ID, one with no field besides the ID, and one with
    // too few columns.
    let pad = ",".repeat(columns - 2);
    text.push_str(&format!("12345,Nguyễn Văn A{pad}\n"));
    text.push_str(&format!(
        "{}{}\n",
        ekyc_synth::citizen(3, 1).id_number,
        ",".repeat(columns - 1)
    ));
    text.push_str("001099012345\n");
    std::fs::write(dir.join("registry.csv"), text).expect("export");
    // IDs the registry does not hold, and one that is no ID.
    let deletes = format!(
        "# retired records\n{}\n{}\nnot-an-id\n",
        ekyc_synth::citizen(78, 1).id_number,
        ekyc_synth::citizen(77, 5).id_number
    );
    std::fs::write(dir.join("deletes.txt"), deletes).expect("deletes");
}

/// A server with an empty registry, an agency with a registry operator,
/// and a bank verifier.
async fn server() -> (TestServer, String, String) {
    let server = TestServer::start(TestOptions {
        citizens: 0,
        ..TestOptions::default()
    })
    .await;
    let (agency, _) = tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
        .await
        .expect("bootstrap");
    let operator = tenants::issue_key(
        &server.app.store,
        &agency,
        Role::RegistryOperator,
        true,
        None,
        &Actor::local("test"),
    )
    .await
    .expect("operator key");
    let verifier = server.api_key.clone();
    (server, operator.token, verifier)
}

/// `ekycd import`'s path on the server's own store: the report and the
/// reject report.
async fn import_on_server(server: &TestServer, dir: &Path) -> (serde_json::Value, String) {
    let (rows, expected_rows) =
        import::open_rows(&dir.join("registry.csv"), Format::Csv).expect("read");
    let deletes = import::read_delete_list(&dir.join("deletes.txt")).expect("deletes");
    let input = import::Input {
        rows,
        expected_rows,
        deletes,
        rejects: Vec::new(),
    };
    let (report, rejects) = import::import_version(
        &server.app.store,
        Arc::clone(&server.app.pool),
        input,
        ProgressStyle::Quiet,
        &Actor::local("import"),
        import::Switch::AtEnd,
    )
    .await
    .expect("import");
    let path = dir.join("server.rejects.csv");
    import::write_rejects(&path, &rejects).expect("rejects");
    (
        serde_json::to_value(&report).expect("json"),
        std::fs::read_to_string(path).expect("read rejects"),
    )
}

async fn import_over_grpc(
    server: &TestServer,
    key: &str,
    dir: &Path,
) -> (serde_json::Value, String) {
    let out = ekyc(
        &server.endpoint(),
        key,
        dir,
        &[
            "registry",
            "import",
            "registry.csv",
            "--delete",
            "deletes.txt",
            "--rejects",
            "grpc.rejects.csv",
            "--quiet",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("report")
        .to_string();
    (
        serde_json::from_str(&line).expect("json report"),
        std::fs::read_to_string(dir.join("grpc.rejects.csv")).expect("rejects"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_server_imports_give_the_same_store_and_report() {
    // Over gRPC first, then `ekycd import`'s path finds nothing to change;
    // on a second server the other way round. Same reports both ways.
    let dir = tempfile::tempdir().expect("dir");
    write_files(dir.path());
    let (first, operator, _) = server().await;
    let (grpc, grpc_rejects) = import_over_grpc(&first, &operator, dir.path()).await;
    assert_eq!(grpc["inserted"], 120, "{grpc}");
    assert_eq!(grpc["delete_not_found"], 2, "{grpc}");
    assert_eq!(
        grpc["rejected"], 4,
        "three bad rows and a bad delete: {grpc}"
    );
    assert_eq!(grpc["registry_version"], 1, "{grpc}");
    let (after, _) = import_on_server(&first, dir.path()).await;
    assert_eq!(
        (
            &after["inserted"],
            &after["updated"],
            &after["unchanged"],
            &after["deleted"]
        ),
        (&0.into(), &0.into(), &120.into(), &0.into()),
        "the server's import of the same file finds the store as its own would be: {after}"
    );
    first.stop().await;

    let (second, operator, _) = server().await;
    let (local, local_rejects) = import_on_server(&second, dir.path()).await;
    assert_eq!(local, grpc, "the same report either way");
    assert_eq!(
        local_rejects, grpc_rejects,
        "the same reject report either way"
    );
    let (again, _) = import_over_grpc(&second, &operator, dir.path()).await;
    assert_eq!(
        (&again["inserted"], &again["updated"], &again["unchanged"]),
        (&0.into(), &0.into(), &120.into()),
        "{again}"
    );
    assert_eq!(
        again["registry_version"], 1,
        "nothing changed, no new version"
    );
    // The reject report names lines, fields and rules, never values.
    for value in [
        "12345,".to_string(),
        "Nguyễn".to_string(),
        "not-an-id".to_string(),
        "001099012345".to_string(),
        ekyc_synth::citizen(3, 1).id_number,
    ] {
        assert!(!grpc_rejects.contains(&value), "{value} in {grpc_rejects}");
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_agency_s_registry_operator_may_import_and_purge() {
    let dir = tempfile::tempdir().expect("dir");
    write_files(dir.path());
    let (server, operator, verifier) = server().await;
    let out = ekyc(
        &server.endpoint(),
        &verifier,
        dir.path(),
        &["registry", "import", "registry.csv", "--quiet", "--json"],
    )
    .await;
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("ROLE_NOT_ALLOWED"), "{text}");
    assert_eq!(server.app.store.count_records().await.expect("count"), 0);

    // Purging the pepper the service derives with is refused; a retired
    // one is purged and counted.
    let current = server.app.keyring.primary_version().to_string();
    let out = ekyc(
        &server.endpoint(),
        &operator,
        dir.path(),
        &[
            "registry",
            "purge-pepper",
            "--pepper-version",
            &current,
            "--json",
        ],
    )
    .await;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("PEPPER_IN_USE"),
        "{text}"
    );
    let out = ekyc(
        &server.endpoint(),
        &operator,
        dir.path(),
        &[
            "registry",
            "purge-pepper",
            "--pepper-version",
            "9",
            "--json",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["pepper_version"].clone(), v["removed"].clone()),
        (9.into(), 0.into())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stops_half_way_imports_nothing() {
    use ekyc_client::{Client, v1 as pb};
    let (server, operator, _) = server().await;
    let client = Client::connect(
        &server.endpoint(),
        Some(&operator),
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let rows = rows_from_citizens(ekyc_synth::citizens(4, 10));
    let chunk = pb::ImportRecordsRequest {
        records: rows
            .iter()
            .map(|r| pb::RegistryRecord {
                line: r.line,
                fields: r
                    .values
                    .iter()
                    .map(|(name, value)| pb::RegistryField {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    };
    // No message marked last: the client stopped half way.
    let status = client
        .registry()
        .import_records(client.request(tokio_stream::iter(vec![chunk])))
        .await
        .expect_err("incomplete");
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(server.app.store.count_records().await.expect("count"), 0);
    assert_eq!(
        server.app.store.registry_version().await.expect("version"),
        0
    );
    server.stop().await;
}

/// Runs `ekyc ... --json ARGS` and returns its first stdout line as JSON, or
/// the error text when it fails.
async fn ekyc_json(
    server: &TestServer,
    key: &str,
    dir: &Path,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let out = ekyc(&server.endpoint(), key, dir, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(stdout + &String::from_utf8_lossy(&out.stderr));
    }
    let line = stdout.lines().next().unwrap_or_default();
    Ok(serde_json::from_str(line).expect("json line"))
}

/// `import --stage` builds the version without switching to it: the
/// current version answers, no other import may start, and only a publish
/// naming the staged version switches every lookup to it (a discard
/// removes it without a trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_import_switches_only_when_published() {
    let dir = tempfile::tempdir().expect("dir");
    write_files(dir.path());
    let (server, operator, _) = server().await;
    let import = [
        "registry",
        "import",
        "registry.csv",
        "--stage",
        "--quiet",
        "--json",
    ];
    let staged = ekyc_json(&server, &operator, dir.path(), &import)
        .await
        .expect("staged import");
    assert_eq!(
        (&staged["registry_version"], &staged["staged_version"]),
        (&0.into(), &1.into()),
        "{staged}"
    );
    assert_eq!(
        staged["records"], 120,
        "what the version will hold: {staged}"
    );
    assert_eq!(
        (
            server.app.store.registry_version().await.expect("version"),
            server.app.store.count_records().await.expect("count")
        ),
        (0, 0),
        "nothing answers from a staged version"
    );
    let refused = ekyc_json(&server, &operator, dir.path(), &import)
        .await
        .expect_err("one staged version at a time");
    assert!(refused.contains("VERSION_STAGED"), "{refused}");
    let wrong = ekyc_json(
        &server,
        &operator,
        dir.path(),
        &["registry", "publish", "--version", "2", "--json"],
    )
    .await
    .expect_err("version 2 is not staged");
    assert!(
        wrong.contains("VERSION_NOT_STAGED") && wrong.contains("version 1 is"),
        "{wrong}"
    );
    let published = ekyc_json(
        &server,
        &operator,
        dir.path(),
        &["registry", "publish", "--version", "1", "--json"],
    )
    .await
    .expect("publish");
    assert_eq!(
        (&published["registry_version"], &published["records"]),
        (&1.into(), &120.into()),
        "{published}"
    );
    assert_eq!(server.app.store.count_records().await.expect("count"), 120);

    // A staged change discarded: the current version stays as it was.
    std::fs::write(dir.path().join("more.csv"), {
        let mut csv = Vec::new();
        ekyc_synth::write_csv(&mut csv, ekyc_synth::citizens(11, 5)).expect("csv");
        csv
    })
    .expect("more");
    let more = ekyc_json(
        &server,
        &operator,
        dir.path(),
        &[
            "registry", "import", "more.csv", "--stage", "--quiet", "--json",
        ],
    )
    .await
    .expect("staged");
    assert_eq!(more["staged_version"], 2, "{more}");
    assert_eq!(more["records"], 125, "{more}");
    ekyc_json(
        &server,
        &operator,
        dir.path(),
        &["registry", "discard", "--version", "2", "--json"],
    )
    .await
    .expect("discard");
    assert_eq!(server.app.store.registry_version().await.expect("v"), 1);
    assert_eq!(server.app.store.count_records().await.expect("count"), 120);
    let trail = server
        .app
        .store
        .list_audit(None, None, 10)
        .await
        .expect("audit");
    let actions: Vec<&str> = trail.iter().map(|e| e.entry.action.as_str()).collect();
    assert_eq!(
        &actions[..4],
        [
            "registry.discard",
            "registry.stage",
            "registry.publish",
            "registry.stage"
        ],
        "every step is in the audit trail"
    );
    server.stop().await;
}
