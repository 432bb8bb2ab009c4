//! `ekycd demo`: a synthetic registry, a demo tenant and sample claims, so a
//! new user can make matching and non-matching calls at once.
//!
//! The sample claims and the API key go to a directory *outside* the
//! service's store (default `./ekyc-demo`): they are what a bank would hold,
//! not what the registry holds. The citizens are synthetic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ekyc_synth::Citizen;
use serde::Serialize;

use crate::App;
use crate::auth;
use crate::clock;
use crate::import::{self, ImportReport, ProgressStyle, RawRow};
use crate::secrets::write_new_secret;
use crate::store::Role;
use crate::tenants;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many synthetic citizens to load.
    pub citizens: u64,
    /// Generator seed.
    pub seed: u64,
    /// Where the API key and sample claims are written.
    pub out_dir: PathBuf,
    /// How import progress is shown.
    pub progress: ProgressStyle,
}

/// What the demo set up.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    /// File holding the demo API key.
    pub api_key_file: PathBuf,
    /// File holding sample claims.
    pub samples_file: PathBuf,
    /// The import, if one ran (`None` when the registry was already loaded).
    pub import: Option<ImportReport>,
}

/// The demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Import failed.
    #[error(transparent)]
    Import(#[from] import::ImportError),
    /// Tenant setup failed.
    #[error(transparent)]
    Tenant(#[from] tenants::TenantError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Writing the demo files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The name of the demo tenant.
pub const DEMO_TENANT: &str = "demo-bank";

/// Loads the synthetic registry (unless the same one is loaded), ensures the
/// demo tenant and its key, and writes the sample files.
pub async fn prepare(app: &App, opts: &DemoOptions) -> Result<DemoInfo, DemoError> {
    let marker = format!(
        "seed={};citizens={};pepper=v{};kdf={}",
        opts.seed,
        opts.citizens,
        app.pool.primary_pepper(),
        app.pool.params().id
    );
    let import = if app.store.get_meta("demo_registry").await?.as_deref() == Some(marker.as_str()) {
        tracing::info!("demo registry already loaded; skipping import");
        None
    } else {
        tracing::info!(
            citizens = opts.citizens,
            "loading the synthetic demo registry"
        );
        let (report, rejects) =
            load_synthetic_registry(app, opts.seed, opts.citizens, opts.progress).await?;
        if !rejects.is_empty() {
            tracing::warn!(
                rejected = rejects.len(),
                "some synthetic rows were rejected"
            );
        }
        app.store.set_meta("demo_registry", &marker).await?;
        Some(report)
    };

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.out_dir).map_err(io(&opts.out_dir))?;
    let api_key_file = opts.out_dir.join("api-key");
    let actor = tenants::Actor::local("demo");
    let tenant =
        tenants::ensure_tenant(&app.store, DEMO_TENANT, app.limiter.config(), &actor).await?;
    // Reuse the key on disk if it still authenticates; otherwise issue one.
    let existing = std::fs::read_to_string(&api_key_file).ok();
    let still_valid = match existing.as_deref() {
        Some(k) => auth::authenticate(
            &app.store,
            &auth::Credential::api_key(Some(k.trim())),
            clock::now_ms(),
        )
        .await
        .is_ok_and(|c| c.tenant.id == tenant.id),
        None => false,
    };
    if !still_valid {
        let issued =
            tenants::issue_key(&app.store, &tenant, Role::Verifier, false, None, &actor).await?;
        let _ = std::fs::remove_file(&api_key_file);
        write_new_secret(&api_key_file, &issued.token).map_err(io(&api_key_file))?;
    }

    let samples_file = opts.out_dir.join("citizens.json");
    let samples = samples(opts.seed, opts.citizens);
    let json = serde_json::to_string_pretty(&samples).map_err(|e| DemoError::Io {
        path: samples_file.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&samples_file, json + "\n").map_err(io(&samples_file))?;
    Ok(DemoInfo {
        api_key_file,
        samples_file,
        import,
    })
}

/// Imports `count` synthetic citizens of `seed` into the app's registry.
pub async fn load_synthetic_registry(
    app: &App,
    seed: u64,
    count: u64,
    progress: ProgressStyle,
) -> Result<(ImportReport, Vec<import::Reject>), import::ImportError> {
    let rows = rows_from_citizens(ekyc_synth::citizens(seed, count));
    import::import_rows(
        &app.store,
        Arc::clone(&app.pool),
        rows,
        Vec::new(),
        Vec::new(),
        progress,
        &crate::tenants::Actor::local("demo"),
    )
    .await
}

/// Import rows for synthetic citizens.
pub fn rows_from_citizens(citizens: impl Iterator<Item = Citizen>) -> Vec<RawRow> {
    citizens
        .enumerate()
        .map(|(i, c)| RawRow {
            line: i as u64 + 2,
            values: vec![
                ("id_number".into(), c.id_number),
                ("full_name".into(), c.full_name),
                ("date_of_birth".into(), c.date_of_birth),
                ("gender".into(), c.gender),
                ("nationality".into(), c.nationality),
                ("place_of_origin".into(), c.place_of_origin),
                ("place_of_residence".into(), c.place_of_residence),
                ("id_issue_date".into(), c.id_issue_date),
                ("id_expiry_date".into(), c.id_expiry_date),
                ("phone_number".into(), c.phone_number),
            ],
        })
        .collect()
}

/// One sample for the demo user.
#[derive(Debug, Serialize)]
pub struct Sample {
    /// What the sample shows.
    pub note: String,
    /// The claims, as `ekyc verify` flags would take them.
    pub claims: Citizen,
}

/// A handful of registry citizens, the same name without diacritics, a
/// wrong birth date, and an ID that is not in the registry.
pub fn samples(seed: u64, count: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    for index in [0, 1, 2].into_iter().filter(|i| *i < count) {
        out.push(Sample {
            note: format!("citizen #{index} of the registry: every field matches"),
            claims: ekyc_synth::citizen(seed, index),
        });
    }
    if count > 0 {
        let c = ekyc_synth::citizen(seed, 0);
        out.push(Sample {
            note: "citizen #0 with the name typed without diacritics: MATCH_FOLDED (decision NO unless the tenant accepts folded matches)".into(),
            claims: Citizen {
                full_name: strip_diacritics(&c.full_name),
                ..c.clone()
            },
        });
        out.push(Sample {
            note: "citizen #0 with a wrong birth date: NO_MATCH, decision no".into(),
            claims: Citizen {
                date_of_birth: "1901-01-01".into(),
                ..c
            },
        });
    }
    // An index beyond the loaded range has a well-formed, unused ID.
    out.push(Sample {
        note: "a well-formed ID that is not in the registry: the uniform answer".into(),
        claims: ekyc_synth::citizen(seed, count + 1000),
    });
    out
}

/// Removes Vietnamese diacritics (and maps đ to d): how a customer types a
/// name on a keyboard without Vietnamese input. Used by samples and tests.
pub fn strip_diacritics(s: &str) -> String {
    // Vietnamese letters only: enough for synthetic names.
    const FROM: &str = "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴĐ";
    const TO: &str = "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyydAAAAAAAAAAAAAAAAAEEEEEEEEEEEIIIIIOOOOOOOOOOOOOOOOOUUUUUUUUUUUYYYYYD";
    s.chars()
        .map(|c| {
            FROM.chars()
                .position(|f| f == c)
                .and_then(|i| TO.chars().nth(i))
                .unwrap_or(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_vietnamese_diacritics() {
        assert_eq!(
            strip_diacritics("Nguyễn Thị Thủy Đào"),
            "Nguyen Thi Thuy Dao"
        );
    }

    #[test]
    fn samples_include_every_case() {
        let s = samples(42, 1000);
        assert_eq!(s.len(), 6);
        assert_ne!(s[5].claims.id_number, s[0].claims.id_number);
        assert_eq!(
            s[3].claims.full_name,
            strip_diacritics(&ekyc_synth::citizen(42, 0).full_name)
        );
    }
}
