//! The decision log from the command line: `ekyc audit checkpoint`,
//! `proof`, `verify`, `entries` and `bundle` (beside `ekyc audit list`,
//! the admin trail, which `ekyc audit verify-admin` checks against its own
//! signed checkpoint), and `ekyc subjects history`, a citizen's access
//! history for the agency's privacy officers. `bundle` writes the JSON that
//! `scripts/verify_log.py` checks independently of this code.
//!
//! Every check is `ekyc_client::audit_log`'s; this module fetches, prints,
//! and turns a failed check into exit code 1 with the check's name. It
//! never prints a claimed value: the log holds none, and a saved answer's
//! file holds none either (only digests and results).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use ekyc_client::audit_log::{
    self, ADMIN_AUDIT_SUFFIX, Checkpoint, DecisionEntry, LogError, NoteVerifier, admin_verifier,
    check_admin_trail, check_attestation_in_log, check_checkpoint, check_listed_entry,
};
use ekyc_client::{Client, ClientError, field_name, result_name, v1 as pb};
use ekyc_domain::attestation;
use serde::{Deserialize, Serialize};

use crate::output::{or_dash, print_table};

/// The decision-log commands of `ekyc audit`.
#[derive(Subcommand)]
pub(crate) enum LogCommand {
    /// Show the decision log's newest signed checkpoint, its signature
    /// checked (anyone with a key; --refresh: agency auditors and admins).
    Checkpoint {
        /// Have the service sign a checkpoint over the log as it is now.
        #[arg(long)]
        refresh: bool,
        /// Save the signed note to FILE, for `audit verify --since`.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Fetch and check the inclusion proof of a transaction's log entry (a
    /// tenant's keys for its own transactions; agency auditors for any).
    Proof {
        /// The answer's transaction id ("tx_...").
        #[arg(long)]
        transaction: String,
        /// Prove inclusion in the checkpoint of this tree size [default:
        /// the newest holding the entry].
        #[arg(long)]
        tree_size: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Check a saved `ekyc verify --json` answer against the decision log.
    ///
    /// Checks its attestation signature, its entry's inclusion proof, that
    /// the entry records what the attestation says and, with --since, that
    /// the log still extends a checkpoint saved earlier. Exits 0 only if
    /// every check passes, 1 naming the first that failed.
    Verify {
        /// The saved answer (the output of `ekyc verify --json`).
        file: PathBuf,
        /// A checkpoint saved earlier (`audit checkpoint --save`) that the
        /// proof's checkpoint must extend.
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        since: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Check the admin audit trail against a checkpoint of it signed now
    /// (agency auditors and admins).
    ///
    /// Has the service sign a checkpoint of the trail, lists every event,
    /// and checks that the sequence numbers run from 1 without a gap, that
    /// every entry's chain hash is the one recomputed over it, and that
    /// the checkpoint's signed head is in that chain (else entries were
    /// cut off or rewritten); with --since, that the trail still holds a
    /// checkpoint saved earlier. The checkpoint key is the decision log's
    /// (--trusted-key), under its name followed by `/admin-audit`. Exits 0
    /// only if every check passes, 1 naming the first that failed.
    VerifyAdmin {
        /// An admin checkpoint saved earlier (`audit verify-admin --save`)
        /// that the trail must still hold.
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        since: Option<PathBuf>,
        /// Save the fetched signed note to FILE once every check passed,
        /// for a later --since (may be the --since file itself).
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Write the JSON bundle that `scripts/verify_log.py` checks
    /// (docs/decision-log.md, section 5), for an independent check.
    ///
    /// Holds the newest checkpoint (signed now for agency auditors and
    /// admins, else the newest kept one) and the --since ones, ordered by
    /// size; a consistency proof between each consecutive pair of
    /// different sizes; the inclusion proof of each --transaction in the
    /// newest checkpoint; and, unless --no-entries, every entry up to the
    /// newest checkpoint's size (agency auditors and admins). It judges
    /// nothing but the checkpoints' signatures: a checkpoint that does not
    /// verify under the key exits 1 and writes no bundle.
    Bundle {
        /// A checkpoint saved earlier (`audit checkpoint --save`) to
        /// include; repeatable.
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        since: Vec<PathBuf>,
        /// A transaction ("tx_...") whose entry's inclusion proof to
        /// include; repeatable.
        #[arg(long, value_name = "TX")]
        transaction: Vec<String>,
        /// Leave out the entries range (then a tenant's key may write a
        /// bundle too, with proofs of its own transactions).
        #[arg(long)]
        no_entries: bool,
        /// Write the bundle to FILE [default: standard output].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// List log entries by index, their leaf hashes checked (agency
    /// auditors and admins).
    Entries {
        /// First index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Most entries, 1 to 1000 [default: the service's, 100].
        #[arg(long)]
        limit: Option<u32>,
    },
}

/// Which checkpoint key to trust.
#[derive(Args)]
pub(crate) struct TrustArgs {
    /// The checkpoint verifier key to trust (`<name>+<key hash>+<key>`),
    /// or a file holding it [default: the one the service publishes,
    /// trusted on first use].
    #[arg(long, value_name = "VKEY_OR_FILE")]
    trusted_key: Option<String>,
}

/// `ekyc subjects ...`.
#[derive(Args)]
pub(crate) struct SubjectsArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: SubjectsCommand,
}

#[derive(Subcommand)]
pub(crate) enum SubjectsCommand {
    /// Every logged decision about one citizen, oldest first, for the
    /// citizen's access request (agency privacy officers). The lookup is
    /// itself logged.
    History {
        /// The citizen's ID number; "-" reads it from standard input, so
        /// it stays out of the shell history and the process list.
        #[arg(long)]
        id: String,
        /// Why, for the log: e.g. the citizen's request reference (no
        /// personal data).
        #[arg(long)]
        reason: String,
    },
}

/// A check that did not pass: its name, why, and the checks passed before
/// it (for `--json`).
#[derive(Debug)]
pub(crate) struct CheckFailed {
    check: &'static str,
    error: String,
    passed: Vec<CheckOut>,
}

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.check, self.error)
    }
}

impl std::error::Error for CheckFailed {}

/// One check passed, as `audit verify` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckOut {
    check: &'static str,
    detail: String,
}

/// A failed check as an error for [`finish`]; a refusal by the service
/// stays a refusal (printed with its details).
fn failed(check: &'static str, e: ClientError, passed: &[CheckOut]) -> anyhow::Error {
    match e {
        ClientError::Status(status) => status.into(),
        e => CheckFailed {
            check,
            error: e.to_string(),
            passed: passed.to_vec(),
        }
        .into(),
    }
}

fn fail(check: &'static str, error: impl Into<String>, passed: &[CheckOut]) -> anyhow::Error {
    CheckFailed {
        check,
        error: error.into(),
        passed: passed.to_vec(),
    }
    .into()
}

/// Like `output::finish`, and a failed check also exits 1, naming the
/// check (on stderr, or as JSON on stdout with `--json`).
pub(crate) fn finish(result: Result<()>, json: bool) -> Result<ExitCode> {
    match result {
        Err(e) => match e.downcast::<CheckFailed>() {
            Ok(f) => {
                if json {
                    let out = serde_json::json!({
                        "passed": false,
                        "failed_check": f.check,
                        "error": f.error,
                        "checks": f.passed,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    eprintln!("FAILED {}: {}", f.check, f.error);
                }
                Ok(ExitCode::from(1))
            }
            Err(e) => crate::output::finish(Err(e), json),
        },
        ok => crate::output::finish(ok, json),
    }
}

/// `ekyc audit checkpoint|proof|verify|verify-admin|bundle|entries`.
pub(crate) async fn audit_log(client: &Client, command: LogCommand, json: bool) -> Result<()> {
    match command {
        LogCommand::Checkpoint {
            refresh,
            save,
            trust,
        } => checkpoint(client, refresh, save.as_deref(), &trust, json).await,
        LogCommand::Proof {
            transaction,
            tree_size,
            trust,
        } => proof(client, &transaction, tree_size.unwrap_or(0), &trust, json).await,
        LogCommand::Verify { file, since, trust } => {
            verify(client, &file, since.as_deref(), &trust, json).await
        }
        LogCommand::VerifyAdmin { since, save, trust } => {
            verify_admin(client, since.as_deref(), save.as_deref(), &trust, json).await
        }
        LogCommand::Bundle {
            since,
            transaction,
            no_entries,
            out,
            trust,
        } => {
            let want = BundleWanted {
                since: &since,
                transactions: &transaction,
                entries: !no_entries,
            };
            bundle(client, want, out.as_deref(), &trust, json).await
        }
        LogCommand::Entries { start, limit } => entries(client, start, limit, json).await,
    }
}

/// The verifier to check checkpoints with, and where it came from.
async fn verifier(client: &Client, trust: &TrustArgs) -> Result<(NoteVerifier, &'static str)> {
    let Some(given) = &trust.trusted_key else {
        let v = client
            .checkpoint_verifier()
            .await
            .map_err(|e| failed("checkpoint key", e, &[]))?;
        return Ok((v, "published by the service"));
    };
    // A verifier key has two '+'; a path rarely does, and a file is read
    // only when the text is not a key.
    let text = match audit_log::verifier_from_vkey(given) {
        Ok(v) => return Ok((v, "pinned")),
        Err(_) => std::fs::read_to_string(given).with_context(|| {
            format!("--trusted-key {given} is neither a verifier key nor a readable file")
        })?,
    };
    let v = audit_log::verifier_from_vkey(&text)
        .with_context(|| format!("{given} does not hold a verifier key"))?;
    Ok((v, "pinned"))
}

#[derive(Serialize)]
struct CheckpointOut {
    tree_size: u64,
    root_hex: String,
    root_base64: String,
    signed_at: Option<String>,
    verifier_key: String,
    trusted_key: &'static str,
    signature_verified: bool,
    note: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_to: Option<String>,
}

async fn checkpoint(
    client: &Client,
    refresh: bool,
    save: Option<&Path>,
    trust: &TrustArgs,
    json: bool,
) -> Result<()> {
    let (verifier, source) = verifier(client, trust).await?;
    let resp = client
        .audit_log()
        .get_checkpoint(client.request(pb::GetCheckpointRequest { refresh }))
        .await?
        .into_inner();
    let pb_checkpoint = resp
        .checkpoint
        .ok_or_else(|| fail("checkpoint", "response has no checkpoint", &[]))?;
    let signed = check_checkpoint(&pb_checkpoint, &verifier)
        .map_err(|e| failed("checkpoint signature", e, &[]))?;
    if let Some(path) = save {
        std::fs::write(path, &pb_checkpoint.note)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let out = CheckpointOut {
        tree_size: signed.size,
        root_hex: hex::encode(signed.root),
        root_base64: STANDARD.encode(signed.root),
        signed_at: pb_checkpoint.signed_at.as_ref().and_then(rfc3339_precise),
        verifier_key: verifier.to_vkey(),
        trusted_key: source,
        signature_verified: true,
        note: pb_checkpoint.note,
        saved_to: save.map(|p| p.display().to_string()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let lines = [
        ("tree_size", out.tree_size.to_string()),
        ("root_hex", out.root_hex.clone()),
        ("root_base64", out.root_base64.clone()),
        ("signed_at", out.signed_at.clone().unwrap_or("-".into())),
        (
            "verifier_key",
            format!("{} ({})", out.verifier_key, out.trusted_key),
        ),
        ("signature", "verified".to_string()),
    ];
    print_lines(&lines);
    if let Some(p) = &out.saved_to {
        println!("saved to {p}");
    }
    println!();
    print!("{}", out.note);
    Ok(())
}

#[derive(Serialize)]
struct ProofOut {
    index: u64,
    tree_size: u64,
    root_hex: String,
    leaf_hash_hex: String,
    erased: bool,
    entry: Option<DecisionEntry>,
    note: String,
    inclusion_verified: bool,
}

async fn proof(
    client: &Client,
    transaction: &str,
    tree_size: u64,
    trust: &TrustArgs,
    json: bool,
) -> Result<()> {
    let (verifier, _) = verifier(client, trust).await?;
    let inclusion = client
        .inclusion_proof(transaction, tree_size, &verifier)
        .await
        .map_err(|e| failed("inclusion proof", e, &[]))?;
    let out = ProofOut {
        index: inclusion.index,
        tree_size: inclusion.checkpoint.size,
        root_hex: hex::encode(inclusion.checkpoint.root),
        leaf_hash_hex: hex::encode(inclusion.leaf_hash),
        erased: inclusion.entry.is_none(),
        entry: inclusion.entry.clone(),
        note: inclusion.note.clone(),
        inclusion_verified: true,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("entry {} of tree size {}", out.index, out.tree_size);
    let mut lines = match &out.entry {
        Some(e) => entry_lines(e),
        None => vec![(
            "entry",
            "(details erased by retention; the leaf hash remains)".to_string(),
        )],
    };
    lines.push(("leaf_hash", out.leaf_hash_hex.clone()));
    lines.push(("root", out.root_hex.clone()));
    print_lines(&lines);
    println!("inclusion verified");
    Ok(())
}

/// The parts of a saved `ekyc verify --json` answer that are checked. The
/// attestation is the evidence; the other members are what a reader of
/// the file sees, so they must say what it says.
#[derive(Deserialize)]
struct SavedAnswer {
    transaction_id: String,
    decision: Option<String>,
    request_id: Option<String>,
    registry_version: Option<u64>,
    results: Option<Vec<SavedResult>>,
    attestation: SavedAttestation,
}

#[derive(Deserialize)]
struct SavedResult {
    field: String,
    result: String,
}

#[derive(Deserialize)]
struct SavedAttestation {
    key_id: String,
    payload_hex: String,
    signature_hex: String,
}

async fn verify(
    client: &Client,
    file: &Path,
    since: Option<&Path>,
    trust: &TrustArgs,
    json: bool,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut passed: Vec<CheckOut> = Vec::new();
    let pass = |passed: &mut Vec<CheckOut>, check: &'static str, detail: String| {
        if !json {
            println!("ok  {check}: {detail}");
        }
        passed.push(CheckOut { check, detail });
    };
    const FILE: &str = "answer file";
    let saved: SavedAnswer = serde_json::from_str(&text).map_err(|e| {
        fail(
            FILE,
            format!("not the output of `ekyc verify --json`: {e}"),
            &[],
        )
    })?;
    let att = &saved.attestation;
    let payload = hex::decode(&att.payload_hex)
        .map_err(|_| fail(FILE, "attestation.payload_hex is not hex", &[]))?;
    let signature = hex::decode(&att.signature_hex)
        .map_err(|_| fail(FILE, "attestation.signature_hex is not hex", &[]))?;

    const SIGNATURE: &str = "attestation signature";
    let key = client
        .attestation_key(&att.key_id)
        .await
        .map_err(|e| failed(SIGNATURE, e, &[]))?;
    let body = attestation::verify(&key, &payload, &signature).map_err(|e| {
        fail(
            SIGNATURE,
            format!("{e} under published key {}", att.key_id),
            &[],
        )
    })?;
    if body.key_id != att.key_id {
        return Err(fail(SIGNATURE, "key_id differs from the signed one", &[]));
    }
    pass(
        &mut passed,
        SIGNATURE,
        format!("signed by key {}", att.key_id),
    );

    if let Some(what) = file_disagrees(&saved, &body) {
        return Err(fail(
            FILE,
            format!("{what} differs from the signed attestation"),
            &passed,
        ));
    }
    pass(
        &mut passed,
        FILE,
        "agrees with its signed attestation".into(),
    );

    let (verifier, source) = verifier(client, trust).await?;
    const INCLUSION: &str = "inclusion proof";
    let inclusion = client
        .inclusion_proof(&body.transaction_id, 0, &verifier)
        .await
        .map_err(|e| failed(INCLUSION, e, &passed))?;
    pass(
        &mut passed,
        INCLUSION,
        format!(
            "entry {} is in the tree of size {} (checkpoint key {}, {source})",
            inclusion.index,
            inclusion.checkpoint.size,
            verifier.name()
        ),
    );

    const ENTRY: &str = "log entry";
    check_attestation_in_log(&body, &inclusion).map_err(|e| failed(ENTRY, e, &passed))?;
    pass(
        &mut passed,
        ENTRY,
        "records what the attestation says".into(),
    );

    if let Some(path) = since {
        let old = saved_checkpoint(path, &verifier).map_err(|e| fail(CONSISTENCY, e, &passed))?;
        client
            .check_log_extends(&old, &inclusion.checkpoint)
            .await
            .map_err(|e| failed(CONSISTENCY, e, &passed))?;
        pass(
            &mut passed,
            CONSISTENCY,
            format!(
                "the tree of size {} extends the saved one of size {}",
                inclusion.checkpoint.size, old.size
            ),
        );
    }

    if json {
        let out = serde_json::json!({
            "passed": true,
            "transaction_id": body.transaction_id,
            "index": inclusion.index,
            "tree_size": inclusion.checkpoint.size,
            "checks": passed,
            "note": inclusion.note,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("all checks passed");
    }
    Ok(())
}

/// The first member of a saved answer that says something else than its
/// signed attestation.
fn file_disagrees(
    saved: &SavedAnswer,
    body: &attestation::AttestationBody,
) -> Option<&'static str> {
    let decision = if body.decision { "YES" } else { "NO" };
    if saved.transaction_id != body.transaction_id {
        return Some("transaction_id");
    }
    if saved.decision.as_deref().is_some_and(|d| d != decision) {
        return Some("decision");
    }
    if saved
        .request_id
        .as_deref()
        .is_some_and(|r| r != body.request_id)
    {
        return Some("request_id");
    }
    if saved
        .registry_version
        .is_some_and(|v| v != body.registry_version)
    {
        return Some("registry_version");
    }
    if let Some(results) = &saved.results {
        let signed: Vec<(String, &str)> = body
            .results
            .iter()
            .map(|r| {
                (
                    field_name(i32::from(r.field.code())),
                    result_name(i32::from(r.result.code())),
                )
            })
            .collect();
        let shown: Vec<(String, &str)> = results
            .iter()
            .map(|r| (r.field.clone(), r.result.as_str()))
            .collect();
        if signed != shown {
            return Some("results");
        }
    }
    None
}

/// A checkpoint saved by `audit checkpoint --save` or `audit verify-admin
/// --save` (the signed note, or either command's `--json` output), opened
/// under `verifier`.
fn saved_checkpoint(path: &Path, verifier: &NoteVerifier) -> Result<Checkpoint, String> {
    Ok(saved_note(path, verifier)?.0)
}

/// Like [`saved_checkpoint`], with the signed note as saved.
fn saved_note(path: &Path, verifier: &NoteVerifier) -> Result<(Checkpoint, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let note = if text.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["note"].as_str().map(String::from))
            .ok_or_else(|| format!("{} has no signed note", path.display()))?
    } else {
        text
    };
    let signed = verifier
        .open(&note)
        .map_err(|e| format!("saved checkpoint {} does not verify: {e}", path.display()))?;
    Ok((signed, note))
}

/// Like [`failed`], without the "log check failed" of a
/// [`ClientError::Log`]: these checks are of the admin trail.
fn failed_admin(check: &'static str, e: ClientError, passed: &[CheckOut]) -> anyhow::Error {
    match e {
        ClientError::Log(e) => fail(check, e.to_string(), passed),
        e => failed(check, e, passed),
    }
}

const ADMIN_SIGNATURE: &str = "admin checkpoint signature";
const SEQUENCE: &str = "sequence numbers";
const CHAIN: &str = "chain hashes";
const SIGNED_HEAD: &str = "checkpoint";
const CONSISTENCY: &str = "consistency";

/// The `verify-admin` check an error of [`check_admin_trail`] fails.
fn trail_check(e: &ClientError) -> &'static str {
    match e {
        ClientError::Log(LogError::Note(_)) => ADMIN_SIGNATURE,
        ClientError::Log(
            LogError::TrailSequence { .. }
            | LogError::TrailGap { .. }
            | LogError::TrailDuplicate { .. },
        ) => SEQUENCE,
        ClientError::Log(LogError::TrailMalformed { .. } | LogError::TrailAltered { .. }) => CHAIN,
        _ => SIGNED_HEAD,
    }
}

/// `ekyc audit verify-admin`.
async fn verify_admin(
    client: &Client,
    since: Option<&Path>,
    save: Option<&Path>,
    trust: &TrustArgs,
    json: bool,
) -> Result<()> {
    let mut passed: Vec<CheckOut> = Vec::new();
    let pass = |passed: &mut Vec<CheckOut>, check: &'static str, detail: String| {
        if !json {
            println!("ok  {check}: {detail}");
        }
        passed.push(CheckOut { check, detail });
    };
    let (log_verifier, source) = verifier(client, trust).await?;
    // The decision log's key, as for every other `audit` command; the
    // admin trail's own verifier key is accepted as well.
    let verifier = if log_verifier.name().ends_with(ADMIN_AUDIT_SUFFIX) {
        log_verifier
    } else {
        admin_verifier(&log_verifier).map_err(|e| failed_admin("checkpoint key", e, &[]))?
    };
    // Read before anything is saved: --since and --save may be one file.
    let old = since.map(|path| saved_checkpoint(path, &verifier));

    // A checkpoint signed now. The service refuses to sign one over a
    // trail shorter than (or rewritten under) its newest checkpoint, with
    // DATA_LOSS (LOG_INCONSISTENT): then the newest it kept is checked
    // instead, so that the failure is named from the signed note rather
    // than taken on its word.
    let (pb_checkpoint, signed, unsigned) = match client.admin_checkpoint(true, &verifier).await {
        Err(ClientError::Status(status)) if status.code() == tonic::Code::DataLoss => {
            let why = format!("{}: {}", status.code(), status.message());
            if !json {
                eprintln!(
                    "the service could not sign a checkpoint now ({why}); \
                     checking its newest signed one"
                );
            }
            let (c, signed) = client
                .admin_checkpoint(false, &verifier)
                .await
                .map_err(|e| failed_admin(ADMIN_SIGNATURE, e, &passed))?;
            (c, signed, Some(why))
        }
        got => {
            let (c, signed) = got.map_err(|e| failed_admin(ADMIN_SIGNATURE, e, &passed))?;
            (c, signed, None)
        }
    };
    pass(
        &mut passed,
        ADMIN_SIGNATURE,
        format!(
            "signs {} entries (key {}, {source}){}",
            signed.size,
            verifier.name(),
            match &unsigned {
                Some(why) => format!(
                    "; the newest kept checkpoint, as the service could not sign one now ({why})"
                ),
                None => String::new(),
            }
        ),
    );

    let events = client
        .admin_audit_events()
        .await
        .map_err(|e| failed_admin("admin audit trail", e, &passed))?;
    let trail = check_admin_trail(&events, &pb_checkpoint.note, &verifier)
        .map_err(|e| failed_admin(trail_check(&e), e, &passed))?;
    let n = trail.len();
    pass(
        &mut passed,
        SEQUENCE,
        match n {
            0 => "the trail is empty".to_string(),
            n => format!("entries 1 to {n}, none missing or listed twice"),
        },
    );
    pass(
        &mut passed,
        CHAIN,
        format!("all {n} recomputed and equal to the listed ones"),
    );
    let appended = n.saturating_sub(trail.checkpoint.size);
    pass(
        &mut passed,
        SIGNED_HEAD,
        match trail.checkpoint.size {
            0 => format!("signs the empty trail; {appended} entries appended since"),
            size => format!(
                "the chain hash of entry {size} is the signed root; \
                 {appended} entries appended since"
            ),
        },
    );

    if let (Some(old), Some(path)) = (old, since) {
        let old = old.map_err(|e| fail(CONSISTENCY, e, &passed))?;
        trail
            .check_extends(&old)
            .map_err(|e| failed_admin(CONSISTENCY, e, &passed))?;
        pass(
            &mut passed,
            CONSISTENCY,
            format!(
                "the trail still holds the saved checkpoint of size {} ({})",
                old.size,
                path.display()
            ),
        );
    }

    if let Some(path) = save {
        std::fs::write(path, &trail.note)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        let out = serde_json::json!({
            "passed": true,
            "entries": n,
            "tree_size": trail.checkpoint.size,
            "root_hex": hex::encode(trail.checkpoint.root),
            "verifier_key": verifier.to_vkey(),
            "trusted_key": source,
            "signed_now": unsigned.is_none(),
            "checks": passed,
            "note": trail.note,
            "saved_to": save.map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if let Some(path) = save {
            println!("saved the checkpoint to {}", path.display());
        }
        println!("all checks passed");
    }
    Ok(())
}

/// The bundle of docs/decision-log.md, section 5, in its member order.
#[derive(Serialize)]
struct Bundle {
    vkey: String,
    /// Signed notes, oldest (smallest) first.
    checkpoints: Vec<String>,
    consistency: Vec<ConsistencyItem>,
    inclusion: Vec<InclusionItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entries: Option<EntriesRange>,
}

#[derive(Serialize)]
struct ConsistencyItem {
    first: u64,
    second: u64,
    proof: Vec<String>,
}

#[derive(Serialize)]
struct InclusionItem {
    index: u64,
    tree_size: u64,
    /// The entry's bytes; `None` once erased (then `leaf_hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leaf_hash: Option<String>,
    proof: Vec<String>,
}

#[derive(Serialize)]
struct EntriesRange {
    start: u64,
    /// Each entry's bytes, `None` (null) when erased.
    items: Vec<Option<String>>,
    leaf_hashes: Vec<String>,
}

/// What `audit bundle` is asked to include beside the newest checkpoint.
struct BundleWanted<'a> {
    since: &'a [PathBuf],
    transactions: &'a [String],
    entries: bool,
}

/// Most entries `ListLogEntries` lists at a time.
const LIST_LIMIT: u32 = 1000;

const BUNDLE_SIGNATURE: &str = "checkpoint signature";
const BUNDLE_SAVED: &str = "saved checkpoint";
const NOT_WRITTEN: &str = "no bundle written";

fn b64_all(hashes: &[Vec<u8>]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

/// `ekyc audit bundle`: fetches what `scripts/verify_log.py` checks and
/// writes it, checking only that every checkpoint in it is signed by the
/// trusted key (the proofs and entries are the script's to judge).
async fn bundle(
    client: &Client,
    want: BundleWanted<'_>,
    out: Option<&Path>,
    trust: &TrustArgs,
    json: bool,
) -> Result<()> {
    let (verifier, source) = verifier(client, trust).await?;

    // The saved checkpoints, opened under the key (which also makes each a
    // checkpoint of this log: its origin must be the key's name).
    let mut checkpoints: Vec<(Checkpoint, String)> = Vec::new();
    for path in want.since {
        let saved = saved_note(path, &verifier)
            .map_err(|e| fail(BUNDLE_SAVED, format!("{e}; {NOT_WRITTEN}"), &[]))?;
        checkpoints.push(saved);
    }

    // The newest checkpoint: one signed now for the agency's auditors and
    // admins; any other key gets the newest kept one.
    let request = |refresh| client.request(pb::GetCheckpointRequest { refresh });
    let resp = match client.audit_log().get_checkpoint(request(true)).await {
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            client.audit_log().get_checkpoint(request(false)).await?
        }
        got => got?,
    }
    .into_inner();
    let pb_newest = resp.checkpoint.ok_or_else(|| {
        fail(
            BUNDLE_SIGNATURE,
            format!("response has no checkpoint; {NOT_WRITTEN}"),
            &[],
        )
    })?;
    let newest = check_checkpoint(&pb_newest, &verifier).map_err(|e| {
        fail(
            BUNDLE_SIGNATURE,
            format!("the newest checkpoint: {e}; {NOT_WRITTEN}"),
            &[],
        )
    })?;
    let size = newest.size;
    checkpoints.push((newest, pb_newest.note));

    // Oldest first; the sort is stable, so equal sizes stay in the order
    // given (the newest last). A note given twice is listed once.
    let mut seen = std::collections::HashSet::new();
    checkpoints.retain(|(_, note)| seen.insert(note.clone()));
    checkpoints.sort_by_key(|(c, _)| c.size);

    let mut consistency = Vec::new();
    for pair in checkpoints.windows(2) {
        let (first, second) = (pair[0].0.size, pair[1].0.size);
        if first == second {
            continue;
        }
        if second > size {
            // A saved checkpoint signs more entries than the newest one:
            // the log lost entries, and the service has no proof to give.
            // The bundle shows it (the script fails it).
            eprintln!(
                "warning: a saved checkpoint signs {second} entries, the newest only {size}; \
                 no consistency proof from {first} to {second} (the bundle will not verify)"
            );
            continue;
        }
        // From the empty tree the proof is empty (docs/decision-log.md,
        // section 3); the service asks for a first size of at least 1.
        let proof = if first == 0 {
            Vec::new()
        } else {
            client
                .audit_log()
                .get_consistency_proof(
                    client.request(pb::GetConsistencyProofRequest { first, second }),
                )
                .await?
                .into_inner()
                .proof
        };
        consistency.push(ConsistencyItem {
            first,
            second,
            proof: b64_all(&proof),
        });
    }

    let mut inclusion = Vec::new();
    for tx in want.transactions {
        let resp = client
            .audit_log()
            .get_inclusion_proof(client.request(pb::GetInclusionProofRequest {
                transaction_id: tx.clone(),
                tree_size: size,
            }))
            .await?
            .into_inner();
        // The proof's checkpoint is not in the bundle (the newest of that
        // size is), but it was fetched, so it must verify too.
        if let Some(c) = &resp.checkpoint {
            check_checkpoint(c, &verifier).map_err(|e| {
                fail(
                    BUNDLE_SIGNATURE,
                    format!("the checkpoint of the proof of {tx}: {e}; {NOT_WRITTEN}"),
                    &[],
                )
            })?;
        }
        let entry = resp.entry.ok_or_else(|| {
            fail(
                "inclusion proof",
                format!("the proof of {tx} has no entry; {NOT_WRITTEN}"),
                &[],
            )
        })?;
        let (bytes, leaf) = if entry.erased {
            (None, Some(STANDARD.encode(&entry.leaf_hash)))
        } else {
            (Some(STANDARD.encode(&entry.entry)), None)
        };
        inclusion.push(InclusionItem {
            index: entry.index,
            tree_size: resp.tree_size,
            entry: bytes,
            leaf_hash: leaf,
            proof: b64_all(&resp.proof),
        });
    }

    let entries = if want.entries {
        let mut range = EntriesRange {
            start: 0,
            items: Vec::new(),
            leaf_hashes: Vec::new(),
        };
        while (range.items.len() as u64) < size {
            let start = range.items.len() as u64;
            let limit = u32::try_from(size - start).map_or(LIST_LIMIT, |n| n.min(LIST_LIMIT));
            let page = client
                .audit_log()
                .list_log_entries(client.request(pb::ListLogEntriesRequest { start, limit }))
                .await?
                .into_inner();
            if page.entries.is_empty() {
                // Fewer entries than the checkpoint signs: the bundle shows
                // it (the script fails it).
                eprintln!(
                    "warning: the service listed {start} entries, the newest checkpoint signs {size} \
                     (the bundle will not verify)"
                );
                break;
            }
            for e in page.entries.into_iter().take((size - start) as usize) {
                range
                    .items
                    .push((!e.erased).then(|| STANDARD.encode(&e.entry)));
                range.leaf_hashes.push(STANDARD.encode(&e.leaf_hash));
            }
        }
        Some(range)
    } else {
        None
    };

    let sizes: Vec<u64> = checkpoints.iter().map(|(c, _)| c.size).collect();
    let bundle = Bundle {
        vkey: verifier.to_vkey(),
        checkpoints: checkpoints.into_iter().map(|(_, note)| note).collect(),
        consistency,
        inclusion,
        entries,
    };
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    let Some(path) = out else {
        print!("{text}");
        return Ok(());
    };
    std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let listed = bundle.entries.as_ref().map(|e| e.items.len());
    let erased = bundle
        .entries
        .as_ref()
        .map_or(0, |e| e.items.iter().filter(|i| i.is_none()).count());
    if json {
        let out = serde_json::json!({
            "out": path.display().to_string(),
            "checkpoint_sizes": sizes,
            "consistency_proofs": bundle.consistency.len(),
            "inclusion_proofs": bundle.inclusion.len(),
            "entries": listed,
            "erased_entries": erased,
            "verifier_key": bundle.vkey,
            "trusted_key": source,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
    println!("wrote {}:", path.display());
    let lines = [
        (
            "checkpoints",
            format!("sizes {}, signatures verified", sizes.join(", ")),
        ),
        (
            "consistency",
            format!("{} proofs", bundle.consistency.len()),
        ),
        ("inclusion", format!("{} proofs", bundle.inclusion.len())),
        (
            "entries",
            match listed {
                Some(0) => "none (the log is empty)".to_string(),
                Some(n) => format!("0 to {} ({erased} erased)", n - 1),
                None => "left out".to_string(),
            },
        ),
        ("verifier_key", format!("{} ({source})", bundle.vkey)),
    ];
    print_lines(&lines);
    println!(
        "check it independently: python3 scripts/verify_log.py {}",
        path.display()
    );
    Ok(())
}

#[derive(Serialize)]
struct EntryOut {
    index: u64,
    erased: bool,
    leaf_hash_hex: String,
    /// The exact bytes, which the leaf hash covers.
    entry_base64: String,
    entry: Option<DecisionEntry>,
}

async fn entries(client: &Client, start: u64, limit: Option<u32>, json: bool) -> Result<()> {
    let resp = client
        .audit_log()
        .list_log_entries(client.request(pb::ListLogEntriesRequest {
            start,
            limit: limit.unwrap_or(0),
        }))
        .await?
        .into_inner();
    let mut out = Vec::with_capacity(resp.entries.len());
    for e in &resp.entries {
        let entry = check_listed_entry(e).map_err(|err| failed("leaf hash", err, &[]))?;
        out.push(EntryOut {
            index: e.index,
            erased: e.erased,
            leaf_hash_hex: hex::encode(&e.leaf_hash),
            entry_base64: STANDARD.encode(&e.entry),
            entry,
        });
    }
    let next = out.last().map_or(start, |e| e.index + 1);
    if json {
        let out = serde_json::json!({
            "tree_size": resp.tree_size,
            "entries": out,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "log size {}; {} entries from index {start}",
            resp.tree_size,
            out.len()
        );
        print_table(
            &[
                "INDEX",
                "TIME",
                "TENANT",
                "METHOD",
                "PURPOSE",
                "DECISION",
                "FIELDS",
                "TRANSACTION",
            ],
            out.iter().map(|e| match &e.entry {
                Some(d) => vec![
                    e.index.to_string(),
                    stamp_ms(d.time_ms).1,
                    d.tenant.clone(),
                    d.method.clone(),
                    d.purpose.clone(),
                    d.decision.clone(),
                    fields_of(d),
                    d.transaction.clone(),
                ],
                None => {
                    let mut row = vec![e.index.to_string(), "(erased)".into()];
                    row.resize(8, "-".into());
                    row
                }
            }),
        );
    }
    if next < resp.tree_size && !out.is_empty() {
        eprintln!("more: pass --start {next}");
    }
    Ok(())
}

#[derive(Serialize)]
struct AccessOut {
    date_utc: String,
    time: String,
    tenant_name: String,
    tenant_id: String,
    purpose: String,
    method: String,
    decision: String,
    fields: Vec<String>,
    transaction_id: String,
    log_index: u64,
}

/// What the history's header says about what the log holds.
const NEVER_RECORDED: &str = "the claimed values (name, date of birth, ...) are never recorded: \
                              only who asked, when, for what purpose, which fields and the answer";

/// `ekyc subjects history`.
pub(crate) async fn subjects(client: &Client, command: SubjectsCommand, json: bool) -> Result<()> {
    let SubjectsCommand::History { id, reason } = command;
    let id_number = if id == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the ID number from standard input")?;
        line.trim().to_string()
    } else {
        id
    };
    let resp = client
        .audit_log()
        .list_subject_accesses(client.request(pb::ListSubjectAccessesRequest { id_number, reason }))
        .await?
        .into_inner();
    let accesses: Vec<AccessOut> = resp
        .accesses
        .iter()
        .map(|a| {
            let (date_utc, time) = a
                .time
                .as_ref()
                .map_or_else(|| ("-".into(), "-".into()), stamp);
            AccessOut {
                date_utc,
                time,
                tenant_name: a.tenant_name.clone(),
                tenant_id: a.tenant_id.clone(),
                purpose: a.purpose_code.clone(),
                method: a.method.clone(),
                decision: a.decision.clone(),
                fields: a.fields.clone(),
                transaction_id: a.transaction_id.clone(),
                log_index: a.log_index,
            }
        })
        .collect();
    if json {
        let out = serde_json::json!({
            "count": accesses.len(),
            "note": NEVER_RECORDED,
            "accesses": accesses,
            "lookup_log_index": resp.lookup_log_index,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let count = match accesses.len() {
        1 => "1 decision".to_string(),
        n => format!("{n} decisions"),
    };
    println!("{count} about this citizen in the decision log; {NEVER_RECORDED}.");
    if !accesses.is_empty() {
        print_table(
            &[
                "DATE (UTC)",
                "TIME (RFC 3339)",
                "TENANT",
                "TENANT_ID",
                "PURPOSE",
                "METHOD",
                "DECISION",
                "FIELDS ASKED",
                "TRANSACTION",
            ],
            accesses.iter().map(|a| {
                vec![
                    a.date_utc.clone(),
                    a.time.clone(),
                    or_dash(&a.tenant_name),
                    a.tenant_id.clone(),
                    a.purpose.clone(),
                    a.method.clone(),
                    a.decision.clone(),
                    or_dash(&a.fields.join(",")),
                    a.transaction_id.clone(),
                ]
            }),
        );
    }
    println!(
        "this lookup is itself recorded as log entry {}",
        resp.lookup_log_index
    );
    Ok(())
}

fn entry_lines(e: &DecisionEntry) -> Vec<(&'static str, String)> {
    let (date, time) = stamp_ms(e.time_ms);
    vec![
        ("time", format!("{time} ({date})")),
        ("tenant", e.tenant.clone()),
        ("api_key", e.api_key.clone()),
        ("method", e.method.clone()),
        ("purpose", e.purpose.clone()),
        ("consent", e.consent.clone()),
        ("transaction", e.transaction.clone()),
        ("request", or_dash(&e.request)),
        ("registry_version", e.registry_version.to_string()),
        ("fields", or_dash(&fields_of(e))),
        ("decision", e.decision.clone()),
        ("subject", e.subject.clone()),
    ]
}

fn fields_of(e: &DecisionEntry) -> String {
    e.fields
        .iter()
        .map(|(f, r)| format!("{f}={r}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_lines(lines: &[(&str, String)]) {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        println!("{:<width$} {v}", format!("{k}:"));
    }
}

/// A time as a clerk reads it (`2026-01-01 09:30:00 UTC`) and as RFC 3339
/// with its milliseconds, from Unix milliseconds.
fn stamp_ms(ms: i64) -> (String, String) {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => (
            t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            t.to_string(),
        ),
        Err(_) => (format!("{ms} ms"), format!("{ms} ms")),
    }
}

fn stamp(t: &prost_types::Timestamp) -> (String, String) {
    let ms = t
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000));
    stamp_ms(ms)
}

fn rfc3339_precise(t: &prost_types::Timestamp) -> Option<String> {
    Some(stamp(t).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_the_same_in_both_forms() {
        assert_eq!(
            stamp_ms(1_767_260_096_789),
            (
                "2026-01-01 09:34:56 UTC".to_string(),
                "2026-01-01T09:34:56.789Z".to_string()
            )
        );
        assert_eq!(stamp_ms(0).1, "1970-01-01T00:00:00Z");
    }
}
