//! The `ekyc` binary driven as a user drives it, shared by the CLI tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

/// The `ekyc` binary pointed at one server with one key file.
pub struct Ekyc {
    pub endpoint: String,
    pub key_file: PathBuf,
}

impl Ekyc {
    pub fn new(endpoint: &str, dir: &Path, name: &str, key: &str) -> Ekyc {
        let key_file = dir.join(name);
        std::fs::write(&key_file, key).expect("write key file");
        Ekyc {
            endpoint: endpoint.to_string(),
            key_file,
        }
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ekyc"))
            .env_remove("EKYC_API_KEY")
            .env_remove("EKYC_ENDPOINT")
            .args(["--endpoint", &self.endpoint, "--api-key-file"])
            .arg(&self.key_file)
            .args(args)
            .output()
            .await
            .expect("run ekyc")
    }

    /// Runs a command that must succeed and returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "ekyc {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a command with `--json` that must succeed and parses its stdout.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.ok(&args).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ekyc {args:?}: {e}: {text}"))
    }

    /// Runs a command that must fail with exit code 1 (a refusal or a
    /// failed check) and returns stdout and stderr together.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "ekyc {args:?}: {printed}");
        printed
    }
}
