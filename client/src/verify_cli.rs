//! `ekyc verify`: one Verify from flags or a demo samples file, its answer
//! checked and printed as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use ekyc_client::{Client, ClientError, field_name, result_name, v1 as pb};
use serde::{Deserialize, Serialize};

use crate::output::print_status;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The subject's ID number (12-digit citizen ID or 9-digit legacy ID).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Claimed full name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Claimed date of birth (YYYY-MM-DD, YYYY-MM, YYYY or DD/MM/YYYY).
    #[arg(long)]
    pub(crate) dob: Option<String>,
    /// Claimed gender.
    #[arg(long)]
    pub(crate) gender: Option<String>,
    /// Claimed nationality (ISO 3166-1 alpha-2).
    #[arg(long)]
    pub(crate) nationality: Option<String>,
    /// Claimed place of origin.
    #[arg(long)]
    pub(crate) origin: Option<String>,
    /// Claimed place of residence.
    #[arg(long)]
    pub(crate) residence: Option<String>,
    /// Claimed ID card issue date.
    #[arg(long)]
    pub(crate) issue_date: Option<String>,
    /// Claimed ID card expiry date.
    #[arg(long)]
    pub(crate) expiry_date: Option<String>,
    /// Claimed phone number.
    #[arg(long)]
    pub(crate) phone: Option<String>,
    /// Take the claims from a demo samples file (`ekycd demo` writes one).
    #[arg(long)]
    pub(crate) samples: Option<PathBuf>,
    /// Which sample of the file (0-based); explicit flags override its fields.
    #[arg(long, default_value_t = 0)]
    pub(crate) sample: usize,
    /// With --samples: send only these fields (comma-separated names),
    /// e.g. full_name,date_of_birth.
    #[arg(long, value_delimiter = ',')]
    pub(crate) fields: Vec<String>,
    /// Purpose code recorded with the verification.
    #[arg(long, default_value = "ACCOUNT_OPENING")]
    pub(crate) purpose: String,
    /// Reference of the customer's consent record.
    #[arg(long, default_value = "cli-consent")]
    pub(crate) consent: String,
    /// Request id (idempotency key) [default: generated].
    #[arg(long)]
    pub(crate) request_id: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A sample in `ekycd demo`'s samples file.
#[derive(Deserialize)]
pub(crate) struct Sample {
    pub(crate) note: String,
    pub(crate) claims: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct FieldOut {
    pub(crate) field: String,
    pub(crate) result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) score: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct VerifyOut {
    pub(crate) decision: &'static str,
    pub(crate) transaction_id: String,
    pub(crate) request_id: String,
    pub(crate) registry_version: u64,
    pub(crate) subject_status: &'static str,
    pub(crate) results: Vec<FieldOut>,
    pub(crate) attestation: AttestationOut,
}

#[derive(Serialize)]
pub(crate) struct AttestationOut {
    pub(crate) verified: bool,
    pub(crate) key_id: String,
    pub(crate) payload_hex: String,
    pub(crate) signature_hex: String,
}

pub(crate) async fn verify(client: &Client, args: VerifyArgs) -> Result<ExitCode> {
    let request = build_request(&args)?;
    let request_id = request.request_id.clone();
    let answer = match client.verify(request).await {
        Ok(a) => a,
        Err(ClientError::Status(status)) => {
            print_status(&status, args.json);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let r = &answer.response;
    let att = r.attestation.clone().unwrap_or_default();
    let out = VerifyOut {
        decision: decision_name(r),
        transaction_id: r.transaction_id.clone(),
        request_id,
        registry_version: r.registry_version,
        subject_status: subject_status_name(r),
        results: r.results.iter().map(FieldOut::from).collect(),
        attestation: AttestationOut {
            verified: true,
            key_id: att.key_id,
            payload_hex: hex::encode(&att.payload),
            signature_hex: hex::encode(&att.signature),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("decision: {}", out.decision);
        for f in &out.results {
            match f.score {
                Some(s) => println!("  {:<20} {:<14} score {s}", f.field, f.result),
                None => println!("  {:<20} {}", f.field, f.result),
            }
        }
        println!(
            "transaction {} (request {}), registry version {}",
            out.transaction_id, out.request_id, out.registry_version
        );
        println!(
            "attestation: signature verified with key {}",
            out.attestation.key_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `YES` or `NO`.
pub(crate) fn decision_name(r: &pb::VerifyResponse) -> &'static str {
    if r.decision == pb::Decision::Yes as i32 {
        "YES"
    } else {
        "NO"
    }
}

/// `FOUND`, `NOT_FOUND`, or `UNDISCLOSED` (the tenant's policy keeps it
/// from the answer).
pub(crate) fn subject_status_name(r: &pb::VerifyResponse) -> &'static str {
    match pb::SubjectStatus::try_from(r.subject_status) {
        Ok(pb::SubjectStatus::Found) => "FOUND",
        Ok(pb::SubjectStatus::NotFound) => "NOT_FOUND",
        _ => "UNDISCLOSED",
    }
}

impl From<&pb::FieldResult> for FieldOut {
    fn from(f: &pb::FieldResult) -> FieldOut {
        FieldOut {
            field: field_name(f.field),
            result: result_name(f.result),
            score: f.score,
        }
    }
}

pub(crate) fn build_request(args: &VerifyArgs) -> Result<pb::VerifyRequest> {
    let mut values: std::collections::BTreeMap<String, String> = Default::default();
    if let Some(path) = &args.samples {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let samples: Vec<Sample> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a samples file", path.display()))?;
        let sample = samples
            .into_iter()
            .nth(args.sample)
            .with_context(|| format!("{} has no sample {}", path.display(), args.sample))?;
        eprintln!("sample {}: {}", args.sample, sample.note);
        values = sample
            .claims
            .into_iter()
            .filter(|(k, v)| {
                !v.is_empty()
                    && (k == "id_number" || args.fields.is_empty() || args.fields.contains(k))
            })
            .collect();
    }
    let flags = [
        ("id_number", &args.id),
        ("full_name", &args.name),
        ("date_of_birth", &args.dob),
        ("gender", &args.gender),
        ("nationality", &args.nationality),
        ("place_of_origin", &args.origin),
        ("place_of_residence", &args.residence),
        ("id_issue_date", &args.issue_date),
        ("id_expiry_date", &args.expiry_date),
        ("phone_number", &args.phone),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            values.insert(k.to_string(), v.clone());
        }
    }
    let mut take = |k: &str| values.remove(k);
    let request_id = args.request_id.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("cli-{}-{nanos}", std::process::id())
    });
    Ok(pb::VerifyRequest {
        request_id,
        id_number: take("id_number").unwrap_or_default(),
        claims: Some(pb::Claims {
            full_name: take("full_name"),
            date_of_birth: take("date_of_birth"),
            gender: take("gender"),
            nationality: take("nationality"),
            place_of_origin: take("place_of_origin"),
            place_of_residence: take("place_of_residence"),
            id_issue_date: take("id_issue_date"),
            id_expiry_date: take("id_expiry_date"),
            phone_number: take("phone_number"),
        }),
        purpose_code: args.purpose.clone(),
        consent_reference: args.consent.clone(),
    })
}
