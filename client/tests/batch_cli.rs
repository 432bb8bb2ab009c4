//! `ekyc verify-batch` against a real server: one result line per input
//! row with the outcome a unary Verify gives, a run killed at a random
//! point and run again ending with every line once and every answer
//! billed once, no personal data where `--no-echo` promises none, the
//! summary's counts, and a revoked key stopping a run that a new key
//! then finishes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use ekyc_client::{Client, v1 as pb};
use ekyc_service::config::BatchConfig;
use ekyc_service::store::{Limits, TenantPolicy};
use ekyc_service::test_support::{TestOptions, TestServer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// The seed the test server's registry is generated with.
const SEED: u64 = 42;

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Yes,
    No,
    /// An error line with this code and reason.
    Error(&'static str, &'static str),
}

/// One line of an input file.
enum Entry {
    Row {
        values: Vec<(&'static str, String)>,
        expect: Expect,
    },
    /// A line the reader refuses, as written.
    Malformed(String),
}

impl Entry {
    fn expect(&self) -> Expect {
        match self {
            Entry::Row { expect, .. } => expect.clone(),
            Entry::Malformed(_) => Expect::Error("INVALID_ARGUMENT", "MALFORMED_ROW"),
        }
    }

    fn with(mut self, column: &'static str, value: &str) -> Entry {
        if let Entry::Row { values, .. } = &mut self {
            values.push((column, value.to_string()));
        }
        self
    }

    /// The personal values of the row: what must not leak.
    fn personal(&self) -> Vec<String> {
        match self {
            Entry::Row { values, .. } => values
                .iter()
                .filter(|(c, _)| ["id_number", "full_name", "date_of_birth"].contains(c))
                .map(|(_, v)| v.clone())
                .collect(),
            Entry::Malformed(_) => Vec::new(),
        }
    }
}

fn claims_of(c: &ekyc_synth::Citizen, dob: &str, expect: Expect) -> Entry {
    Entry::Row {
        values: vec![
            ("id_number", c.id_number.clone()),
            ("full_name", c.full_name.clone()),
            ("date_of_birth", dob.to_string()),
        ],
        expect,
    }
}

/// Registered citizen `i`'s own name and birth date.
fn yes(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, i);
    claims_of(&c, &c.date_of_birth.clone(), Expect::Yes)
}

/// Citizen `i` with a birth date that is not theirs (one unsuccessful
/// answer for the subject guard, which allows five a day).
fn no(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, i);
    let wrong = if c.date_of_birth == "1931-01-01" {
        "1932-02-02"
    } else {
        "1931-01-01"
    };
    claims_of(&c, wrong, Expect::No)
}

/// Someone the registry does not hold.
fn unknown(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, 100_000 + i);
    claims_of(&c, &c.date_of_birth.clone(), Expect::No)
}

/// A 30 February: refused by validation, never hashed or billed.
fn impossible_date(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, i);
    claims_of(
        &c,
        "1990-02-30",
        Expect::Error("INVALID_ARGUMENT", "INVALID_REQUEST"),
    )
}

fn future_date(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, i);
    claims_of(
        &c,
        "2099-01-01",
        Expect::Error("OUT_OF_RANGE", "VALUE_OUT_OF_RANGE"),
    )
}

/// An ID number of ten digits: neither a citizen ID nor a legacy one.
fn bad_id(i: u64) -> Entry {
    let c = ekyc_synth::citizen(SEED, i);
    Entry::Row {
        values: vec![
            ("id_number", c.id_number[..10].to_string()),
            ("full_name", c.full_name.clone()),
        ],
        expect: Expect::Error("INVALID_ARGUMENT", "INVALID_REQUEST"),
    }
}

/// A mixed file: matches, mismatches, unknown subjects, invalid values
/// and lines the reader refuses (`malformed`).
fn mixed(malformed: &[&str]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for i in 0..150u64 {
        entries.push(match i {
            0..=89 => yes(i % 50),
            90..=124 => no(i - 90),
            125..=134 => unknown(i),
            135..=139 => impossible_date(i % 50),
            140..=142 => bad_id(i % 50),
            _ => future_date(i % 50),
        });
        if i % 50 == 25 {
            let bad = malformed[(i / 50) as usize % malformed.len()];
            entries.push(Entry::Malformed(bad.to_string()));
        }
    }
    entries
}

const CSV_COLUMNS: [&str; 6] = [
    "id_number",
    "full_name",
    "date_of_birth",
    "request_id",
    "purpose_code",
    "consent_reference",
];

/// The file's text, and the line of each entry.
fn csv_text(entries: &[Entry], columns: &[&str]) -> (String, Vec<u64>) {
    let mut text = columns.join(",") + "\n";
    let mut lines = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        lines.push(n as u64 + 2);
        match e {
            Entry::Row { values, .. } => {
                let cells: Vec<&str> = columns
                    .iter()
                    .map(|c| {
                        values
                            .iter()
                            .find(|(k, _)| k == c)
                            .map_or("", |(_, v)| v.as_str())
                    })
                    .collect();
                assert!(cells.iter().all(|c| !c.contains([',', '"', '\n'])));
                text += &cells.join(",");
            }
            Entry::Malformed(line) => text += line,
        }
        text.push('\n');
    }
    (text, lines)
}

fn jsonl_text(entries: &[Entry]) -> (String, Vec<u64>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        lines.push(n as u64 + 1);
        match e {
            Entry::Row { values, .. } => {
                let object: serde_json::Map<String, Value> = values
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                    .collect();
                text += &Value::Object(object).to_string();
            }
            Entry::Malformed(line) => text += line,
        }
        text.push('\n');
    }
    (text, lines)
}

/// The request id the CLI gives a row without one.
fn derived_id(file_name: &str, line: u64) -> String {
    let tag = hex::encode(Sha256::digest(file_name.as_bytes()));
    format!("b-{}-{line}", &tag[..16])
}

fn key_file(dir: &Path, name: &str, key: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key).expect("key file");
    path
}

fn ekyc_command(endpoint: &str, key_file: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ekyc"));
    cmd.env_remove("EKYC_API_KEY")
        .env_remove("EKYC_ENDPOINT")
        .args(["--endpoint", endpoint, "--api-key-file"])
        .arg(key_file)
        .arg("verify-batch")
        .args(args)
        .kill_on_drop(true);
    cmd
}

async fn ekyc(endpoint: &str, key_file: &Path, args: &[&str]) -> Output {
    ekyc_command(endpoint, key_file, args)
        .output()
        .await
        .expect("run ekyc")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The results file, each line parsed: every line must be whole.
fn results(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("results");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a partial last line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The results by input line, each line once.
fn by_line(results: &[Value]) -> BTreeMap<u64, &Value> {
    let mut lines = BTreeMap::new();
    for r in results {
        let line = r["line"].as_u64().expect("line");
        assert!(lines.insert(line, r).is_none(), "line {line} twice");
    }
    lines
}

/// `YES`, `NO` or `CODE REASON`, of an expectation or of a result line.
fn expected(e: &Expect) -> String {
    match e {
        Expect::Yes => "YES".into(),
        Expect::No => "NO".into(),
        Expect::Error(code, reason) => format!("{code} {reason}"),
    }
}

fn outcome(r: &Value) -> String {
    match r["decision"].as_str() {
        Some(decision) => decision.to_string(),
        None => format!(
            "{} {}",
            r["error"]["code"].as_str().unwrap_or("?"),
            r["error"]["reason"].as_str().unwrap_or("?")
        ),
    }
}

/// Checks that `results` hold exactly one line per entry, each with the
/// expected outcome; returns them by line.
fn check<'r>(
    entries: &[Entry],
    lines: &[u64],
    results: &'r [Value],
    echo: bool,
) -> BTreeMap<u64, &'r Value> {
    let got = by_line(results);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        lines.to_vec(),
        "one line per input row"
    );
    for (e, line) in entries.iter().zip(lines) {
        let r = got[line];
        assert_eq!(outcome(r), expected(&e.expect()), "line {line}: {r}");
        match (e, &e.expect()) {
            (Entry::Malformed(_), _) => {
                assert!(r["request_id"].is_null(), "not sent: {r}");
                assert!(r.get("claims").is_none(), "{r}");
            }
            (Entry::Row { values, .. }, expect) => {
                if *expect == Expect::Yes {
                    let fields = r["results"].as_array().expect("results");
                    assert!(!fields.is_empty());
                    assert!(fields.iter().all(|f| f["result"] == "MATCH"), "{r}");
                }
                if matches!(expect, Expect::Yes | Expect::No) {
                    assert!(!r["transaction_id"].as_str().unwrap_or("").is_empty());
                    let att = &r["attestation"];
                    assert!(att["payload_hex"].as_str().is_some_and(|h| h.len() > 64));
                    assert!(
                        att["signature_hex"]
                            .as_str()
                            .is_some_and(|h| h.len() == 128)
                    );
                }
                if *expect == Expect::Error("INVALID_ARGUMENT", "INVALID_REQUEST") {
                    let violations = r["error"]["field_violations"]
                        .as_array()
                        .expect("violations");
                    assert!(!violations.is_empty(), "{r}");
                }
                if echo {
                    let claims: BTreeMap<&str, &str> = values
                        .iter()
                        .filter(|(c, v)| !v.is_empty() && !CSV_COLUMNS[3..].contains(c))
                        .map(|(c, v)| (*c, v.as_str()))
                        .collect();
                    let echoed: BTreeMap<&str, &str> = r["claims"]
                        .as_object()
                        .expect("claims echoed")
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str().expect("string")))
                        .collect();
                    assert_eq!(echoed, claims, "line {line}");
                } else {
                    assert!(r.get("claims").is_none(), "{r}");
                }
            }
        }
    }
    got
}

/// The request ids billed to `tenant`, each checked to be billed once.
async fn billed(server: &TestServer, tenant: &str) -> HashSet<String> {
    let events = server
        .app
        .ledger
        .events(&server.tenant_id(tenant).await, 0, i64::MAX)
        .await
        .expect("events");
    let ids: HashSet<String> = events.iter().map(|e| e.request_id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "no request id billed twice");
    ids
}

/// The request ids of the lines answered YES or NO.
fn answered(results: &[Value]) -> HashSet<String> {
    results
        .iter()
        .filter(|r| r.get("decision").is_some())
        .map(|r| r["request_id"].as_str().expect("request id").to_string())
        .collect()
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary")).expect("json")
}

/// What the summary should count for `entries` written in full.
fn expected_counts(entries: &[Entry]) -> (u64, u64, BTreeMap<String, u64>) {
    let (mut yes, mut no, mut errors) = (0, 0, BTreeMap::new());
    for e in entries {
        match e.expect() {
            Expect::Yes => yes += 1,
            Expect::No => no += 1,
            Expect::Error(_, reason) => *errors.entry(reason.to_string()).or_insert(0) += 1,
        }
    }
    (yes, no, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_file_gets_one_line_per_row_with_the_unary_outcomes() {
    let server = TestServer::start(TestOptions::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "key", &server.api_key);
    let endpoint = server.endpoint();

    // CSV without a request_id column: ids derived from name and line.
    let csv_entries = mixed(&["a,b,c,d,e,f,g", "one-column-only"]);
    let (text, csv_lines) = csv_text(&csv_entries, &CSV_COLUMNS[..3]);
    let csv_in = dir.path().join("mixed.csv");
    std::fs::write(&csv_in, text).expect("write");
    let csv_out = dir.path().join("mixed-results.jsonl");
    let run = ekyc(
        &endpoint,
        &key,
        &[
            "--in",
            csv_in.to_str().expect("path"),
            "--out",
            csv_out.to_str().expect("path"),
            "--no-progress",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let csv_results = results(&csv_out);
    let got = check(&csv_entries, &csv_lines, &csv_results, true);
    for (line, r) in &got {
        if r.get("decision").is_some() || r["error"]["reason"] != "MALFORMED_ROW" {
            assert_eq!(r["request_id"], derived_id("mixed.csv", *line), "{r}");
        }
    }
    // An impossible date names its field, as a unary Verify does.
    let impossible = got
        .values()
        .find(|r| r["error"]["field_violations"][0]["reason"] == "IMPOSSIBLE_DATE")
        .expect("an impossible date");
    assert_eq!(
        impossible["error"]["field_violations"][0]["field"],
        "claims.date_of_birth"
    );

    // JSON Lines with the file's own request ids (most rows), purposes
    // and consent references, and request ids used twice: the same
    // request is answered again alike, a different one is refused.
    let mut jsonl_entries: Vec<Entry> = mixed(&["not json", "{\"id_number\":7}"])
        .into_iter()
        .enumerate()
        .map(|(n, e)| {
            if n % 10 == 3 {
                e
            } else {
                e.with("request_id", &format!("j-{n}"))
            }
        })
        .collect();
    jsonl_entries.push(yes(1).with("purpose_code", "KYC_REFRESH"));
    jsonl_entries.push(yes(2).with("consent_reference", "consent-2026-001"));
    jsonl_entries.push(yes(3).with("request_id", "dup-same"));
    jsonl_entries.push(yes(3).with("request_id", "dup-same"));
    jsonl_entries.push(yes(4).with("request_id", "dup-diff"));
    let Entry::Row { values, .. } = yes(5).with("request_id", "dup-diff") else {
        unreachable!()
    };
    jsonl_entries.push(Entry::Row {
        values,
        expect: Expect::Error("ALREADY_EXISTS", "REQUEST_ID_REUSED"),
    });
    jsonl_entries.push(Entry::Malformed(
        "{\"id_number\":\"001085000001\",\"note\":\"x\"}".into(),
    ));
    let (text, jsonl_lines) = jsonl_text(&jsonl_entries);
    let jsonl_in = dir.path().join("mixed.jsonl");
    std::fs::write(&jsonl_in, text).expect("write");
    let jsonl_out = dir.path().join("mixed-jsonl-results.jsonl");
    let run = ekyc(
        &endpoint,
        &key,
        &[
            "--in",
            jsonl_in.to_str().expect("path"),
            "--out",
            jsonl_out.to_str().expect("path"),
            "--no-progress",
            "--in-flight",
            "16",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let jsonl_results = results(&jsonl_out);
    let got = check(&jsonl_entries, &jsonl_lines, &jsonl_results, true);
    for ((n, e), line) in jsonl_entries.iter().enumerate().zip(&jsonl_lines) {
        let r = got[line];
        match e {
            Entry::Row { values, .. } => {
                let own = values.iter().find(|(c, _)| *c == "request_id");
                let want = own.map_or_else(|| derived_id("mixed.jsonl", *line), |(_, v)| v.clone());
                assert_eq!(r["request_id"], want, "entry {n}");
            }
            Entry::Malformed(_) => {}
        }
    }
    let same: Vec<&&Value> = got
        .values()
        .filter(|r| r["request_id"] == "dup-same")
        .collect();
    assert_eq!(same.len(), 2);
    assert_eq!(
        same[0]["transaction_id"], same[1]["transaction_id"],
        "a replay"
    );

    // Every answer billed once, no refusal billed.
    let billed = billed(&server, "test-bank").await;
    let mut answered_ids = answered(&csv_results);
    answered_ids.extend(answered(&jsonl_results));
    assert_eq!(billed, answered_ids);
    server.stop().await;
}

/// A small xorshift, seeded from the clock and printed, so a failure can
/// be replayed with the same kill points.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("BATCH_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("kill points from BATCH_KILL_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_with_every_line_once_and_each_answer_billed_once() {
    // Streams of one second, so a run also meets their ends and resends.
    let server = TestServer::start(TestOptions {
        batch: BatchConfig {
            max_stream_secs: 1,
            ..BatchConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    // Paced by the rate (the server waits items out), so a run lasts long
    // enough to be killed in the middle.
    let tenant_key = server
        .tenant(
            "resume-bank",
            TenantPolicy {
                limits: Limits {
                    requests_per_second: 150,
                    burst: 10,
                    ..Limits::default()
                },
                ..TenantPolicy::default()
            },
        )
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "key", &tenant_key);
    let endpoint = server.endpoint();
    let mut entries = Vec::new();
    for i in 0..240u64 {
        entries.push(match i % 8 {
            3 => no(i / 8),
            7 if i % 32 == 7 => impossible_date(i % 50),
            _ => yes(i % 50),
        });
        if i == 100 {
            entries.push(Entry::Malformed("not json".into()));
        }
    }
    let (text, lines) = jsonl_text(&entries);
    let input = dir.path().join("resume.jsonl");
    std::fs::write(&input, text).expect("write");
    let out = dir.path().join("resume-results.jsonl");
    let summary_path = dir.path().join("summary.json");
    let args = [
        "--in",
        input.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
        "--no-progress",
        "--in-flight",
        "32",
        "--summary-json",
        summary_path.to_str().expect("path"),
    ];

    let mut rng = Rng::new();
    let mut kills = 0;
    for _ in 0..2 {
        let target = complete_lines(&out) + 1 + rng.below(100) as usize;
        let mut child = ekyc_command(&endpoint, &key, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if complete_lines(&out) >= target {
                child.start_kill().expect("SIGKILL");
                child.wait().await.expect("reaped");
                kills += 1;
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "run stuck");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(kills > 0, "the run ended before any kill");
    let before = by_line(&{
        // What a resume starts from: the whole lines written so far.
        let bytes = std::fs::read(&out).expect("results");
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        String::from_utf8(bytes[..whole].to_vec())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("whole lines parse"))
            .collect::<Vec<_>>()
    })
    .len() as u64;

    let run = ekyc(&endpoint, &key, &args).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let results = results(&out);
    check(&entries, &lines, &results, true);
    assert_eq!(billed(&server, "resume-bank").await, answered(&results));

    let s = summary(&summary_path);
    eprintln!("after {kills} kills: {s}");
    assert_eq!(s["lines"], entries.len() as u64);
    assert_eq!(s["skipped"], before, "{s}");
    let written = s["yes"].as_u64().expect("yes")
        + s["no"].as_u64().expect("no")
        + s["errors"]
            .as_object()
            .expect("errors")
            .values()
            .map(|v| v.as_u64().expect("count"))
            .sum::<u64>();
    assert_eq!(before + written, entries.len() as u64, "{s}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_echo_leaves_no_personal_data_in_the_results_or_on_stderr() {
    let server = TestServer::start(TestOptions::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "key", &server.api_key);
    let endpoint = server.endpoint();
    let mut entries: Vec<Entry> = (0..20).map(yes).collect();
    entries.extend((20..30).map(no));
    entries.extend((0..5).map(unknown));
    entries.extend((30..34).map(impossible_date));
    entries.extend((34..36).map(bad_id));
    entries.extend((36..38).map(future_date));
    entries.push(Entry::Malformed("1,2".into()));
    let (text, lines) = csv_text(&entries, &CSV_COLUMNS[..3]);
    let input = dir.path().join("private.csv");
    std::fs::write(&input, text).expect("write");

    let mut personal: Vec<String> = entries.iter().flat_map(Entry::personal).collect();
    // Partial birth dates ("1985") could turn up in hex by chance; full
    // dates, ID numbers and names cannot.
    personal.retain(|v| v.len() >= 10);
    assert!(personal.len() > 100);
    let leaks = |text: &str| -> Vec<String> {
        personal
            .iter()
            .filter(|v| text.contains(v.as_str()))
            .cloned()
            .collect()
    };

    let out = dir.path().join("private-results.jsonl");
    let run = ekyc(
        &endpoint,
        &key,
        &[
            "--in",
            input.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
            "--no-echo",
            "--summary-json",
            "-",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let results = results(&out);
    check(&entries, &lines, &results, false);
    let written = std::fs::read_to_string(&out).expect("results");
    assert_eq!(leaks(&written), Vec::<String>::new(), "in the results");
    assert_eq!(leaks(&stderr(&run)), Vec::<String>::new(), "on stderr");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(leaks(&stdout), Vec::<String>::new(), "on stdout");
    assert!(stderr(&run).contains("answered YES"), "{}", stderr(&run));

    // The same search finds them where they are meant to be: the search
    // is not blind.
    let echoed = dir.path().join("echoed-results.jsonl");
    let run = ekyc(
        &endpoint,
        &key,
        &[
            "--in",
            input.to_str().expect("path"),
            "--out",
            echoed.to_str().expect("path"),
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        leaks(&std::fs::read_to_string(&echoed).expect("echoed")).len(),
        personal.len()
    );
    assert_eq!(leaks(&stderr(&run)), Vec::<String>::new(), "on stderr");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_what_was_written_and_a_rerun_skips_it_all() {
    let server = TestServer::start(TestOptions::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "key", &server.api_key);
    let endpoint = server.endpoint();
    let mut entries: Vec<Entry> = (0..25).map(yes).collect();
    entries.extend((25..30).map(no));
    entries.extend((30..34).map(impossible_date));
    entries.extend((34..36).map(future_date));
    entries.push(Entry::Malformed("{".into()));
    entries.push(Entry::Malformed("[]".into()));
    let (text, _) = jsonl_text(&entries);
    let input = dir.path().join("counted.jsonl");
    std::fs::write(&input, text).expect("write");
    let out = dir.path().join("counted-results.jsonl");
    let args = [
        "--in",
        input.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
        "--summary-json",
        "-",
    ];

    let run = ekyc(&endpoint, &key, &args).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let s: Value = serde_json::from_slice(&run.stdout).expect("summary on stdout");
    let (yes, no, errors) = expected_counts(&entries);
    assert_eq!(
        errors,
        BTreeMap::from([
            ("INVALID_REQUEST".to_string(), 4),
            ("MALFORMED_ROW".to_string(), 2),
            ("VALUE_OUT_OF_RANGE".to_string(), 2),
        ])
    );
    let errors: serde_json::Map<String, Value> =
        errors.into_iter().map(|(k, v)| (k, v.into())).collect();
    assert_eq!(s["lines"], entries.len() as u64, "{s}");
    assert_eq!(s["skipped"], 0);
    assert_eq!((s["yes"].clone(), s["no"].clone()), (yes.into(), no.into()));
    assert_eq!(s["errors"], Value::Object(errors), "{s}");
    assert_eq!(s["resent"], 0);
    assert!(s["elapsed_secs"].as_f64().is_some_and(|t| t > 0.0), "{s}");
    assert!(s["items_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    // The table on stderr says the same.
    let table = stderr(&run);
    for row in ["lines in file", "answered YES", "error INVALID_REQUEST"] {
        assert!(table.contains(row), "{table}");
    }
    assert_eq!(results(&out).len(), entries.len());

    // Run again: everything is in the results already.
    let run = ekyc(&endpoint, &key, &args).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let s: Value = serde_json::from_slice(&run.stdout).expect("summary on stdout");
    assert_eq!(s["lines"], entries.len() as u64, "{s}");
    assert_eq!(s["skipped"], entries.len() as u64, "{s}");
    assert_eq!((s["yes"].clone(), s["no"].clone()), (0.into(), 0.into()));
    assert_eq!(s["errors"], serde_json::json!({}));
    assert_eq!(results(&out).len(), entries.len(), "nothing written twice");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_the_run_with_its_reason_and_a_new_key_finishes_it() {
    let server = TestServer::start(TestOptions::default()).await;
    let (_, admin_key) =
        ekyc_service::tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
            .await
            .expect("bootstrap");
    let admin = Client::connect(
        &server.endpoint(),
        Some(&admin_key.token),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let tenant_key = server
        .tenant(
            "revoked-bank",
            TenantPolicy {
                limits: Limits {
                    requests_per_second: 60,
                    burst: 5,
                    ..Limits::default()
                },
                ..TenantPolicy::default()
            },
        )
        .await;
    let tenant = server.tenant_id("revoked-bank").await;
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "key", &tenant_key);
    let endpoint = server.endpoint();
    let entries: Vec<Entry> = (0..150).map(|i| yes(i % 50)).collect();
    let (text, lines) = jsonl_text(&entries);
    let input = dir.path().join("revoked.jsonl");
    std::fs::write(&input, text).expect("write");
    let out = dir.path().join("revoked-results.jsonl");
    let args = [
        "--in",
        input.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
    ];

    let child = ekyc_command(&endpoint, &key, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while complete_lines(&out) < 20 {
        assert!(started.elapsed() < Duration::from_secs(20), "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let key_id = ekyc_service::auth::parse(&tenant_key).expect("key").0;
    admin
        .admin()
        .revoke_api_key(admin.request(pb::RevokeApiKeyRequest { key_id }))
        .await
        .expect("revoked");
    let stopped = child.wait_with_output().await.expect("run");
    let err = stderr(&stopped);
    assert_eq!(stopped.status.code(), Some(1), "{err}");
    assert!(
        err.contains("UNAUTHENTICATED (API_KEY_REVOKED)"),
        "the reason is printed: {err}"
    );
    let partial = results(&out);
    assert!(partial.len() < entries.len(), "stopped early");
    by_line(&partial);
    let personal: Vec<String> = entries.iter().flat_map(Entry::personal).collect();
    assert!(
        personal
            .iter()
            .filter(|v| v.len() >= 10)
            .all(|v| !err.contains(v.as_str())),
        "{err}"
    );

    // A new key of the same tenant finishes the file where it stopped.
    let issued = admin
        .admin()
        .issue_api_key(admin.request(pb::IssueApiKeyRequest {
            tenant_id: tenant.clone(),
            role: pb::Role::Verifier as i32,
            ..Default::default()
        }))
        .await
        .expect("issued")
        .into_inner();
    let new_key = key_file(dir.path(), "new-key", &issued.secret);
    let run = ekyc(&endpoint, &new_key, &args).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let results = results(&out);
    check(&entries, &lines, &results, true);
    assert_eq!(billed(&server, "revoked-bank").await, answered(&results));
    server.stop().await;
}
