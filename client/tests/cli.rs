//! The `ekyc` CLI against a real server loaded the way `ekycd demo` loads
//! it: the demo's sample claims give the documented answers.

use std::path::Path;
use std::process::Output;

use tokio::process::Command;

use ekyc_service::demo::{self, DemoOptions};
use ekyc_service::import::ProgressStyle;
use ekyc_service::test_support::{TestOptions, TestServer};

async fn ekyc(endpoint: &str, key_file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ekyc"))
        .env_remove("EKYC_API_KEY")
        .env_remove("EKYC_ENDPOINT")
        .args(["--endpoint", endpoint, "--api-key-file"])
        .arg(key_file)
        .args(args)
        .output()
        .await
        .expect("run ekyc")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn results(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["field"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_samples_give_the_documented_answers() {
    let server = TestServer::start(TestOptions::default()).await;
    let out_dir = server.dir.path().join("demo-out");
    let info = demo::prepare(
        &server.app,
        &DemoOptions {
            citizens: 50,
            seed: 42,
            out_dir: out_dir.clone(),
            progress: ProgressStyle::Quiet,
        },
    )
    .await
    .expect("demo");
    let endpoint = server.endpoint();
    let samples = info.samples_file.to_str().expect("path").to_string();
    let key = info.api_key_file.clone();

    let run = |sample: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "verify",
            "--samples",
            samples.as_str(),
            "--sample",
            sample,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (endpoint, key) = (endpoint.clone(), key.clone());
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ekyc(&endpoint, &key, &args).await
        }
    };
    let outputs = (
        run("0", &[]).await,
        run("3", &["--fields", "full_name,date_of_birth"]).await,
        run("4", &[]).await,
        run("5", &[]).await,
    );

    let all = json(&outputs.0);
    assert_eq!(all["decision"], "YES");
    assert!(results(&all).iter().all(|r| r.ends_with("=MATCH")), "{all}");
    assert_eq!(all["attestation"]["verified"], true);

    let folded = json(&outputs.1);
    assert_eq!(
        results(&folded),
        vec!["full_name=MATCH_FOLDED", "date_of_birth=MATCH"]
    );

    let wrong = json(&outputs.2);
    assert_eq!(wrong["decision"], "NO");
    assert!(results(&wrong).contains(&"date_of_birth=NO_MATCH".to_string()));
    assert!(results(&wrong).contains(&"full_name=MATCH".to_string()));

    let unknown = json(&outputs.3);
    assert_eq!(unknown["decision"], "NO");
    assert!(
        results(&unknown).iter().all(|r| r.ends_with("=NO_MATCH")),
        "{unknown}"
    );
    assert_eq!(unknown["subject_status"], "UNDISCLOSED");

    // Human output, and a refused request naming the field and rule.
    let human = ekyc(
        &endpoint,
        &key,
        &["verify", "--samples", &samples, "--sample", "0"],
    )
    .await;
    let bad = ekyc(
        &endpoint,
        &key,
        &["verify", "--id", "079085001234", "--dob", "1990-02-30"],
    )
    .await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("decision: YES") && text.contains("attestation: signature verified"),
        "{text}"
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("claims.date_of_birth: IMPOSSIBLE_DATE"),
        "{err}"
    );
    assert!(!err.contains("1990-02-30"), "errors never echo values");
    server.stop().await;
}
