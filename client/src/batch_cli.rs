//! `ekyc verify-batch`: every row of a CSV or JSON Lines file verified
//! through `VerifyBatch`, one JSON line of result per row appended to a
//! results file.
//!
//! The results file is also the record of what is done: a run that was
//! killed, lost its connection or met a revoked key is simply run again
//! with the same arguments, and it skips the rows already answered there.
//! That is safe and free because every row carries a request id that is
//! the same on every run (from the file's `request_id` column, or derived
//! from the file's name and the row's line), and the server answers a
//! request id it answered before from its ledger, without billing it
//! again. For the same reason an item the server may or may not have
//! answered (a stream cut mid-way, an answer not yet written) is sent
//! again without a second thought.
//!
//! A result line is, for an answer (its attestation checked against the
//! request sent), `{"line", "request_id", "decision", "subject_status",
//! "results": [{"field", "result", "score"?}], "transaction_id",
//! "registry_version", "attestation": {"key_id", "payload_hex",
//! "signature_hex"}, "claims"}`; for a refusal, `{"line", "request_id",
//! "error": {"code", "reason", "message", "field_violations": [{"field",
//! "reason", "description"}]}, "claims"}`. `claims` (the values as sent,
//! `id_number` first) is left out with `--no-echo`. A line the reader
//! refuses is not sent: its error has reason `MALFORMED_ROW` and its
//! `request_id` is null. A refusal that says "not now" (see
//! [`TRANSIENT_REASONS`]) is sent again a few times before it is written.
//!
//! What this holds at once does not grow with the file: rows are read as
//! items are answered, at most `--in-flight` requests are outstanding,
//! and the rows already done are one bit per line.
//!
//! Claims and ID numbers go to the server and, unless `--no-echo`, into
//! the results file beside their answer: never to stderr, the progress
//! bar, the summary or an error message.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ekyc_client::{Client, ClientError, VerifiedAnswer, claim_pairs, status_from_rpc, v1 as pb};
use ekyc_input::rows::{Format, RawRow, Reject, RowStream, RowsError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde::ser::SerializeMap;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::verify_cli::{FieldOut, decision_name, subject_status_name};

/// The columns a batch file may carry besides `id_number` and the claims.
const EXTRA_COLUMNS: [&str; 3] = ["request_id", "purpose_code", "consent_reference"];

/// How often an item answered with a transient error is sent again
/// before that error is written as its result.
const ITEM_RETRIES: u32 = 5;

/// Streams in a row that may fail without a single result before the run
/// gives up (the output stays valid for a later run).
const STREAM_FAILURES: u32 = 10;

/// First and longest wait before reopening a failed stream.
const REOPEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The longest `RetryInfo` delay honoured for an item: a transient
/// refusal that asks for more is sent again after this anyway (it is
/// free: the server answers or refuses it again, and bills it once).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How long a stream may go without a result while items wait for one
/// (or take to open) before it is given up for a new one. Generous: a
/// tenant's rate paces results, but never to one in minutes.
const SILENCE: Duration = Duration::from_secs(300);

/// How long to wait, once every row has its line, for the server to end
/// the stream; after that the run ends regardless (nothing is left to
/// hear about).
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Item reasons that say "not now" rather than "no": the item is sent
/// again later in the same run.
const TRANSIENT_REASONS: [&str; 7] = [
    "SUBJECT_BUSY",
    "HASHING_OVERLOADED",
    "LEDGER_UNAVAILABLE",
    "SHUTTING_DOWN",
    "DEADLINE_PASSED",
    "REQUEST_BUFFERS_FULL",
    // The server waits out a batch item's rate instead of refusing it; a
    // refusal for rate all the same is worth its RetryInfo.
    "RATE_LIMITED",
];

#[derive(Args)]
pub(crate) struct BatchArgs {
    /// Input: CSV with a header row, or JSON Lines; columns id_number, the
    /// claim fields, and optionally request_id, purpose_code,
    /// consent_reference.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Results (JSON Lines), appended to; rows already there are skipped.
    #[arg(long = "out", value_name = "RESULTS")]
    out: PathBuf,
    /// Input format [default: from the file's extension].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Purpose code of rows without a purpose_code value.
    #[arg(long, default_value = "ACCOUNT_OPENING")]
    purpose: String,
    /// Consent reference of rows without a consent_reference value
    /// [default: the input file's name].
    #[arg(long, value_name = "REF")]
    consent: Option<String>,
    /// Requests sent and not yet answered, at most.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    in_flight: u32,
    /// Also write the summary as JSON to PATH ('-': stdout).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// Leave the claims out of the results (no ID numbers or claims at all).
    #[arg(long)]
    no_echo: bool,
    /// No progress bar (there is none when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Jsonl,
}

pub(crate) async fn verify_batch(client: &Client, args: BatchArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let format = match args.format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None => Format::from_path(&args.input).with_context(|| {
            format!(
                "cannot tell the format of {} from its extension: pass --format csv or jsonl",
                args.input.display()
            )
        })?,
    };
    let file_name = args
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a file name", args.input.display()))?;
    let input_len = std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?
        .len();
    let (out, done) = open_results(&args.out, input_len)?;
    let total = count_rows(&args.input, format)?;
    let source = Source::open(
        &args.input,
        format,
        Defaults {
            tag: file_tag(&file_name),
            purpose: args.purpose.clone(),
            consent: args.consent.clone().unwrap_or(file_name),
        },
    )?;
    let bar = progress_bar(total, done.len(), args.no_progress);
    let mut batch = Batch {
        source,
        window: args.in_flight as usize,
        pending: HashMap::new(),
        due: BinaryHeap::new(),
        held: None,
        out: Results {
            file: out,
            path: args.out.clone(),
            echo: !args.no_echo,
            buf: Vec::with_capacity(1024),
        },
        done,
        stats: Stats::default(),
        bar,
        last_opened: false,
    };
    let end = batch.run(client).await;
    batch.bar.finish_and_clear();
    let end = end?;
    let summary = batch.summary(total, started.elapsed());
    eprint!("{}", summary.table());
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string(&summary)? + "\n";
        if path.as_os_str() == "-" {
            std::io::stdout().write_all(json.as_bytes())?;
        } else {
            std::fs::write(path, json)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    match end {
        RunEnd::Complete => Ok(ExitCode::SUCCESS),
        RunEnd::Stopped(why) => {
            eprintln!("stopped: {why}");
            eprintln!(
                "the results so far are in {}: run the same command again to go on",
                args.out.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// What an item gets when a row has no value of its own.
struct Defaults {
    /// First 16 hex digits of SHA-256 of the input's file name, for the
    /// request ids of rows without one: the name, not the path, so the
    /// same file moved elsewhere resumes with the same ids.
    tag: String,
    purpose: String,
    consent: String,
}

fn file_tag(file_name: &str) -> String {
    hex::encode(Sha256::digest(file_name.as_bytes()))[..16].to_string()
}

/// The request id of a row without one: `b-<tag>-<line>`, at most 39
/// characters, all allowed in a request id.
fn derived_request_id(tag: &str, line: u64) -> String {
    format!("b-{tag}-{line}")
}

/// One row, ready to send.
struct Item {
    line: u64,
    request: pb::VerifyRequest,
}

/// What the reader gives next.
#[allow(
    clippy::large_enum_variant,
    reason = "one at a time, moved straight into the pending map: boxing would only add an allocation per row"
)]
enum Row {
    Item(Item),
    /// A line the reader refused: not sent.
    Rejected(Reject),
}

/// The input's rows, as items.
struct Source {
    rows: RowStream<'static>,
    defaults: Defaults,
    /// Rows read so far (items and rejects, skipped ones included).
    read: u64,
    eof: bool,
}

impl Source {
    fn open(path: &Path, format: Format, defaults: Defaults) -> Result<Source> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let rows = RowStream::with_extra_columns(
            BufReader::with_capacity(1 << 16, file),
            format,
            &EXTRA_COLUMNS,
        )
        .map_err(|e| match e {
            RowsError::Header(h) => anyhow::anyhow!("{}: {h}", path.display()),
            RowsError::Io(e) => {
                anyhow::Error::new(e).context(format!("cannot read {}", path.display()))
            }
        })?;
        Ok(Source {
            rows,
            defaults,
            read: 0,
            eof: false,
        })
    }

    /// The next row, `None` at the end of the input. An error reading the
    /// input ends the run: the rest of the file is not taken for missing.
    fn next(&mut self) -> Result<Option<Row>> {
        if self.eof {
            return Ok(None);
        }
        match self.rows.next() {
            None => {
                self.eof = true;
                Ok(None)
            }
            Some(Err(e)) => Err(anyhow::Error::new(e).context("cannot read the input")),
            Some(Ok(row)) => {
                self.read += 1;
                Ok(Some(match row {
                    Ok(raw) => self.item(raw),
                    Err(reject) => Row::Rejected(reject),
                }))
            }
        }
    }

    fn item(&self, raw: RawRow) -> Row {
        let line = raw.line;
        let mut request = pb::VerifyRequest::default();
        let mut claims = pb::Claims::default();
        for (column, value) in raw.values {
            // An empty value claims nothing, as an empty cell in an export
            // means "no value".
            if value.is_empty() {
                continue;
            }
            let slot = match column.as_str() {
                "id_number" => {
                    request.id_number = value;
                    continue;
                }
                "request_id" => &mut request.request_id,
                "purpose_code" => &mut request.purpose_code,
                "consent_reference" => &mut request.consent_reference,
                claim => {
                    if let Some(slot) = claim_slot(&mut claims, claim) {
                        *slot = Some(value);
                    }
                    continue;
                }
            };
            *slot = value;
        }
        // A row's own request id is sent as it is, even one the service
        // will refuse: the refusal comes back under that same id.
        if request.request_id.is_empty() {
            request.request_id = derived_request_id(&self.defaults.tag, line);
        }
        if request.purpose_code.is_empty() {
            request.purpose_code = self.defaults.purpose.clone();
        }
        if request.consent_reference.is_empty() {
            request.consent_reference = self.defaults.consent.clone();
        }
        request.claims = Some(claims);
        Row::Item(Item { line, request })
    }
}

fn claim_slot<'c>(claims: &'c mut pb::Claims, column: &str) -> Option<&'c mut Option<String>> {
    Some(match column {
        "full_name" => &mut claims.full_name,
        "date_of_birth" => &mut claims.date_of_birth,
        "gender" => &mut claims.gender,
        "nationality" => &mut claims.nationality,
        "place_of_origin" => &mut claims.place_of_origin,
        "place_of_residence" => &mut claims.place_of_residence,
        "id_issue_date" => &mut claims.id_issue_date,
        "id_expiry_date" => &mut claims.id_expiry_date,
        "phone_number" => &mut claims.phone_number,
        _ => return None,
    })
}

/// The rows of the input, counted cheaply for the progress bar's total:
/// its non-blank lines, less the header of a CSV file (a quoted value
/// spanning lines makes it an overcount, which only the bar sees).
fn count_rows(path: &Path, format: Format) -> Result<u64> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut blank) = (0u64, true);
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                lines += u64::from(!blank);
                blank = true;
            } else if !b.is_ascii_whitespace() {
                blank = false;
            }
        }
    }
    lines += u64::from(!blank);
    Ok(match format {
        Format::Csv => lines.saturating_sub(1),
        Format::Jsonl => lines,
    })
}

/// The input lines that have their result: one bit per line number, so
/// that a results file of tens of millions of lines costs megabytes.
#[derive(Default)]
struct LineSet {
    words: Vec<u64>,
    len: u64,
}

impl LineSet {
    /// Marks `line`; false when it was marked already.
    fn insert(&mut self, line: u64) -> bool {
        let (word, bit) = ((line / 64) as usize, line % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        self.len += u64::from(fresh);
        fresh
    }

    fn contains(&self, line: u64) -> bool {
        self.words
            .get((line / 64) as usize)
            .is_some_and(|w| w & (1 << (line % 64)) != 0)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// Opens the results file for appending, first reading the lines it
/// already has. A run killed mid-write leaves at most one partial last
/// line; it is cut off, and its row is simply done again.
fn open_results(path: &Path, input_len: u64) -> Result<(File, LineSet)> {
    let mut done = LineSet::default();
    let ctx = || format!("cannot read {}", path.display());
    if path.exists() {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(ctx)?;
        drop_partial_line(&mut file).with_context(ctx)?;
        file.seek(SeekFrom::Start(0)).with_context(ctx)?;
        #[derive(serde::Deserialize)]
        struct Done {
            line: u64,
        }
        for (n, text) in BufReader::new(&file).lines().enumerate() {
            let text = text.with_context(ctx)?;
            let parsed = serde_json::from_str::<Done>(&text).ok();
            // A line number past the input's size in bytes cannot be one of
            // its lines (and would size the bit set by a stranger's number).
            match parsed {
                Some(d) if d.line <= input_len => {
                    done.insert(d.line);
                }
                _ => bail!(
                    "{} line {} is not a result of this input: pass another --out",
                    path.display(),
                    n + 1
                ),
            }
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((file, done))
}

/// Cuts `file` after its last newline.
fn drop_partial_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        file.set_len(end)?;
    }
    Ok(())
}

fn progress_bar(total: u64, done: u64, no_progress: bool) -> ProgressBar {
    if no_progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let skipped = done.min(total);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        .with_position(skipped);
    // Rate and ETA of this run's own items: indicatif's estimator would
    // count the rows skipped at the start as done in its first instant.
    let rate = move |state: &indicatif::ProgressState| {
        let secs = state.elapsed().as_secs_f64();
        if secs > 0.0 {
            state.pos().saturating_sub(skipped) as f64 / secs
        } else {
            0.0
        }
    };
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} ({rate} items/s, eta {left}) {msg}")
            .map(|style| {
                style
                    .with_key(
                        "rate",
                        move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}", rate(state));
                        },
                    )
                    .with_key(
                        "left",
                        move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let per_sec = rate(state);
                            let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                            if per_sec > 0.0 {
                                let secs = Duration::from_secs_f64(left as f64 / per_sec);
                                let _ = write!(w, "{:#}", indicatif::HumanDuration(secs));
                            } else {
                                let _ = write!(w, "?");
                            }
                        },
                    )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The results file.
struct Results {
    file: File,
    path: PathBuf,
    echo: bool,
    buf: Vec<u8>,
}

impl Results {
    /// Appends one line with one write: a kill leaves at most one partial
    /// line, and no buffer of answered lines is lost with the process
    /// (one that is lost is answered again from the ledger, free).
    fn write(&mut self, line: &impl Serialize) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, line)?;
        self.buf.push(b'\n');
        self.file
            .write_all(&self.buf)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[derive(Serialize)]
struct AnswerLine<'a> {
    line: u64,
    request_id: &'a str,
    decision: &'static str,
    subject_status: &'static str,
    results: Vec<FieldOut>,
    transaction_id: &'a str,
    registry_version: u64,
    attestation: AttestationOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<ClaimsOut<'a>>,
}

#[derive(Serialize)]
struct AttestationOut {
    key_id: String,
    payload_hex: String,
    signature_hex: String,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: u64,
    /// None for a row that was not sent (no id was taken from it).
    request_id: Option<&'a str>,
    error: ErrorOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<ClaimsOut<'a>>,
}

#[derive(Serialize)]
struct ErrorOut {
    code: &'static str,
    reason: Option<String>,
    message: String,
    field_violations: Vec<ViolationOut>,
}

#[derive(Serialize)]
struct ViolationOut {
    field: String,
    reason: String,
    description: String,
}

impl ErrorOut {
    fn from_status(status: &tonic::Status) -> ErrorOut {
        let details = status.get_error_details();
        ErrorOut {
            code: ekyc_proto::code_name(status.code()),
            reason: details.error_info().map(|i| i.reason.clone()),
            message: status.message().to_string(),
            field_violations: details
                .bad_request()
                .map(|b| {
                    b.field_violations
                        .iter()
                        .map(|v| ViolationOut {
                            field: v.field.clone(),
                            reason: v.reason.clone(),
                            description: v.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn malformed(reject: &Reject) -> ErrorOut {
        ErrorOut {
            code: "INVALID_ARGUMENT",
            reason: Some("MALFORMED_ROW".into()),
            message: format!("the row was not sent: {}", reject.description),
            field_violations: vec![ViolationOut {
                field: reject.field.clone(),
                reason: reject.rule.clone(),
                description: reject.description.clone(),
            }],
        }
    }

    /// The summary's name for it: the reason, or the code when the error
    /// has none.
    fn key(&self) -> String {
        self.reason.clone().unwrap_or_else(|| self.code.to_string())
    }
}

/// The claims as sent, `id_number` first, then the fields in field order.
struct ClaimsOut<'a>(&'a pb::VerifyRequest);

impl Serialize for ClaimsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let claims = self.0.claims.clone().unwrap_or_default();
        let pairs = claim_pairs(&claims);
        let mut map = s.serialize_map(None)?;
        if !self.0.id_number.is_empty() {
            map.serialize_entry("id_number", &self.0.id_number)?;
        }
        for (field, value) in pairs {
            map.serialize_entry(field.name(), value)?;
        }
        map.end()
    }
}

/// An item sent and not yet given its line.
struct Pending {
    line: u64,
    request: pb::VerifyRequest,
    /// Times it was answered with a transient error.
    attempts: u32,
    /// Sent on the current stream (false: waiting to be sent again after
    /// a transient error, see [`Batch::due`]).
    sent: bool,
}

#[derive(Default)]
struct Stats {
    skipped: u64,
    yes: u64,
    no: u64,
    errors: BTreeMap<String, u64>,
    /// Items sent again on a new stream after one ended without their
    /// result.
    resent: u64,
    /// Items sent again after a transient error.
    retried: u64,
}

impl Stats {
    fn progress(&self) -> String {
        format!(
            "yes {}  no {}  error {}",
            self.yes,
            self.no,
            self.errors.values().sum::<u64>()
        )
    }
}

enum RunEnd {
    /// Every row of the input has its line.
    Complete,
    /// The run stopped early, for this reason (no personal data in it).
    Stopped(String),
}

/// How a stream ended.
enum StreamEnd {
    /// Every row has its line.
    Complete,
    /// Another stream may carry on: `reopen_after` is `None` when the
    /// server ended the stream as a matter of course.
    Reopen {
        why: String,
        reopen_after: Option<Duration>,
        progressed: bool,
    },
    /// No other stream would do better (the key or tenant is refused).
    Stop(String),
}

struct Batch {
    source: Source,
    /// The most items pending at once (`--in-flight`).
    window: usize,
    /// Items without their line yet, by request id (results come back in
    /// any order, each naming its request id).
    pending: HashMap<String, Pending>,
    /// When each item waiting after a transient error is due.
    due: BinaryHeap<Reverse<(Instant, String)>>,
    /// A row read whose request id is still pending from an earlier row
    /// of the file: it waits until that one has its line, so no two items
    /// with the same id are in flight and its own answer (a replay, or
    /// REQUEST_ID_REUSED) cannot be taken for the other's.
    held: Option<Item>,
    out: Results,
    done: LineSet,
    stats: Stats,
    bar: ProgressBar,
    /// Whether the last stream opened (so what it was sent and did not
    /// answer counts as resent on the next).
    last_opened: bool,
}

impl Batch {
    async fn run(&mut self, client: &Client) -> Result<RunEnd> {
        let mut failures = 0;
        let mut backoff = REOPEN_BACKOFF.0;
        loop {
            let (tx, rx) = mpsc::unbounded_channel();
            // Whatever the last stream was sent and did not answer. The
            // channel is unbounded, but what it holds is pending and so
            // bounded by the window. Counted once per stream that ended
            // with them, not again for each reopening that failed.
            for p in self.pending.values().filter(|p| p.sent) {
                let _ = tx.send(p.request.clone());
                if self.last_opened {
                    self.stats.resent += 1;
                }
            }
            self.last_opened = false;
            self.fill(&tx)?;
            if self.finished() {
                return Ok(RunEnd::Complete);
            }
            match self.stream(client, tx, rx).await? {
                StreamEnd::Complete => return Ok(RunEnd::Complete),
                StreamEnd::Stop(why) => return Ok(RunEnd::Stopped(why)),
                StreamEnd::Reopen {
                    why,
                    reopen_after,
                    progressed,
                } => {
                    if progressed {
                        failures = 0;
                        backoff = REOPEN_BACKOFF.0;
                    }
                    let Some(asked) = reopen_after else {
                        continue;
                    };
                    failures += 1;
                    if failures >= STREAM_FAILURES {
                        return Ok(RunEnd::Stopped(format!(
                            "{failures} streams in a row failed without a result; the last: {why}"
                        )));
                    }
                    let wait = backoff.max(asked).min(REOPEN_BACKOFF.1);
                    self.bar.suspend(|| {
                        eprintln!(
                            "stream ended: {why}; reopening in {} ms ({failures} of \
                             {STREAM_FAILURES} failures in a row)",
                            wait.as_millis()
                        )
                    });
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(REOPEN_BACKOFF.1);
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.source.eof && self.pending.is_empty() && self.held.is_none()
    }

    /// One stream: send, read results, until every row has its line or
    /// the stream ends.
    async fn stream(
        &mut self,
        client: &Client,
        tx: mpsc::UnboundedSender<pb::VerifyRequest>,
        rx: mpsc::UnboundedReceiver<pb::VerifyRequest>,
    ) -> Result<StreamEnd> {
        let mut progressed = false;
        let opening = client.verify_batch(UnboundedReceiverStream::new(rx));
        let mut results = match tokio::time::timeout(SILENCE, opening).await {
            Ok(Ok(results)) => results,
            Ok(Err(status)) => return Ok(self.ended(&status, progressed)),
            Err(_) => return Ok(silent(false)),
        };
        self.last_opened = true;
        let mut tx = Some(tx);
        let mut closing = None;
        let mut heard = Instant::now();
        loop {
            let next_due = self.due.peek().map(|Reverse((at, _))| *at);
            let waiting = self.pending.values().any(|p| p.sent);
            tokio::select! {
                message = results.message() => match message {
                    Ok(Some(result)) => {
                        progressed = true;
                        heard = Instant::now();
                        self.on_result(client, result).await?;
                    }
                    Ok(None) if self.finished() => return Ok(StreamEnd::Complete),
                    Ok(None) => {
                        return Ok(StreamEnd::Reopen {
                            why: "the server ended the stream with items unanswered".into(),
                            reopen_after: Some(Duration::ZERO),
                            progressed,
                        });
                    }
                    Err(_) if self.finished() => return Ok(StreamEnd::Complete),
                    Err(status) => return Ok(self.ended(&status, progressed)),
                },
                () = sleep_until(next_due), if next_due.is_some() && tx.is_some() => {
                    if let Some(tx) = &tx {
                        self.send_due(tx);
                    }
                }
                () = sleep_until(closing), if closing.is_some() => return Ok(StreamEnd::Complete),
                () = tokio::time::sleep_until(heard + SILENCE), if waiting && closing.is_none() => {
                    return Ok(silent(progressed));
                }
            }
            if let Some(sender) = &tx {
                self.fill(sender)?;
                if self.finished() {
                    // Every row has its line: close our side, so the server
                    // ends the stream cleanly rather than seeing it cut.
                    tx = None;
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }

    /// What a stream's error status means for the run.
    fn ended(&self, status: &tonic::Status, progressed: bool) -> StreamEnd {
        let details = status.get_error_details();
        let reason = details.error_info().map(|i| i.reason.clone());
        let why = describe(status, reason.as_deref());
        match status.code() {
            // A refused key or tenant, or a server without the method: a
            // new stream would be refused the same way.
            Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented => {
                StreamEnd::Stop(why)
            }
            // Streams are bounded in time by design; this is no failure.
            _ if reason.as_deref() == Some("STREAM_LIFETIME_REACHED") => StreamEnd::Reopen {
                why,
                reopen_after: None,
                progressed,
            },
            _ => StreamEnd::Reopen {
                why,
                reopen_after: Some(
                    details
                        .retry_info()
                        .and_then(|r| r.retry_delay)
                        .unwrap_or_default(),
                ),
                progressed,
            },
        }
    }

    /// Reads rows until the window is full or the input ends, writing the
    /// line of each rejected row and sending the others.
    fn fill(&mut self, tx: &mpsc::UnboundedSender<pb::VerifyRequest>) -> Result<()> {
        while self.pending.len() < self.window {
            let item = match self.held.take() {
                Some(item) => item,
                None => match self.source.next()? {
                    None => break,
                    Some(Row::Rejected(reject)) => {
                        if self.done.contains(reject.line) {
                            self.stats.skipped += 1;
                        } else {
                            let error = ErrorOut::malformed(&reject);
                            let key = error.key();
                            let line = ErrorLine {
                                line: reject.line,
                                request_id: None,
                                error,
                                claims: None,
                            };
                            self.finish_line(reject.line, &line, Outcome::Error(key))?;
                        }
                        continue;
                    }
                    Some(Row::Item(item)) => {
                        if self.done.contains(item.line) {
                            self.stats.skipped += 1;
                            continue;
                        }
                        item
                    }
                },
            };
            if self.pending.contains_key(&item.request.request_id) {
                self.held = Some(item);
                break;
            }
            // A closed channel (the stream just failed) loses nothing: the
            // item is pending and goes out again on the next stream.
            let _ = tx.send(item.request.clone());
            self.pending.insert(
                item.request.request_id.clone(),
                Pending {
                    line: item.line,
                    request: item.request,
                    attempts: 0,
                    sent: true,
                },
            );
        }
        Ok(())
    }

    /// Sends again the items whose wait after a transient error is over.
    fn send_due(&mut self, tx: &mpsc::UnboundedSender<pb::VerifyRequest>) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.due.pop() else {
                break;
            };
            if let Some(p) = self.pending.get_mut(&id).filter(|p| !p.sent) {
                p.sent = true;
                let _ = tx.send(p.request.clone());
                self.stats.retried += 1;
            }
        }
    }

    async fn on_result(&mut self, client: &Client, result: pb::VerifyBatchResult) -> Result<()> {
        // A result for no pending item (a second answer to one already
        // written) has nothing left to say.
        if !self.pending.get(&result.request_id).is_some_and(|p| p.sent) {
            return Ok(());
        }
        let Some(p) = self.pending.remove(&result.request_id) else {
            return Ok(());
        };
        let status = match result.outcome {
            Some(pb::verify_batch_result::Outcome::Response(response)) => {
                match client.check_answer(&p.request, response).await {
                    Ok(answer) => return self.write_answer(&p, &answer),
                    Err(ClientError::Attestation(why)) => {
                        let error = ErrorOut {
                            code: "DATA_LOSS",
                            reason: Some("ATTESTATION_INVALID".into()),
                            message: format!("the answer's attestation does not check: {why}"),
                            field_violations: Vec::new(),
                        };
                        return self.write_error(&p, error);
                    }
                    // The signing keys could not be fetched: not the
                    // item's fault, so it is asked for again (a replay,
                    // free) and checked then.
                    Err(e) => tonic::Status::unavailable(format!(
                        "cannot fetch the signing keys to check the answer: {e}"
                    )),
                }
            }
            Some(pb::verify_batch_result::Outcome::Error(error)) => status_from_rpc(&error),
            None => tonic::Status::unknown("the result carries neither an answer nor an error"),
        };
        let transient = status.code() == Code::Unavailable
            || status
                .get_error_details()
                .error_info()
                .is_some_and(|i| TRANSIENT_REASONS.contains(&i.reason.as_str()));
        if transient && p.attempts < ITEM_RETRIES {
            let attempts = p.attempts + 1;
            let backoff = REOPEN_BACKOFF.0 * 2u32.pow(attempts - 1);
            let wait = status
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay)
                .unwrap_or(backoff)
                .min(MAX_RETRY_DELAY);
            let id = p.request.request_id.clone();
            self.due.push(Reverse((Instant::now() + wait, id.clone())));
            self.pending.insert(
                id,
                Pending {
                    attempts,
                    sent: false,
                    ..p
                },
            );
            return Ok(());
        }
        self.write_error(&p, ErrorOut::from_status(&status))
    }

    fn write_answer(&mut self, p: &Pending, answer: &VerifiedAnswer) -> Result<()> {
        let r = &answer.response;
        let att = r.attestation.clone().unwrap_or_default();
        let yes = r.decision == pb::Decision::Yes as i32;
        let line = AnswerLine {
            line: p.line,
            request_id: &p.request.request_id,
            decision: decision_name(r),
            subject_status: subject_status_name(r),
            results: r.results.iter().map(FieldOut::from).collect(),
            transaction_id: &r.transaction_id,
            registry_version: r.registry_version,
            attestation: AttestationOut {
                key_id: att.key_id,
                payload_hex: hex::encode(&att.payload),
                signature_hex: hex::encode(&att.signature),
            },
            claims: self.out.echo.then_some(ClaimsOut(&p.request)),
        };
        self.finish_line(p.line, &line, if yes { Outcome::Yes } else { Outcome::No })
    }

    fn write_error(&mut self, p: &Pending, error: ErrorOut) -> Result<()> {
        let key = error.key();
        let line = ErrorLine {
            line: p.line,
            request_id: Some(&p.request.request_id),
            error,
            claims: self.out.echo.then_some(ClaimsOut(&p.request)),
        };
        self.finish_line(p.line, &line, Outcome::Error(key))
    }

    fn finish_line(&mut self, line: u64, out: &impl Serialize, outcome: Outcome) -> Result<()> {
        if !self.done.insert(line) {
            // Two rows cannot share a line; never write a second line.
            return Ok(());
        }
        self.out.write(out)?;
        match outcome {
            Outcome::Yes => self.stats.yes += 1,
            Outcome::No => self.stats.no += 1,
            Outcome::Error(reason) => *self.stats.errors.entry(reason).or_default() += 1,
        }
        // Either call may redraw, so the counts and the position can show
        // one item apart for a frame.
        self.bar.inc(1);
        self.bar.set_message(self.stats.progress());
        Ok(())
    }

    fn summary(&self, counted: u64, elapsed: Duration) -> Summary {
        let answered = self.stats.yes + self.stats.no + self.stats.errors.values().sum::<u64>();
        let secs = elapsed.as_secs_f64();
        Summary {
            // Exact once the input was read to its end.
            lines: if self.source.eof {
                self.source.read
            } else {
                counted
            },
            skipped: self.stats.skipped,
            yes: self.stats.yes,
            no: self.stats.no,
            errors: self.stats.errors.clone(),
            resent: self.stats.resent,
            retried: self.stats.retried,
            elapsed_secs: (secs * 1000.0).round() / 1000.0,
            items_per_sec: if secs > 0.0 {
                (answered as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            },
        }
    }
}

enum Outcome {
    Yes,
    No,
    Error(String),
}

/// A stream that said nothing for [`SILENCE`] while items were waiting
/// for it: its connection is taken for dead (one that vanished without a
/// reset would otherwise hold the run for ever).
fn silent(progressed: bool) -> StreamEnd {
    StreamEnd::Reopen {
        why: format!("no result for {} s with items in flight", SILENCE.as_secs()),
        reopen_after: Some(Duration::ZERO),
        progressed,
    }
}

/// `CODE (REASON): message` of a status: the service's messages carry no
/// personal data, and neither do the transport's.
fn describe(status: &tonic::Status, reason: Option<&str>) -> String {
    let code = ekyc_proto::code_name(status.code());
    match reason {
        Some(reason) => format!("{code} ({reason}): {}", status.message()),
        None => format!("{code}: {}", status.message()),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The run's counts, printed as a table and written as JSON with these
/// keys.
#[derive(Serialize)]
struct Summary {
    /// Rows in the input (its data lines).
    lines: u64,
    /// Rows skipped because the results file had them already.
    skipped: u64,
    yes: u64,
    no: u64,
    /// Errors written, by reason (the code when there is no reason).
    errors: BTreeMap<String, u64>,
    resent: u64,
    retried: u64,
    elapsed_secs: f64,
    items_per_sec: f64,
}

impl Summary {
    fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("lines in file".into(), self.lines.to_string()),
            (
                "skipped (already in output)".into(),
                self.skipped.to_string(),
            ),
            ("answered YES".into(), self.yes.to_string()),
            ("answered NO".into(), self.no.to_string()),
        ];
        for (reason, n) in &self.errors {
            rows.push((format!("error {reason}"), n.to_string()));
        }
        rows.push((
            "resent after a stream ended".into(),
            self.resent.to_string(),
        ));
        rows.push((
            "retried after a transient error".into(),
            self.retried.to_string(),
        ));
        rows.push(("elapsed".into(), format!("{:.3} s", self.elapsed_secs)));
        rows.push(("items/s".into(), format!("{:.1}", self.items_per_sec)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let values = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v:>values$}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_request_ids_are_valid_and_stable() {
        let tag = file_tag("customers-2026.csv");
        assert_eq!(tag.len(), 16);
        assert_eq!(tag, file_tag("customers-2026.csv"));
        assert_ne!(tag, file_tag("customers-2027.csv"));
        let id = derived_request_id(&tag, u64::MAX);
        // The service's rule: 1 to 64 characters from A-Z a-z 0-9 . _ : -
        assert!(id.len() <= 64, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')),
            "{id}"
        );
    }

    #[test]
    fn line_sets_count_each_line_once() {
        let mut set = LineSet::default();
        assert!(set.insert(2) && set.insert(130) && !set.insert(2));
        assert!(set.contains(2) && set.contains(130) && !set.contains(3));
        assert!(!set.contains(1 << 40), "past the end");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_partial_last_line_is_dropped_and_done_lines_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"line\":2}\n{\"line\":5,\"x\":1}\n{\"line\":7,\"requ",
        )
        .expect("write");
        let (mut file, done) = open_results(&path, 100).expect("open");
        assert_eq!(done.len(), 2);
        assert!(done.contains(2) && done.contains(5) && !done.contains(7));
        file.write_all(b"{\"line\":7}\n").expect("append");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"line\":2}\n{\"line\":5,\"x\":1}\n{\"line\":7}\n"
        );

        // Nothing but a partial line: nothing is done.
        std::fs::write(&path, "{\"li").expect("write");
        assert_eq!(open_results(&path, 100).expect("open").1.len(), 0);
        assert_eq!(std::fs::read(&path).expect("read").len(), 0);

        // A file that is not results is refused, not overwritten.
        std::fs::write(&path, "id_number,full_name\n").expect("write");
        assert!(open_results(&path, 100).is_err());
        std::fs::write(&path, "{\"line\":1000}\n").expect("write");
        assert!(open_results(&path, 100).is_err(), "past the input");
    }

    #[test]
    fn rows_become_requests_with_defaults_and_their_own_values() {
        let text = "id_number,full_name,gender,request_id,purpose_code\n\
                    001085000001,An,,,\n\
                    001085000002,Binh,F,own-1,KYC_REFRESH\n\
                    001085000003,Chi,,bad id,\n\
                    001085000004,\"Dung, \"\"Jr\"\"\"\n";
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("in.csv");
        std::fs::write(&path, text).expect("write");
        let defaults = Defaults {
            tag: file_tag("in.csv"),
            purpose: "ACCOUNT_OPENING".into(),
            consent: "in.csv".into(),
        };
        let mut source = Source::open(&path, Format::Csv, defaults).expect("open");
        let Some(Row::Item(first)) = source.next().expect("read") else {
            panic!("an item");
        };
        assert_eq!(first.line, 2);
        assert_eq!(
            first.request.request_id,
            format!("b-{}-2", file_tag("in.csv"))
        );
        assert_eq!(first.request.purpose_code, "ACCOUNT_OPENING");
        assert_eq!(first.request.consent_reference, "in.csv");
        let claims = first.request.claims.clone().expect("claims");
        assert_eq!(claims.full_name.as_deref(), Some("An"));
        assert_eq!(claims.gender, None, "an empty cell claims nothing");
        let Some(Row::Item(second)) = source.next().expect("read") else {
            panic!("an item");
        };
        assert_eq!(
            (
                second.request.request_id.as_str(),
                second.request.purpose_code.as_str()
            ),
            ("own-1", "KYC_REFRESH")
        );
        // An id the service will refuse is sent all the same: its refusal
        // comes back under it.
        let Some(Row::Item(third)) = source.next().expect("read") else {
            panic!("an item");
        };
        assert_eq!(
            (third.line, third.request.request_id.as_str()),
            (4, "bad id")
        );
        // A row of the wrong width is the reader's reject, not an item.
        let Some(Row::Rejected(reject)) = source.next().expect("read") else {
            panic!("a reject");
        };
        assert_eq!((reject.line, reject.rule.as_str()), (5, "malformed_csv"));
        assert!(source.next().expect("read").is_none() && source.eof);
        assert_eq!(source.read, 4);
        assert_eq!(count_rows(&path, Format::Csv).expect("count"), 4);
    }

    #[test]
    fn echoed_claims_are_the_claims_as_sent() {
        let request = pb::VerifyRequest {
            id_number: "001085000001".into(),
            claims: Some(pb::Claims {
                date_of_birth: Some("1985".into()),
                full_name: Some("An".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&ClaimsOut(&request)).expect("json"),
            r#"{"id_number":"001085000001","full_name":"An","date_of_birth":"1985"}"#
        );
    }

    #[test]
    fn the_summary_table_is_aligned() {
        let summary = Summary {
            lines: 300,
            skipped: 0,
            yes: 120,
            no: 170,
            errors: [("MALFORMED_ROW".to_string(), 10)].into(),
            resent: 0,
            retried: 0,
            elapsed_secs: 1.5,
            items_per_sec: 200.0,
        };
        let table = summary.table();
        let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert!(table.contains("error MALFORMED_ROW"), "{table}");
    }
}
