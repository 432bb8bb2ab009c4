//! The decision log over real gRPC (on SQLite, and on PostgreSQL in the
//! suite's second run): one entry per answered call and none for a
//! replay, proofs that verify in Rust and in the independent Python
//! verifier, tampering, truncation and a rewritten tail detected by both,
//! tenants kept to their own proofs, the citizen's access history, and
//! retention that keeps every proof verifiable.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ekyc_client::{Client, v1 as pb};
use ekyc_service::store::{Role, TenantPolicy};
use ekyc_service::tenants::{self, Actor};
use ekyc_service::test_support::{
    TestOptions, TestServer, personal_values, reason, unique_request_id,
};
use ekyc_transparency::{DecisionEntry, Hash, NoteVerifier};
use sqlx::{AnyPool, Row};
use tokio_stream::StreamExt;
use tonic::Code;

/// TestServer's synthetic registry.
const SEED: u64 = 42;

fn ask(request_id: &str, index: u64, right: bool) -> pb::VerifyRequest {
    let c = ekyc_synth::citizen(SEED, index);
    pb::VerifyRequest {
        request_id: request_id.into(),
        id_number: c.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(c.full_name.clone()),
            date_of_birth: Some(if right {
                c.date_of_birth.clone()
            } else {
                "1901-01-01".into()
            }),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-log".into(),
    }
}

/// The server, its agency, a bank verifier, and agency auditor and
/// privacy officer keys.
struct World {
    server: TestServer,
    bank: Client,
    other_bank: Client,
    auditor: Client,
    officer: Client,
}

async fn connect(server: &TestServer, key: &str) -> Client {
    Client::connect(&server.endpoint(), Some(key), Duration::from_secs(20))
        .await
        .expect("connect")
}

async fn world() -> World {
    let server = TestServer::start(TestOptions::default()).await;
    let (agency, _) = tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
        .await
        .expect("bootstrap");
    let actor = Actor::local("test");
    let mut agency_keys = Vec::new();
    for role in [Role::Auditor, Role::PrivacyOfficer] {
        let key = tenants::issue_key(&server.app.store, &agency, role, false, None, &actor)
            .await
            .expect("agency key");
        agency_keys.push(connect(&server, &key.token).await);
    }
    let officer = agency_keys.pop().expect("officer");
    let auditor = agency_keys.pop().expect("auditor");
    let other = server.tenant("other-bank", TenantPolicy::default()).await;
    World {
        bank: connect(&server, &server.api_key).await,
        other_bank: connect(&server, &other).await,
        auditor,
        officer,
        server,
    }
}

async fn verify(c: &Client, req: pb::VerifyRequest) -> pb::VerifyResponse {
    c.verification()
        .verify(c.request(req))
        .await
        .expect("answered")
        .into_inner()
}

/// The verifier key the service publishes for its checkpoints.
async fn published_verifier(c: &Client) -> NoteVerifier {
    let keys = c
        .verification()
        .list_signing_keys(pb::ListSigningKeysRequest::default())
        .await
        .expect("keys")
        .into_inner()
        .keys;
    let key = keys
        .iter()
        .find(|k| k.purpose == "checkpoint" && k.not_after.is_none())
        .expect("a current checkpoint key is published");
    assert!(
        keys.iter()
            .any(|k| k.purpose == "attestation" && k.key_id != key.key_id),
        "the attestation key is another key"
    );
    NoteVerifier::from_vkey(&key.verifier_key).expect("a verifier key")
}

async fn checkpoint(c: &Client) -> pb::Checkpoint {
    c.audit_log()
        .get_checkpoint(c.request(pb::GetCheckpointRequest { refresh: true }))
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
        .expect("checkpoint")
}

async fn entries(c: &Client) -> Vec<pb::LogEntry> {
    c.audit_log()
        .list_log_entries(c.request(pb::ListLogEntriesRequest {
            start: 0,
            limit: 1000,
        }))
        .await
        .expect("entries")
        .into_inner()
        .entries
}

async fn inclusion(c: &Client, tx: &str) -> Result<pb::GetInclusionProofResponse, tonic::Status> {
    c.audit_log()
        .get_inclusion_proof(c.request(pb::GetInclusionProofRequest {
            transaction_id: tx.into(),
            tree_size: 0,
        }))
        .await
        .map(|r| r.into_inner())
}

fn hash(bytes: &[u8]) -> Hash {
    bytes.try_into().expect("32-byte hash")
}

/// What a relying party checks in Rust: the checkpoint's signature, the
/// leaf its entry hashes to, and the audit path to the signed root.
fn check_inclusion(
    p: &pb::GetInclusionProofResponse,
    verifier: &NoteVerifier,
) -> Result<(), String> {
    let note = &p.checkpoint.as_ref().ok_or("no checkpoint")?.note;
    let head = verifier.open(note).map_err(|e| e.to_string())?;
    let entry = p.entry.as_ref().ok_or("no entry")?;
    let leaf = if entry.erased {
        hash(&entry.leaf_hash)
    } else {
        let leaf = ekyc_transparency::leaf_hash(&entry.entry);
        if leaf[..] != entry.leaf_hash[..] {
            return Err("the entry does not hash to its leaf".into());
        }
        leaf
    };
    let proof: Vec<Hash> = p.proof.iter().map(|h| hash(h)).collect();
    if head.size != p.tree_size {
        return Err("the proof is for another tree size".into());
    }
    ekyc_transparency::verify_inclusion(entry.index, head.size, &leaf, &proof, &head.root)
        .map_err(|e| e.to_string())
}

fn b64_all(hashes: &[Vec<u8>]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

/// Runs `scripts/verify_log.py` on a bundle (docs/decision-log.md,
/// section 5) and returns whether every check passed, and its report.
fn python_verifies(bundle: &serde_json::Value) -> (bool, String) {
    let python = std::env::var("EKYC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_log.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (see .ci/run)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bundle.to_string().as_bytes())
        .expect("write the bundle");
    let out = child.wait_with_output().expect("python output");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => (true, report),
        Some(1) => (false, report),
        _ => panic!(
            "verify_log.py could not read its input: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn bundle(
    vkey: &str,
    checkpoints: &[&pb::Checkpoint],
    consistency: Vec<serde_json::Value>,
    inclusion: &[&pb::GetInclusionProofResponse],
    listed: Option<&[pb::LogEntry]>,
) -> serde_json::Value {
    let mut b = serde_json::json!({
        "vkey": vkey,
        "checkpoints": checkpoints.iter().map(|c| c.note.clone()).collect::<Vec<_>>(),
        "consistency": consistency,
        "inclusion": inclusion.iter().map(|p| {
            let e = p.entry.as_ref().expect("entry");
            let mut item = serde_json::json!({
                "index": e.index,
                "tree_size": p.tree_size,
                "proof": b64_all(&p.proof),
            });
            if e.erased {
                item["leaf_hash"] = B64.encode(&e.leaf_hash).into();
            } else {
                item["entry"] = B64.encode(&e.entry).into();
            }
            item
        }).collect::<Vec<_>>(),
    });
    if let Some(listed) = listed {
        b["entries"] = serde_json::json!({
            "start": 0,
            "items": listed.iter().map(|e| {
                if e.erased { serde_json::Value::Null } else { B64.encode(&e.entry).into() }
            }).collect::<Vec<_>>(),
            "leaf_hashes": listed.iter().map(|e| B64.encode(&e.leaf_hash)).collect::<Vec<_>>(),
        });
    }
    b
}

async fn consistency(c: &Client, first: u64, second: u64) -> serde_json::Value {
    let proof = c
        .audit_log()
        .get_consistency_proof(c.request(pb::GetConsistencyProofRequest { first, second }))
        .await
        .expect("consistency proof")
        .into_inner()
        .proof;
    serde_json::json!({"first": first, "second": second, "proof": b64_all(&proof)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_one_entry_and_its_proofs_verify_in_rust_and_python() {
    let w = world().await;
    let prefix = unique_request_id("log");
    let mut answered: BTreeMap<String, (u64, &str)> = BTreeMap::new();
    // Unary calls: matches, a mismatch, an unknown subject.
    for (n, (index, right)) in [(0, true), (0, true), (0, false), (1, true)]
        .into_iter()
        .enumerate()
    {
        let r = verify(&w.bank, ask(&format!("{prefix}-{n}"), index, right)).await;
        answered.insert(r.transaction_id, (index, "Verify"));
    }
    let mut unknown = ask(&format!("{prefix}-unknown"), 0, true);
    unknown.id_number = ekyc_synth::citizen(7_777, 3).id_number;
    let r = verify(&w.bank, unknown).await;
    answered.insert(r.transaction_id, (u64::MAX, "Verify"));
    // A replay is answered from the ledger and adds no entry.
    let again = verify(&w.bank, ask(&format!("{prefix}-0"), 0, true)).await;
    assert!(answered.contains_key(&again.transaction_id), "replayed");
    // A refused call adds none either.
    let mut bad = ask(&format!("{prefix}-bad"), 0, true);
    bad.id_number = "12".into();
    let refused = w.bank.verification().verify(w.bank.request(bad)).await;
    assert_eq!(refused.expect_err("refused").code(), Code::InvalidArgument);
    // Batch items, each an entry of its own.
    let items: Vec<pb::VerifyRequest> = [(2, true), (2, false), (1, true)]
        .into_iter()
        .enumerate()
        .map(|(n, (index, right))| ask(&format!("{prefix}-batch-{n}"), index, right))
        .collect();
    let mut stream = w
        .bank
        .verification()
        .verify_batch(w.bank.request(tokio_stream::iter(items.clone())))
        .await
        .expect("batch")
        .into_inner();
    while let Some(result) = stream.next().await {
        let result = result.expect("item");
        let Some(pb::verify_batch_result::Outcome::Response(r)) = result.outcome else {
            panic!("an item was refused: {result:?}");
        };
        let n: usize = result
            .request_id
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let index = [2, 2, 1][n];
        answered.insert(r.transaction_id, (index, "VerifyBatch"));
    }
    assert_eq!(answered.len(), 8);

    let verifier = published_verifier(&w.bank).await;
    let first = checkpoint(&w.auditor).await;
    assert_eq!(first.tree_size, 8, "one entry per answered call");
    assert_eq!(verifier.open(&first.note).expect("signed").size, 8);
    assert_eq!(first.verifier_key, verifier.to_vkey());

    // The auditor's listing: exactly the answered transactions, in order,
    // each about its subject under one pseudonym per person, none holding
    // an ID number or a claimed value.
    let listed = entries(&w.auditor).await;
    assert_eq!(
        listed.iter().map(|e| e.index).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    let mut citizens: Vec<ekyc_synth::Citizen> =
        (0..3).map(|i| ekyc_synth::citizen(SEED, i)).collect();
    citizens.push(ekyc_synth::citizen(7_777, 3));
    let secrets = personal_values(&citizens);
    let mut subjects: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for e in &listed {
        let text = String::from_utf8(e.entry.clone()).expect("entries are UTF-8 JSON");
        for value in &secrets {
            assert!(
                !text.contains(value.as_str()),
                "an entry holds personal data"
            );
        }
        let entry = DecisionEntry::decode(&e.entry).expect("decodes");
        let (index, method) = answered[&entry.transaction];
        assert_eq!(entry.method, method);
        assert_eq!(entry.tenant, w.server.tenant_id("test-bank").await);
        assert_eq!(entry.purpose, "ACCOUNT_OPENING");
        assert_eq!(
            entry
                .fields
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>(),
            ["full_name", "date_of_birth"]
        );
        subjects.entry(index).or_default().insert(entry.subject);
    }
    assert!(
        subjects.values().all(|s| s.len() == 1),
        "one pseudonym per subject"
    );
    let distinct: BTreeSet<_> = subjects.values().flatten().collect();
    assert_eq!(distinct.len(), subjects.len(), "a pseudonym per subject");

    // Every transaction's proof verifies for its own tenant, and is
    // refused to another.
    let mut proofs = Vec::new();
    for tx in answered.keys() {
        let p = inclusion(&w.bank, tx).await.expect("own proof");
        check_inclusion(&p, &verifier).expect("verifies");
        let refused = inclusion(&w.other_bank, tx)
            .await
            .expect_err("another tenant's");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(reason(&refused), "TENANT_NOT_ACCESSIBLE");
        proofs.push(p);
    }

    // The log grows; the later tree is consistent with the earlier one.
    for n in 0..3 {
        verify(&w.bank, ask(&format!("{prefix}-late-{n}"), 1, true)).await;
    }
    let second = checkpoint(&w.auditor).await;
    assert_eq!(second.tree_size, 11);
    let proof = w
        .auditor
        .audit_log()
        .get_consistency_proof(w.auditor.request(pb::GetConsistencyProofRequest {
            first: 8,
            second: 11,
        }))
        .await
        .expect("consistency")
        .into_inner()
        .proof;
    let heads = [&first, &second].map(|c| verifier.open(&c.note).expect("signed"));
    ekyc_transparency::verify_consistency(
        8,
        11,
        &heads[0].root,
        &heads[1].root,
        &proof.iter().map(|h| hash(h)).collect::<Vec<_>>(),
    )
    .expect("consistent");

    // The independent verifier agrees on all of it.
    let listed = entries(&w.auditor).await;
    let proof_refs: Vec<&pb::GetInclusionProofResponse> = proofs.iter().collect();
    let b = bundle(
        &verifier.to_vkey(),
        &[&first, &second],
        vec![consistency(&w.auditor, 8, 11).await],
        &proof_refs,
        Some(&listed),
    );
    let (ok, report) = python_verifies(&b);
    assert!(ok, "verify_log.py rejected an honest log:\n{report}");

    // The kept checkpoint of a size is served again, and one never signed
    // is not found.
    let at = w
        .bank
        .audit_log()
        .get_checkpoint_at(w.bank.request(pb::GetCheckpointAtRequest { tree_size: 8 }))
        .await
        .expect("kept")
        .into_inner()
        .checkpoint
        .expect("checkpoint");
    assert_eq!(at.note, first.note);
    let missing = w
        .bank
        .audit_log()
        .get_checkpoint_at(w.bank.request(pb::GetCheckpointAtRequest { tree_size: 9 }))
        .await
        .expect_err("never signed");
    assert_eq!(reason(&missing), "CHECKPOINT_NOT_FOUND");
    w.server.stop().await;
}

/// The ledger's database, as an operator with write access sees it.
async fn ledger_db(server: &TestServer) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&server.config.billing_database_url())
        .await
        .expect("ledger database")
}

/// Cuts the log back to `size` entries as a dishonest operator would:
/// entries, every node over a cut leaf, the head, and the checkpoints
/// beyond it.
async fn truncate(db: &AnyPool, size: i64) {
    for sql in [
        "DELETE FROM decision_entries WHERE idx >= $1",
        "DELETE FROM log_nodes WHERE ((idx + 1) << CAST(level AS INTEGER)) > $1",
        "DELETE FROM log_checkpoints WHERE size > $1",
        "UPDATE log_heads SET size = $1",
    ] {
        sqlx::query(sql).bind(size).execute(db).await.expect(sql);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_truncation_and_a_rewritten_tail_are_detected() {
    let w = world().await;
    let prefix = unique_request_id("tamper");
    let mut txs = Vec::new();
    for n in 0..6 {
        let r = verify(&w.bank, ask(&format!("{prefix}-{n}"), n % 3, n % 2 == 0)).await;
        txs.push(r.transaction_id);
    }
    let verifier = published_verifier(&w.bank).await;
    let vkey = verifier.to_vkey();
    let saved = checkpoint(&w.auditor).await;
    assert_eq!(saved.tree_size, 6);
    let honest = entries(&w.auditor).await;
    let (ok, report) = python_verifies(&bundle(&vkey, &[&saved], vec![], &[], Some(&honest)));
    assert!(ok, "honest log rejected:\n{report}");
    let db = ledger_db(&w.server).await;

    // 1. A stored entry changed (a NO made a YES, say): its leaf no longer
    // matches, for the tenant's Rust check and for the auditor's script.
    let original: String = sqlx::query("SELECT entry FROM decision_entries WHERE idx = 1")
        .fetch_one(&db)
        .await
        .expect("entry")
        .try_get("entry")
        .expect("text");
    let forged = original.replace("\"NO\"", "\"YES\"");
    assert_ne!(forged, original, "entry 1 is a NO");
    sqlx::query("UPDATE decision_entries SET entry = $1 WHERE idx = 1")
        .bind(&forged)
        .execute(&db)
        .await
        .expect("tamper");
    let p = inclusion(&w.bank, &txs[1]).await.expect("proof");
    assert!(
        check_inclusion(&p, &verifier).is_err(),
        "Rust saw the forgery"
    );
    let (ok, report) = python_verifies(&bundle(
        &vkey,
        &[&saved],
        vec![],
        &[&p],
        Some(&entries(&w.auditor).await),
    ));
    assert!(!ok, "verify_log.py accepted a tampered entry:\n{report}");
    sqlx::query("UPDATE decision_entries SET entry = $1 WHERE idx = 1")
        .bind(&original)
        .execute(&db)
        .await
        .expect("restore");

    // 2. An entry deleted: the listing no longer adds up to the signed root.
    sqlx::query("DELETE FROM decision_entries WHERE idx = 3")
        .execute(&db)
        .await
        .expect("drop");
    let gapped = entries(&w.auditor).await;
    assert_eq!(gapped.len(), 5);
    let root = gapped
        .iter()
        .map(|e| hash(&e.leaf_hash))
        .fold(Vec::new(), |mut v, h| {
            v.push(h);
            v
        });
    let recomputed = naive_root(&root);
    assert_ne!(
        recomputed,
        verifier.open(&saved.note).expect("signed").root,
        "Rust saw the gap"
    );
    let (ok, report) = python_verifies(&bundle(&vkey, &[&saved], vec![], &[], Some(&gapped)));
    assert!(!ok, "verify_log.py accepted a dropped entry:\n{report}");

    // 3. The newest entries cut off and a new checkpoint signed: smaller
    // than the one the auditor kept.
    truncate(&db, 4).await;
    let cut = checkpoint(&w.auditor).await;
    assert_eq!(cut.tree_size, 4);
    assert!(cut.tree_size < saved.tree_size, "Rust saw the truncation");
    let (ok, report) = python_verifies(&bundle(&vkey, &[&saved, &cut], vec![], &[], None));
    assert!(!ok, "verify_log.py accepted a truncated log:\n{report}");

    // 4. The tail rewritten: new calls fill the cut indexes, a new larger
    // checkpoint is signed, and it is not consistent with the kept one.
    for n in 0..3 {
        verify(&w.bank, ask(&format!("{prefix}-new-{n}"), 2, true)).await;
    }
    let rewritten = checkpoint(&w.auditor).await;
    assert_eq!(rewritten.tree_size, 7);
    let proof = consistency(&w.auditor, 6, 7).await;
    let heads = [&saved, &rewritten].map(|c| verifier.open(&c.note).expect("signed"));
    let nodes: Vec<Hash> = proof["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| hash(&B64.decode(h.as_str().expect("b64")).expect("b64")))
        .collect();
    assert!(
        ekyc_transparency::verify_consistency(6, 7, &heads[0].root, &heads[1].root, &nodes)
            .is_err(),
        "Rust saw the rewritten tail"
    );
    let (ok, report) = python_verifies(&bundle(
        &vkey,
        &[&saved, &rewritten],
        vec![proof],
        &[],
        None,
    ));
    assert!(!ok, "verify_log.py accepted a rewritten tail:\n{report}");

    // 5. A stored node rewritten under the newest checkpoint: the service
    // refuses to sign over it, however the log grows.
    sqlx::query("UPDATE log_nodes SET hash = $1 WHERE level = 1 AND idx = 2")
        .bind("00".repeat(32))
        .execute(&db)
        .await
        .expect("rewrite a node");
    verify(&w.bank, ask(&format!("{prefix}-after"), 1, true)).await;
    let refused = w
        .auditor
        .audit_log()
        .get_checkpoint(
            w.auditor
                .request(pb::GetCheckpointRequest { refresh: true }),
        )
        .await
        .expect_err("no checkpoint over a rewritten log");
    assert_eq!(refused.code(), Code::DataLoss);
    assert_eq!(reason(&refused), "LOG_INCONSISTENT");
    db.close().await;
    w.server.stop().await;
}

/// RFC 6962's root, straight from its definition.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => ekyc_transparency::empty_root(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            ekyc_transparency::node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_gets_every_decision_about_them_and_nothing_else() {
    let w = world().await;
    let prefix = unique_request_id("history");
    let mut about: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (n, (index, right, bank)) in [
        (0, true, &w.bank),
        (1, true, &w.bank),
        (0, false, &w.other_bank),
        (2, true, &w.other_bank),
        (0, true, &w.bank),
    ]
    .into_iter()
    .enumerate()
    {
        let r = verify(bank, ask(&format!("{prefix}-{n}"), index, right)).await;
        about.entry(index).or_default().push(r.transaction_id);
    }
    let citizen = ekyc_synth::citizen(SEED, 0);
    let evaluations = || {
        w.server
            .app
            .pool
            .stats()
            .evaluations
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = evaluations();
    let history = |reason: &str| pb::ListSubjectAccessesRequest {
        id_number: citizen.id_number.clone(),
        reason: reason.into(),
    };
    let got = w
        .officer
        .audit_log()
        .list_subject_accesses(w.officer.request(history("citizen request 1")))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(evaluations() - before, 1, "one Argon2id evaluation");
    assert_eq!(
        got.accesses
            .iter()
            .map(|a| a.transaction_id.clone())
            .collect::<Vec<_>>(),
        about[&0],
        "exactly the decisions about this citizen, oldest first"
    );
    let bank_id = w.server.tenant_id("test-bank").await;
    let other_id = w.server.tenant_id("other-bank").await;
    assert_eq!(
        got.accesses
            .iter()
            .map(|a| (a.tenant_id.as_str(), a.decision.as_str()))
            .collect::<Vec<_>>(),
        [
            (bank_id.as_str(), "YES"),
            (other_id.as_str(), "NO"),
            (bank_id.as_str(), "YES")
        ]
    );
    assert!(got.accesses.iter().all(|a| a.tenant_name.ends_with("bank")
        && a.purpose_code == "ACCOUNT_OPENING"
        && a.fields == ["full_name", "date_of_birth"]));
    let printed = format!("{got:?}");
    for value in personal_values(std::slice::from_ref(&citizen)) {
        assert!(
            !printed.contains(&value),
            "the history holds a claimed value"
        );
    }
    // The lookup is in the log, and the next lookup lists it.
    assert_eq!(got.lookup_log_index, 5);
    let again = w
        .officer
        .audit_log()
        .list_subject_accesses(w.officer.request(history("citizen request 2")))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(again.accesses.len(), 4);
    let last = again.accesses.last().expect("the lookup");
    assert_eq!(
        (last.method.as_str(), last.decision.as_str()),
        ("ListSubjectAccesses", "LOOKUP")
    );
    assert!(last.fields.is_empty());
    // Nobody else may ask, and a malformed ID costs no evaluation.
    for c in [&w.bank, &w.auditor] {
        let refused = c
            .audit_log()
            .list_subject_accesses(c.request(history("curious")))
            .await
            .expect_err("not a privacy officer");
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    let before = evaluations();
    let bad = w
        .officer
        .audit_log()
        .list_subject_accesses(w.officer.request(pb::ListSubjectAccessesRequest {
            id_number: "12".into(),
            reason: String::new(),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(evaluations(), before);
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_details_and_every_proof_still_verifies() {
    let w = world().await;
    let prefix = unique_request_id("retention");
    let mut txs = Vec::new();
    for n in 0..5 {
        txs.push(
            verify(&w.bank, ask(&format!("{prefix}-{n}"), 0, true))
                .await
                .transaction_id,
        );
    }
    let verifier = published_verifier(&w.bank).await;
    let old = checkpoint(&w.auditor).await;
    // Past the retention of everything so far (as if five years went by).
    let erased = w
        .server
        .app
        .ledger
        .erase_decisions_before(ekyc_service::clock::now_ms() + 1)
        .await
        .expect("erase");
    assert_eq!(erased, 5);
    verify(&w.bank, ask(&format!("{prefix}-late"), 0, true)).await;
    let new = checkpoint(&w.auditor).await;
    let listed = entries(&w.auditor).await;
    assert_eq!(
        listed.iter().map(|e| e.erased).collect::<Vec<_>>(),
        [true, true, true, true, true, false]
    );
    assert!(listed[..5].iter().all(|e| e.entry.is_empty()));
    // The old checkpoint, the new one and the proofs of erased entries.
    let mut proofs = Vec::new();
    for tx in &txs {
        let p = inclusion(&w.bank, tx)
            .await
            .expect("proof of an erased entry");
        assert!(p.entry.as_ref().expect("entry").erased);
        check_inclusion(&p, &verifier).expect("still verifies");
        proofs.push(p);
    }
    let refs: Vec<&pb::GetInclusionProofResponse> = proofs.iter().collect();
    let (ok, report) = python_verifies(&bundle(
        &verifier.to_vkey(),
        &[&old, &new],
        vec![consistency(&w.auditor, 5, 6).await],
        &refs,
        Some(&listed),
    ));
    assert!(ok, "erased details broke verification:\n{report}");
    // The citizen's history no longer holds the erased decisions.
    let got = w
        .officer
        .audit_log()
        .list_subject_accesses(w.officer.request(pb::ListSubjectAccessesRequest {
            id_number: ekyc_synth::citizen(SEED, 0).id_number,
            reason: "citizen request".into(),
        }))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(got.accesses.len(), 1, "only the retained decision");
    w.server.stop().await;
}

/// Every admin audit event, oldest first, as the agency's auditor reads them.
async fn admin_trail(c: &Client) -> Vec<pb::AuditEvent> {
    let mut events = c
        .admin()
        .list_audit_events(c.request(pb::ListAuditEventsRequest {
            tenant_id: String::new(),
            page_size: 1000,
            page_token: String::new(),
        }))
        .await
        .expect("the auditor reads the trail")
        .into_inner()
        .events;
    events.reverse();
    events
}

/// The chain hash at each sequence number, recomputed from the events
/// (`None` where the trail is not gapless from 1).
fn chain(events: &[pb::AuditEvent]) -> Option<Vec<[u8; 32]>> {
    let mut previous = [0u8; 32];
    let mut out = Vec::new();
    for (n, e) in events.iter().enumerate() {
        if e.sequence != n as i64 + 1 {
            return None;
        }
        let t = e.time.expect("time");
        let entry = ekyc_service::store::AuditEntry {
            at_ms: t.seconds * 1000 + i64::from(t.nanos) / 1_000_000,
            actor_key_id: e.actor_key_id.clone(),
            actor_tenant_id: e.actor_tenant_id.clone(),
            action: e.action.clone(),
            tenant_id: e.tenant_id.clone(),
            field: e.field.clone(),
            old_value: e.old_value.clone(),
            new_value: e.new_value.clone(),
        };
        previous = ekyc_service::store::audit_chain_hash(&previous, &entry);
        out.push(previous);
    }
    Some(out)
}

/// Whether the trail as read is the one the checkpoint signed: gapless,
/// as long, and with the signed chain hash at the signed size.
fn trail_matches(events: &[pb::AuditEvent], head: &ekyc_transparency::Checkpoint) -> bool {
    let Some(hashes) = chain(events) else {
        return false;
    };
    let stored_agree = events
        .iter()
        .zip(&hashes)
        .all(|(e, h)| e.chain_hash == hex::encode(h));
    let signed = match head.size {
        0 => Some([0u8; 32]),
        n => hashes.get(n as usize - 1).copied(),
    };
    stored_agree && signed == Some(head.root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_trail_is_checkpointed_and_cutting_or_rewriting_it_shows() {
    let w = world().await;
    let verifier = published_verifier(&w.bank).await;
    let admin_verifier = verifier
        .renamed(&format!("{}/admin-audit", verifier.name()))
        .expect("admin verifier");
    let signed = w
        .auditor
        .audit_log()
        .get_admin_audit_checkpoint(
            w.auditor
                .request(pb::GetCheckpointRequest { refresh: true }),
        )
        .await
        .expect("admin checkpoint")
        .into_inner()
        .checkpoint
        .expect("checkpoint");
    assert_eq!(signed.verifier_key, admin_verifier.to_vkey());
    // The decision log's key name does not open the trail's notes.
    assert!(verifier.open(&signed.note).is_err());
    let head = admin_verifier.open(&signed.note).expect("signed");
    let events = admin_trail(&w.auditor).await;
    assert!(
        head.size >= 4,
        "bootstrap, the keys and the tenants are in it"
    );
    assert_eq!(head.size, events.len() as u64);
    assert!(trail_matches(&events, &head), "the honest trail verifies");

    let db = {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&w.server.config.database_url())
            .await
            .expect("store database")
    };
    // An entry altered in place: its chain hash no longer follows.
    sqlx::query("UPDATE admin_audit SET new_value = '\"x\"' WHERE sequence = 2")
        .execute(&db)
        .await
        .expect("tamper");
    assert!(!trail_matches(&admin_trail(&w.auditor).await, &head));
    // The newest entry cut off: shorter than the checkpoint signs.
    sqlx::query("DELETE FROM admin_audit WHERE sequence = $1")
        .bind(head.size as i64)
        .execute(&db)
        .await
        .expect("cut");
    let cut = admin_trail(&w.auditor).await;
    assert_eq!(cut.len(), events.len() - 1);
    assert!(!trail_matches(&cut, &head), "the cut is seen");
    // The service itself will not sign a head behind the one it signed.
    let refused = w
        .auditor
        .audit_log()
        .get_admin_audit_checkpoint(
            w.auditor
                .request(pb::GetCheckpointRequest { refresh: true }),
        )
        .await
        .expect_err("no checkpoint over a cut trail");
    assert_eq!(refused.code(), Code::DataLoss);
    assert_eq!(reason(&refused), "LOG_INCONSISTENT");
    db.close().await;
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_appending_at_once_build_one_gapless_tree() {
    use ekyc_billing::{Decision, Ledger, UsageEvent};
    // Two ledgers on one database, as two replicas have: PostgreSQL in
    // the suite's second run, one SQLite file otherwise.
    let dir = tempfile::tempdir().expect("temp dir");
    let database = ekyc_service::test_support::postgres_run()
        .then(ekyc_service::test_support::TestDatabase::create);
    let database = match database {
        Some(created) => Some(created.await),
        None => None,
    };
    let url = database.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("billing.db").display()),
        |db| db.url.clone(),
    );
    let replicas = [
        std::sync::Arc::new(Ledger::open(&url).await.expect("ledger a")),
        std::sync::Arc::new(Ledger::open(&url).await.expect("ledger b")),
    ];
    let event = |n: usize| {
        let event = UsageEvent {
            tenant_id: "tn_replicas".into(),
            request_id: format!("r-{n}"),
            event_time_ms: 1_000 + n as i64,
            method: "Verify".into(),
            fields: vec!["full_name".into()],
            units: 2,
            outcome: "yes".into(),
            fingerprint: format!("{n:064x}"),
            replay: None,
            invoice_number: None,
        };
        let decision = Decision {
            tenant_id: event.tenant_id.clone(),
            time_ms: event.event_time_ms,
            transaction_id: format!("tx_{n:032x}"),
            subject: format!("{:064x}", n % 7),
            entry: format!("{{\"v\":1,\"n\":{n}}}").into_bytes(),
        };
        (event, decision)
    };
    // 8 writers per replica; every request id is sent by both replicas,
    // as a client retrying on another one would: each is logged once.
    let mut tasks = Vec::new();
    for (r, ledger) in replicas.iter().enumerate() {
        for w in 0..8 {
            let ledger = std::sync::Arc::clone(ledger);
            tasks.push(tokio::spawn(async move {
                for n in (w..200).step_by(8) {
                    let (e, d) = event(n);
                    ledger.record_decided(e, d).await.expect("recorded");
                }
                r
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let ledger = &replicas[0];
    let size = ledger.log_size().await.expect("size");
    assert_eq!(size, 200, "one entry per request id");
    let stored = ledger.decisions(0, 1000).await.expect("entries");
    assert_eq!(
        stored.iter().map(|d| d.index).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>(),
        "gapless"
    );
    let leaves: Vec<Hash> = stored
        .iter()
        .map(|d| {
            let leaf = ekyc_transparency::leaf_hash(d.entry.as_deref().expect("entry"));
            assert_eq!(leaf, d.leaf_hash);
            leaf
        })
        .collect();
    let distinct: BTreeSet<_> = stored.iter().map(|d| d.transaction_id.clone()).collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(
        ledger.log_root(size).await.expect("root"),
        naive_root(&leaves),
        "the stored nodes are the tree of the stored leaves"
    );
    for first in [1, 7, 64, 199] {
        let proof = replicas[1]
            .consistency_proof(first, size)
            .await
            .expect("proof");
        ekyc_transparency::verify_consistency(
            first,
            size,
            &naive_root(&leaves[..first as usize]),
            &naive_root(&leaves),
            &proof,
        )
        .expect("consistent");
    }
    for ledger in &replicas {
        ledger.close().await;
    }
}
