//! The decision-log commands of the `ekyc` CLI (`audit checkpoint`,
//! `proof`, `verify`, `verify-admin`, `entries`, `bundle`, `subjects
//! history`)
//! against a real server, used the way a bank, an auditor and a privacy
//! officer would: save answers, check them against the log later, keep a
//! checkpoint and check that the log still extends it, check the admin
//! trail against its own checkpoint (and catch an operator editing or
//! cutting it in the database), and answer a citizen's request.

use std::path::{Path, PathBuf};

use sqlx::{AnyPool, Row};
use tokio::process::Command;

use ekyc_client::audit_log::NoteVerifier;
use ekyc_service::store::TenantPolicy;
use ekyc_service::tenants;
use ekyc_service::test_support::{TestOptions, TestServer};

mod support;
use support::Ekyc;

fn str_of<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// Verifies with `--json`, saves the answer to `dir/name` and returns its
/// path and transaction id.
async fn save_answer(bank: &Ekyc, dir: &Path, name: &str, claims: &[&str]) -> (String, String) {
    let mut args = vec!["verify"];
    args.extend_from_slice(claims);
    args.push("--json");
    let text = bank.ok(&args).await;
    let answer: serde_json::Value = serde_json::from_str(&text).expect("answer json");
    let path = dir.join(name);
    std::fs::write(&path, &text).expect("save answer");
    (
        path.to_str().expect("utf-8 path").to_string(),
        str_of(&answer, "/transaction_id").to_string(),
    )
}

/// Writes `answer` with `edit` applied to its JSON and returns the path.
fn edited(answer: &str, dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(answer).expect("read")).expect("json");
    edit(&mut v);
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).expect("write");
    path.to_str().expect("utf-8 path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_answers_check_out_against_the_decision_log() {
    let server = TestServer::start(TestOptions::default()).await;
    let (agency, issued) =
        tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let endpoint = server.endpoint();
    let dir = server.dir.path();
    let admin = Ekyc::new(&endpoint, dir, "admin.key", &issued.token);
    let bank = Ekyc::new(&endpoint, dir, "bank.key", &server.api_key);
    let other_key = server.tenant("other-bank", TenantPolicy::default()).await;
    let other = Ekyc::new(&endpoint, dir, "other.key", &other_key);
    let issued = admin
        .json(&["keys", "issue", "--tenant", &agency.id, "--role", "auditor"])
        .await;
    let auditor = Ekyc::new(&endpoint, dir, "auditor.key", str_of(&issued, "/secret"));

    let citizen = ekyc_synth::citizen(42, 3);
    let (answer, tx) = save_answer(
        &bank,
        dir,
        "a.json",
        &[
            "--id",
            &citizen.id_number,
            "--name",
            &citizen.full_name,
            "--dob",
            &citizen.date_of_birth,
        ],
    )
    .await;

    // The saved answer checks out: signature, inclusion, entry.
    let text = bank.ok(&["audit", "verify", &answer]).await;
    for check in [
        "ok  attestation signature",
        "ok  answer file",
        "ok  inclusion proof",
        "ok  log entry",
        "all checks passed",
    ] {
        assert!(text.contains(check), "{check} missing from {text}");
    }
    let report = bank.json(&["audit", "verify", &answer]).await;
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["transaction_id"], tx.as_str());

    // One altered hex digit of the payload: the signature fails.
    let tampered = edited(&answer, dir, "tampered.json", |v| {
        let hex = str_of(v, "/attestation/payload_hex").to_string();
        let (head, last) = hex.split_at(hex.len() - 1);
        let flipped = if last == "0" { "1" } else { "0" };
        v["attestation"]["payload_hex"] = format!("{head}{flipped}").into();
    });
    let printed = bank.fails(&["audit", "verify", &tampered]).await;
    assert!(
        printed.contains("FAILED attestation signature"),
        "{printed}"
    );
    assert!(!printed.contains("all checks passed"), "{printed}");
    let report = bank.run(&["audit", "verify", &tampered, "--json"]).await;
    assert_eq!(report.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(report["passed"], false);
    assert_eq!(report["failed_check"], "attestation signature");
    // A file whose readable members lie about the signed answer fails too.
    let relabelled = edited(&answer, dir, "relabelled.json", |v| {
        v["decision"] = "NO".into();
    });
    let printed = bank.fails(&["audit", "verify", &relabelled]).await;
    assert!(
        printed.contains("FAILED answer file: decision differs"),
        "{printed}"
    );

    // The proof of the bank's own transaction, and another tenant refused.
    let proof = bank.ok(&["audit", "proof", "--transaction", &tx]).await;
    assert!(
        proof.contains("inclusion verified") && proof.contains(&tx),
        "{proof}"
    );
    assert!(proof.contains("tenant:") && proof.contains("decision:"));
    let denied = other.fails(&["audit", "proof", "--transaction", &tx]).await;
    assert!(denied.contains("PermissionDenied"), "{denied}");
    // The agency's auditor may prove any tenant's entry.
    let proven = auditor
        .json(&["audit", "proof", "--transaction", &tx])
        .await;
    assert_eq!(proven["inclusion_verified"], true);
    assert_eq!(proven["entry"]["transaction"], tx.as_str());

    // Keep a checkpoint (of three entries: not a power of two, so the
    // consistency proof has more than one hash to check), answer more, and
    // the log still extends it.
    for (i, index) in [11, 12].into_iter().enumerate() {
        let c = ekyc_synth::citizen(42, index);
        save_answer(
            &bank,
            dir,
            &format!("earlier{i}.json"),
            &["--id", &c.id_number, "--name", &c.full_name],
        )
        .await;
    }
    let saved = dir.join("saved.checkpoint");
    let saved_str = saved.to_str().expect("utf-8 path");
    let cp = auditor
        .json(&["audit", "checkpoint", "--refresh", "--save", saved_str])
        .await;
    let saved_size = cp["tree_size"].as_u64().expect("tree_size");
    assert_eq!(saved_size, 3, "{cp}");
    let vkey = str_of(&cp, "/verifier_key").to_string();
    assert_eq!(
        std::fs::read_to_string(&saved).expect("saved note"),
        str_of(&cp, "/note")
    );
    let shown = bank.ok(&["audit", "checkpoint"]).await;
    for label in [
        "tree_size:",
        "root_hex:",
        "root_base64:",
        "signed_at:",
        "verifier_key:",
    ] {
        assert!(shown.contains(label), "{label} missing from {shown}");
    }
    assert!(shown.contains(&vkey), "{shown}");
    // A bank may read checkpoints but not have one signed.
    let refused = bank.fails(&["audit", "checkpoint", "--refresh"]).await;
    assert!(refused.contains("PermissionDenied"), "{refused}");

    let later = ekyc_synth::citizen(42, 5);
    let mut later_answers = Vec::new();
    for i in 0..2 {
        later_answers.push(
            save_answer(
                &bank,
                dir,
                &format!("later{i}.json"),
                &["--id", &later.id_number, "--name", &later.full_name],
            )
            .await,
        );
    }
    let (later_answer, _) = &later_answers[1];
    let text = bank
        .ok(&["audit", "verify", later_answer, "--since", saved_str])
        .await;
    assert!(
        text.contains("ok  consistency")
            && text.contains(&format!("extends the saved one of size {saved_size}")),
        "{text}"
    );
    // Pinned to the published key it passes; to another key it fails.
    bank.ok(&[
        "audit",
        "verify",
        later_answer,
        "--since",
        saved_str,
        "--trusted-key",
        &vkey,
    ])
    .await;
    let vkey_file = dir.join("trusted.vkey");
    std::fs::write(&vkey_file, format!("{vkey}\n")).expect("write vkey");
    bank.ok(&[
        "audit",
        "proof",
        "--transaction",
        &tx,
        "--trusted-key",
        vkey_file.to_str().expect("utf-8 path"),
    ])
    .await;
    let name = vkey.split('+').next().expect("key name");
    let stranger = NoteVerifier::new(
        name,
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    )
    .expect("verifier")
    .to_vkey();
    let printed = bank
        .fails(&["audit", "verify", &answer, "--trusted-key", &stranger])
        .await;
    assert!(
        printed.contains("FAILED inclusion proof") && printed.contains("signature"),
        "{printed}"
    );

    // The auditor lists entries, their leaf hashes checked; none holds a
    // claimed value.
    let listed = auditor.json(&["audit", "entries", "--limit", "1000"]).await;
    let entries = listed["entries"].as_array().expect("entries");
    assert!(entries.len() >= 3, "{listed}");
    assert!(
        entries
            .iter()
            .any(|e| e["entry"]["transaction"] == tx.as_str()),
        "{listed}"
    );
    let table = auditor.ok(&["audit", "entries"]).await;
    assert!(table.contains("INDEX") && table.contains(&tx), "{table}");
    for text in [listed.to_string(), table] {
        for value in [&citizen.full_name, &later.full_name, &citizen.id_number] {
            assert!(!text.contains(value.as_str()), "the log holds no claims");
        }
    }
    // Listing entries is the agency's.
    let refused = bank.fails(&["audit", "entries"]).await;
    assert!(refused.contains("PermissionDenied"), "{refused}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privacy_officer_lists_a_citizens_decisions_without_their_values() {
    let server = TestServer::start(TestOptions::default()).await;
    let (agency, issued) =
        tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let endpoint = server.endpoint();
    let dir = server.dir.path();
    let admin = Ekyc::new(&endpoint, dir, "admin.key", &issued.token);
    let bank = Ekyc::new(&endpoint, dir, "bank.key", &server.api_key);
    let issued = admin
        .json(&[
            "keys",
            "issue",
            "--tenant",
            &agency.id,
            "--role",
            "privacy-officer",
        ])
        .await;
    let officer = Ekyc::new(&endpoint, dir, "officer.key", str_of(&issued, "/secret"));

    let citizen = ekyc_synth::citizen(42, 7);
    let neighbour = ekyc_synth::citizen(42, 8);
    let (_, matched) = save_answer(
        &bank,
        dir,
        "a.json",
        &[
            "--id",
            &citizen.id_number,
            "--name",
            &citizen.full_name,
            "--dob",
            &citizen.date_of_birth,
        ],
    )
    .await;
    let (_, wrong) = save_answer(
        &bank,
        dir,
        "b.json",
        &[
            "--id",
            &citizen.id_number,
            "--dob",
            "1901-01-01",
            "--purpose",
            "LOAN_APPLICATION",
        ],
    )
    .await;
    let (_, unrelated) = save_answer(
        &bank,
        dir,
        "c.json",
        &["--id", &neighbour.id_number, "--name", &neighbour.full_name],
    )
    .await;

    let history = officer
        .run(&[
            "subjects",
            "history",
            "--id",
            &citizen.id_number,
            "--reason",
            "citizen request 123",
            "--json",
        ])
        .await;
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&history.stdout).expect("json");
    let accesses = listed["accesses"].as_array().expect("accesses");
    let txs: Vec<&str> = accesses
        .iter()
        .map(|a| a["transaction_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(txs, vec![matched.as_str(), wrong.as_str()], "{listed}");
    assert_eq!(listed["count"], 2);
    assert_eq!(accesses[0]["tenant_name"], "test-bank");
    assert_eq!(
        accesses[0]["fields"],
        serde_json::json!(["full_name", "date_of_birth"])
    );
    assert_eq!(accesses[0]["decision"], "YES");
    assert_eq!(accesses[1]["decision"], "NO");
    assert_eq!(accesses[1]["purpose"], "LOAN_APPLICATION");
    assert!(str_of(&accesses[0], "/time").ends_with('Z'), "{listed}");

    // The clerk's table: the same decisions, and now the first lookup too.
    let table = officer
        .run(&[
            "subjects",
            "history",
            "--id",
            &citizen.id_number,
            "--reason",
            "citizen request 123",
        ])
        .await;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("3 decisions about this citizen") && header.contains("never recorded"),
        "{text}"
    );
    for cell in [
        "DATE (UTC)",
        "TIME (RFC 3339)",
        "test-bank",
        "ACCOUNT_OPENING",
        "LOAN_APPLICATION",
        "full_name,date_of_birth",
        "ListSubjectAccesses",
        "LOOKUP",
        " UTC",
        &matched,
        &wrong,
    ] {
        assert!(text.contains(cell), "{cell} missing from {text}");
    }
    assert!(!text.contains(&unrelated), "{text}");
    assert!(text.contains("this lookup is itself recorded as log entry"));

    // No claimed value anywhere in what was printed.
    let printed = [history.stdout, history.stderr, table.stdout, table.stderr]
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .concat();
    for value in [
        &citizen.full_name,
        &citizen.date_of_birth,
        &"1901-01-01".to_string(),
        &citizen.id_number,
    ] {
        assert!(!printed.contains(value.as_str()), "printed a claimed value");
    }

    // A bank's verifier key may not list a citizen's history.
    let refused = bank
        .fails(&[
            "subjects",
            "history",
            "--id",
            &citizen.id_number,
            "--reason",
            "curious",
        ])
        .await;
    assert!(refused.contains("PermissionDenied"), "{refused}");
    assert!(!refused.contains(&citizen.id_number));

    server.stop().await;
}

/// Runs `scripts/verify_log.py` on a bundle file and returns its exit
/// code and report; fails loudly (never skips) when Python is missing.
async fn verify_log_py(bundle: &Path) -> (Option<i32>, String) {
    let python = std::env::var("EKYC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_log.py");
    let out = Command::new(python)
        .arg(script)
        .arg(bundle)
        .output()
        .await
        .expect("python3 must be installed (see .ci/run)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), report)
}

/// Flips the low bit of the last ASCII digit of a base64 entry (a digit
/// stays a digit, so the entry is still JSON, just not the logged one).
fn flip_digit(b64: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut raw = engine.decode(b64).expect("base64 entry");
    let pos = raw
        .iter()
        .rposition(u8::is_ascii_digit)
        .expect("a digit in the entry");
    raw[pos] ^= 1;
    engine.encode(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_bundles_the_log_for_the_independent_verifier() {
    let server = TestServer::start(TestOptions::default()).await;
    let (agency, issued) =
        tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let endpoint = server.endpoint();
    let dir = server.dir.path();
    let admin = Ekyc::new(&endpoint, dir, "admin.key", &issued.token);
    let bank = Ekyc::new(&endpoint, dir, "bank.key", &server.api_key);
    let issued = admin
        .json(&["keys", "issue", "--tenant", &agency.id, "--role", "auditor"])
        .await;
    let auditor = Ekyc::new(&endpoint, dir, "auditor.key", str_of(&issued, "/secret"));
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();

    // A checkpoint of the empty log, three answers, a checkpoint of them
    // (three: not a power of two), two answers more.
    let (empty, old) = (path("empty.note"), path("old.note"));
    let cp = auditor
        .json(&["audit", "checkpoint", "--refresh", "--save", &empty])
        .await;
    assert_eq!(cp["tree_size"], 0, "{cp}");
    let mut txs = Vec::new();
    for index in [21, 22, 23, 24, 25] {
        if index == 24 {
            let cp = auditor
                .json(&["audit", "checkpoint", "--refresh", "--save", &old])
                .await;
            assert_eq!(cp["tree_size"], 3, "{cp}");
        }
        let c = ekyc_synth::citizen(42, index);
        let (_, tx) = save_answer(
            &bank,
            dir,
            &format!("answer{index}.json"),
            &["--id", &c.id_number, "--name", &c.full_name],
        )
        .await;
        txs.push(tx);
    }

    let out = path("bundle.json");
    let text = auditor
        .ok(&[
            "audit",
            "bundle",
            "--since",
            &old,
            "--since",
            &empty,
            "--transaction",
            &txs[1],
            "--out",
            &out,
        ])
        .await;
    assert!(
        text.contains("sizes 0, 3, 5, signatures verified")
            && text.contains("0 to 4 (0 erased)")
            && text.contains("verify_log.py"),
        "{text}"
    );
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("bundle")).expect("json");
    let notes = bundle["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(notes.len(), 3, "{bundle}");
    assert_eq!(
        notes[1].as_str(),
        Some(std::fs::read_to_string(&old).expect("old note").as_str())
    );
    let pairs: Vec<(u64, u64, usize)> = bundle["consistency"]
        .as_array()
        .expect("consistency")
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().expect("size");
            (
                n("first"),
                n("second"),
                c["proof"].as_array().expect("proof").len(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 2, "{bundle}");
    assert_eq!(pairs[0], (0, 3, 0), "from the empty tree, an empty proof");
    assert_eq!((pairs[1].0, pairs[1].1), (3, 5));
    assert!(pairs[1].2 > 0, "{bundle}");
    assert_eq!(bundle["inclusion"][0]["index"], 1, "{bundle}");
    assert_eq!(bundle["inclusion"][0]["tree_size"], 5, "{bundle}");
    assert_eq!(bundle["entries"]["items"].as_array().map(Vec::len), Some(5));
    let bundled = bundle.to_string();
    assert!(bundled.contains(str_of(&cp, "/verifier_key")), "{bundle}");

    // The independent verifier passes it.
    let (code, report) = verify_log_py(Path::new(&out)).await;
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("ok: checkpoints 1 -> 2 (size 3 -> 5): consistent"),
        "{report}"
    );

    // One byte of one listed entry changed: it fails.
    let mut tampered = bundle.clone();
    let item = &mut tampered["entries"]["items"][3];
    *item = flip_digit(item.as_str().expect("entry")).into();
    let tampered_path = dir.join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).expect("write");
    let (code, report) = verify_log_py(&tampered_path).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("FAIL: entry 3") && report.contains("leaf hash differs"),
        "{report}"
    );

    // Pinned to a key that did not sign the checkpoints: no bundle.
    let vkey = str_of(&cp, "/verifier_key");
    let name = vkey.split('+').next().expect("key name");
    let stranger = NoteVerifier::new(
        name,
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    )
    .expect("verifier")
    .to_vkey();
    let refused = path("refused.json");
    let printed = auditor
        .fails(&[
            "audit",
            "bundle",
            "--trusted-key",
            &stranger,
            "--out",
            &refused,
        ])
        .await;
    assert!(
        printed.contains("FAILED checkpoint signature") && printed.contains("no bundle written"),
        "{printed}"
    );
    assert!(
        !Path::new(&refused).exists(),
        "a refused bundle is not written"
    );
    let printed = auditor
        .fails(&[
            "audit",
            "bundle",
            "--since",
            &old,
            "--trusted-key",
            &stranger,
        ])
        .await;
    assert!(
        printed.contains("FAILED saved checkpoint") && printed.contains("no bundle written"),
        "{printed}"
    );

    // A bank's key may not have a checkpoint signed now nor list entries,
    // but gets a bundle of the newest kept checkpoint and its own proofs,
    // to standard output.
    let stdout = bank
        .ok(&["audit", "bundle", "--no-entries", "--transaction", &txs[4]])
        .await;
    let own: serde_json::Value = serde_json::from_str(&stdout).expect("bundle json");
    assert!(own.get("entries").is_none(), "{own}");
    assert_eq!(own["inclusion"][0]["index"], 4, "{own}");
    let own_path = dir.join("own.json");
    std::fs::write(&own_path, &stdout).expect("write");
    let (code, report) = verify_log_py(&own_path).await;
    assert_eq!(code, Some(0), "{report}");
    let refused = bank.fails(&["audit", "bundle"]).await;
    assert!(refused.contains("PermissionDenied"), "{refused}");

    server.stop().await;
}

/// The store's database, as an operator with write access sees it.
async fn store_db(server: &TestServer) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&server.config.database_url())
        .await
        .expect("store database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_trail_checks_out_against_its_signed_checkpoint() {
    let server = TestServer::start(TestOptions::default()).await;
    let (agency, issued) =
        tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let endpoint = server.endpoint();
    let dir = server.dir.path();
    let admin = Ekyc::new(&endpoint, dir, "admin.key", &issued.token);
    let bank = Ekyc::new(&endpoint, dir, "bank.key", &server.api_key);
    for name in ["Bank A", "Bank B"] {
        admin.json(&["tenants", "create", "--name", name]).await;
    }
    let issued = admin
        .json(&["keys", "issue", "--tenant", &agency.id, "--role", "auditor"])
        .await;
    let auditor = Ekyc::new(&endpoint, dir, "auditor.key", str_of(&issued, "/secret"));

    // The auditor checks the trail and keeps the checkpoint.
    let saved = dir.join("admin.checkpoint");
    let saved_str = saved.to_str().expect("utf-8 path");
    let text = auditor
        .ok(&["audit", "verify-admin", "--save", saved_str])
        .await;
    for check in [
        "ok  admin checkpoint signature",
        "ok  sequence numbers: entries 1 to ",
        "ok  chain hashes",
        "ok  checkpoint: the chain hash of entry ",
        "all checks passed",
    ] {
        assert!(text.contains(check), "{check} missing from {text}");
    }
    let note = std::fs::read_to_string(&saved).expect("saved note");
    let report = auditor.json(&["audit", "verify-admin"]).await;
    assert_eq!(report["passed"], true, "{report}");
    let entries = report["entries"].as_u64().expect("entries");
    assert!(entries >= 3, "{report}");
    assert_eq!(report["tree_size"].as_u64(), Some(entries), "{report}");
    let origin = note.lines().next().expect("origin line");
    assert!(origin.ends_with("/admin-audit"), "{note}");
    assert_eq!(note.lines().nth(1), Some(entries.to_string().as_str()));

    // Pinned to the decision log's key (the admin key is derived from it)
    // it passes; pinned to another key it fails.
    let cp = bank.json(&["audit", "checkpoint"]).await;
    let vkey = str_of(&cp, "/verifier_key").to_string();
    auditor
        .ok(&["audit", "verify-admin", "--trusted-key", &vkey])
        .await;
    let name = vkey.split('+').next().expect("key name");
    let stranger = NoteVerifier::new(
        name,
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    )
    .expect("verifier")
    .to_vkey();
    let printed = auditor
        .fails(&["audit", "verify-admin", "--trusted-key", &stranger])
        .await;
    assert!(
        printed.contains("FAILED admin checkpoint signature"),
        "{printed}"
    );
    // Agency admins may check it too; a bank's key may not.
    admin.ok(&["audit", "verify-admin"]).await;
    let refused = bank.fails(&["audit", "verify-admin"]).await;
    assert!(refused.contains("PermissionDenied"), "{refused}");

    // An operator edits entry 2 in the database: named.
    let db = store_db(&server).await;
    let original: String = sqlx::query("SELECT new_value FROM admin_audit WHERE sequence = $1")
        .bind(2_i64)
        .fetch_one(&db)
        .await
        .expect("entry 2")
        .get(0);
    let set = "UPDATE admin_audit SET new_value = $1 WHERE sequence = $2";
    sqlx::query(set)
        .bind("\"x\"")
        .bind(2_i64)
        .execute(&db)
        .await
        .expect("edit entry 2");
    let printed = auditor
        .fails(&["audit", "verify-admin", "--save", saved_str])
        .await;
    assert!(
        printed.contains("FAILED chain hashes: entry 2 was altered or an earlier one removed"),
        "{printed}"
    );
    assert!(!printed.contains("all checks passed"), "{printed}");
    let report = auditor.run(&["audit", "verify-admin", "--json"]).await;
    assert_eq!(report.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(report["passed"], false);
    assert_eq!(report["failed_check"], "chain hashes");
    assert_eq!(
        std::fs::read_to_string(&saved).expect("saved note"),
        note,
        "a failed check saves nothing"
    );
    sqlx::query(set)
        .bind(&original)
        .bind(2_i64)
        .execute(&db)
        .await
        .expect("restore entry 2");
    let text = auditor
        .ok(&["audit", "verify-admin", "--since", saved_str])
        .await;
    assert!(
        text.contains(&format!(
            "ok  consistency: the trail still holds the saved checkpoint of size {entries}"
        )),
        "{text}"
    );

    // An operator cuts the newest entry off: the saved checkpoint (and the
    // service's newest, which it then checks instead of signing a shorter
    // one) signs more than the trail now holds.
    sqlx::query("DELETE FROM admin_audit WHERE sequence = (SELECT MAX(sequence) FROM admin_audit)")
        .execute(&db)
        .await
        .expect("cut the newest entry");
    let printed = auditor
        .fails(&["audit", "verify-admin", "--since", saved_str])
        .await;
    let cut = format!(
        "checkpoint signs {entries} entries, the trail lists {}",
        entries - 1
    );
    assert!(
        printed.contains("the trail was cut: ") && printed.contains(&cut),
        "{printed}"
    );
    assert!(!printed.contains("all checks passed"), "{printed}");

    db.close().await;
    server.stop().await;
}
