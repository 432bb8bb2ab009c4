//! `ekyc registry ...`: the agency's registry operator loads the registry
//! over gRPC from its own machine. The file is read and checked as
//! `ekycd import` reads it (the same reader, the same reject report); the
//! server validates, hashes and switches the version.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use ekyc_client::{Client, v1 as pb};
use ekyc_input::rows::{Format, RawRow, Reject, delete_list, read_rows_from, write_reject_report};
use prost::Message as _;
use tokio_stream::StreamExt as _;

#[derive(Args)]
pub struct RegistryArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Import an export (CSV or JSON Lines) and/or a delete list as the
    /// next registry version (registry-operator keys of the agency).
    Import {
        /// The export to import.
        input: Option<PathBuf>,
        /// Input format [default: from the extension].
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// A file of ID numbers (one per line) to delete.
        #[arg(long)]
        delete: Option<PathBuf>,
        /// Where to write the reject report [default: <input>.rejects.csv].
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
        /// Build the version but do not switch to it: check the counts,
        /// then `registry publish --version N` (or `discard`).
        #[arg(long)]
        stage: bool,
    },
    /// Switch every replica to a staged version.
    Publish {
        /// The staged version, as `import --stage` printed it.
        #[arg(long)]
        version: u64,
    },
    /// Remove a staged version; the current one stays.
    Discard {
        /// The staged version, as `import --stage` printed it.
        #[arg(long)]
        version: u64,
    },
    /// After a pepper rotation, delete every record of a retired pepper
    /// version (see docs/hashing.md).
    PurgePepper {
        /// The retired version.
        #[arg(long)]
        pepper_version: u32,
    },
}

/// `--format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A message stays well under the server's 256 KiB limit for the service.
const CHUNK_BYTES: usize = 128 << 10;

pub async fn registry(client: &Client, command: RegistryCommand, json: bool) -> Result<()> {
    match command {
        RegistryCommand::Import {
            input,
            format,
            delete,
            rejects,
            quiet,
            stage,
        } => {
            let files = Files {
                input,
                format,
                delete,
                rejects,
            };
            import(client, files, quiet, stage, json).await
        }
        RegistryCommand::Publish { version } => {
            let r = client
                .registry()
                .publish_version(client.request(pb::PublishVersionRequest {
                    registry_version: version,
                }))
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "registry_version": r.registry_version,
                        "pepper_version": r.pepper_version,
                        "records": r.records,
                    })
                );
            } else {
                println!(
                    "registry version {} is current: {} records under pepper version {}",
                    r.registry_version, r.records, r.pepper_version
                );
            }
            Ok(())
        }
        RegistryCommand::Discard { version } => {
            client
                .registry()
                .discard_version(client.request(pb::DiscardVersionRequest {
                    registry_version: version,
                }))
                .await?;
            if json {
                println!("{}", serde_json::json!({"discarded": version}));
            } else {
                println!("staged registry version {version} discarded");
            }
            Ok(())
        }
        RegistryCommand::PurgePepper { pepper_version } => {
            let r = client
                .registry()
                .purge_pepper(client.request(pb::PurgePepperRequest { pepper_version }))
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"pepper_version": r.pepper_version, "removed": r.removed})
                );
            } else {
                println!(
                    "removed {} records derived under pepper version {}",
                    r.removed, r.pepper_version
                );
            }
            Ok(())
        }
    }
}

/// What an import reads and writes.
struct Files {
    input: Option<PathBuf>,
    format: Option<FormatArg>,
    delete: Option<PathBuf>,
    rejects: Option<PathBuf>,
}

async fn import(client: &Client, files: Files, quiet: bool, stage: bool, json: bool) -> Result<()> {
    let Files {
        input,
        format,
        delete,
        rejects: rejects_path,
    } = files;
    if input.is_none() && delete.is_none() {
        bail!("give an export to import, a --delete list, or both");
    }
    let (rows, mut rejects) = match &input {
        Some(path) => read_export(path, format)?,
        None => (Vec::new(), Vec::new()),
    };
    let deletes = match &delete {
        Some(path) => delete_list(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => Vec::new(),
    };
    let mut chunks = chunks(&rows, &deletes);
    if let Some((_, first)) = chunks.first_mut() {
        first.stage_only = stage;
    }
    let total = (rows.len() + deletes.len()) as u64;
    let bar = (!quiet).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("sending");
        bar
    });
    let sent = bar.clone();
    let stream = tokio_stream::iter(chunks).map(move |(rows, chunk)| {
        if let Some(bar) = &sent {
            bar.inc(rows);
            if chunk.last {
                bar.set_message("hashing on the server");
            }
        }
        chunk
    });
    // The call lasts as long as the server's hashing: no client deadline
    // (the server bounds it by transport.import_timeout_secs).
    let response = client
        .registry()
        .import_records(client.request_with_deadline(stream, None))
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let r = response?.into_inner();
    // The reader's rejects and the server's, by line: the report
    // `ekycd import` writes for the same file.
    rejects.extend(r.rejects.iter().map(|x| Reject {
        line: x.line,
        field: x.field.clone(),
        rule: x.rule.clone(),
        description: x.description.clone(),
    }));
    rejects.sort_by_key(|x| x.line);
    let mut lines: Vec<u64> = rejects.iter().map(|x| x.line).collect();
    lines.dedup();
    let rejected = lines.len() as u64 + r.rejects_omitted;
    let report_path = rejects_path.unwrap_or_else(|| {
        let base = input
            .as_deref()
            .or(delete.as_deref())
            .unwrap_or(Path::new("import"));
        let mut name = base.as_os_str().to_owned();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let file = std::fs::File::create(&report_path)
        .with_context(|| format!("cannot create {}", report_path.display()))?;
    write_reject_report(file, &rejects)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    let report = serde_json::json!({
        "rows": r.rows,
        "rejected": rejected,
        "inserted": r.inserted,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "deleted": r.deleted,
        "delete_not_found": r.delete_not_found,
        "registry_version": r.registry_version,
        "staged_version": r.staged_version,
        "pepper_version": r.pepper_version,
        "records": r.records,
    });
    println!("{report}");
    if !json {
        eprintln!(
            "{} rows, {rejected} rejected (see {}), {} inserted, {} updated, {} unchanged, {} deleted",
            r.rows,
            report_path.display(),
            r.inserted,
            r.updated,
            r.unchanged,
            r.deleted,
        );
        if r.staged_version > 0 {
            eprintln!(
                "registry version {} staged ({} records under pepper version {}); version {} answers until `ekyc registry publish --version {}`",
                r.staged_version, r.records, r.pepper_version, r.registry_version, r.staged_version
            );
        } else {
            eprintln!(
                "registry version {}: {} records under pepper version {}",
                r.registry_version, r.records, r.pepper_version
            );
        }
        if r.rejects_omitted > 0 {
            eprintln!(
                "the server returned the first rejects only; {} more are counted, not listed",
                r.rejects_omitted
            );
        }
    }
    Ok(())
}

fn read_export(path: &Path, format: Option<FormatArg>) -> Result<(Vec<RawRow>, Vec<Reject>)> {
    let format = match format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None => Format::from_path(path).with_context(|| {
            format!(
                "{}: cannot tell the format from the extension; pass --format csv|jsonl",
                path.display()
            )
        })?,
    };
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_rows_from(BufReader::new(file), format).with_context(|| path.display().to_string())
}

/// The import's messages, each under [`CHUNK_BYTES`], the last marked, with
/// the number of rows each carries (for the progress bar).
fn chunks(rows: &[RawRow], deletes: &[RawRow]) -> Vec<(u64, pb::ImportRecordsRequest)> {
    let mut out = Vec::new();
    let mut chunk = pb::ImportRecordsRequest::default();
    let (mut in_chunk, mut bytes) = (0u64, 0usize);
    for row in rows {
        let record = pb::RegistryRecord {
            line: row.line,
            fields: row
                .values
                .iter()
                .map(|(name, value)| pb::RegistryField {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        };
        // The field's tag and length prefix come on top of the message.
        bytes += record.encoded_len() + 8;
        chunk.records.push(record);
        in_chunk += 1;
        if bytes >= CHUNK_BYTES {
            out.push((in_chunk, std::mem::take(&mut chunk)));
            (in_chunk, bytes) = (0, 0);
        }
    }
    for row in deletes {
        let delete = pb::RegistryDelete {
            line: row.line,
            id_number: row
                .values
                .first()
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        };
        bytes += delete.encoded_len() + 8;
        chunk.deletes.push(delete);
        in_chunk += 1;
        if bytes >= CHUNK_BYTES {
            out.push((in_chunk, std::mem::take(&mut chunk)));
            (in_chunk, bytes) = (0, 0);
        }
    }
    chunk.last = true;
    out.push((in_chunk, chunk));
    out
}
