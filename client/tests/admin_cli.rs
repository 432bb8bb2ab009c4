//! The agency-admin commands of the `ekyc` CLI (`tenants`, `keys`, `audit`)
//! against a real server, used the way an operator would: create a tenant,
//! change it, issue, rotate and revoke its keys, and read the audit trail.

use tokio::process::Command;

use ekyc_service::tenants;
use ekyc_service::test_support::{TestOptions, TestServer};

mod support;
use support::Ekyc;

fn str_of<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_admin_manages_tenants_keys_and_reads_the_audit_trail() {
    let server = TestServer::start(TestOptions::default()).await;
    let (_, issued) = tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
        .await
        .expect("bootstrap");
    let endpoint = server.endpoint();
    let admin = Ekyc::new(&endpoint, server.dir.path(), "admin.key", &issued.token);
    let verifier = Ekyc::new(
        &endpoint,
        server.dir.path(),
        "verifier.key",
        &server.api_key,
    );

    // Create, show, list.
    let created = admin
        .json(&[
            "tenants",
            "create",
            "--name",
            "Acme Bank",
            "--allowed-fields",
            "full_name,date_of_birth",
            "--fuzzy",
            "--rate",
            "10",
            "--burst",
            "5",
        ])
        .await;
    let id = str_of(&created, "/tenant_id").to_string();
    assert!(id.starts_with("tn_"), "{created}");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["policy"]["fuzzy_matching"], true);
    assert_eq!(
        created["policy"]["allowed_fields"],
        serde_json::json!(["full_name", "date_of_birth"])
    );
    assert!(str_of(&created, "/create_time").ends_with('Z'), "{created}");

    let shown = admin.ok(&["tenants", "show", &id]).await;
    assert!(
        shown.contains(&id) && shown.contains("Acme Bank"),
        "{shown}"
    );
    assert!(
        shown.contains("status:") && shown.contains("ACTIVE"),
        "{shown}"
    );

    let table = admin.ok(&["tenants", "list"]).await;
    assert!(table.starts_with("TENANT_ID"), "{table}");
    assert!(
        table.contains("Acme Bank") && table.contains("test-bank"),
        "{table}"
    );
    // One tenant per page, followed to the end.
    let all = admin
        .json(&["tenants", "list", "--page-size", "1", "--all"])
        .await;
    let names: Vec<&str> = all["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 3, "{all}");
    for name in ["Acme Bank", "test-bank", "agency"] {
        assert!(names.contains(&name), "{all}");
    }
    assert_eq!(all["next_page_token"], "");

    // Update only what the flags name.
    admin
        .ok(&["tenants", "update", &id, "--burst", "20", "--no-fuzzy"])
        .await;
    let updated = admin.json(&["tenants", "show", &id]).await;
    assert_eq!(updated["policy"]["limits"]["burst"], 20);
    assert_eq!(updated["policy"]["limits"]["requests_per_second"], 10);
    assert_eq!(updated["policy"]["fuzzy_matching"], false);
    assert_eq!(updated["name"], "Acme Bank");
    let nothing = admin.run(&["tenants", "update", &id]).await;
    assert_eq!(nothing.status.code(), Some(2), "refused locally");
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("nothing to change"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );

    // Quota days in the tenant's zone, and its usage.
    admin
        .ok(&[
            "tenants",
            "update",
            &id,
            "--daily-quota",
            "10",
            "--time-zone",
            "Europe/Paris",
        ])
        .await;
    let usage = admin.json(&["tenants", "usage", &id]).await;
    assert_eq!(usage["time_zone"], "Europe/Paris", "{usage}");
    assert_eq!(usage["daily"]["limit_units"], 10, "{usage}");
    assert_eq!(usage["daily"]["used_units"], 0, "{usage}");
    assert_eq!(usage["daily"]["remaining_units"], 10, "{usage}");
    assert_eq!(usage["requests_per_second"], 10, "{usage}");
    assert_eq!(usage["shared"], false, "{usage}");
    let text = admin.ok(&["tenants", "usage", &id]).await;
    assert!(
        text.contains("0 units used of 10 (10 left)") && text.contains("this replica only"),
        "{text}"
    );
    let bad_zone = admin
        .run(&["tenants", "update", &id, "--time-zone", "Mars/Base"])
        .await;
    assert!(!bad_zone.status.success());
    assert!(
        String::from_utf8_lossy(&bad_zone.stderr).contains("UNKNOWN_TIME_ZONE"),
        "{}",
        String::from_utf8_lossy(&bad_zone.stderr)
    );

    // Suspend and resume.
    let suspended = admin
        .json(&["tenants", "suspend", &id, "--reason", "contract paused"])
        .await;
    assert_eq!(suspended["status"], "SUSPENDED");
    let resumed = admin.json(&["tenants", "resume", &id]).await;
    assert_eq!(resumed["status"], "ACTIVE");

    // Keys: issue, list, rotate, revoke.
    let key = admin
        .json(&["keys", "issue", "--tenant", &id, "--role", "verifier"])
        .await;
    let secret = str_of(&key, "/secret").to_string();
    let key_id = str_of(&key, "/api_key/key_id").to_string();
    assert!(secret.starts_with("ekyc_"), "{key}");
    assert_eq!(key["api_key"]["role"], "verifier");
    assert_eq!(key["api_key"]["expire_time"], serde_json::Value::Null);

    let finance = admin
        .ok(&[
            "keys",
            "issue",
            "--tenant",
            &id,
            "--role",
            "finance",
            "--ttl-days",
            "30",
        ])
        .await;
    assert!(finance.contains("shown once"), "{finance}");
    let finance_secret = finance
        .lines()
        .find(|l| l.starts_with("ekyc_"))
        .unwrap_or_else(|| panic!("no secret line in {finance}"))
        .to_string();

    let listed = admin.ok(&["keys", "list", "--tenant", &id]).await;
    assert!(listed.starts_with("KEY_ID"), "{listed}");
    assert!(listed.contains(&key_id), "{listed}");
    assert!(!listed.contains(&secret) && !listed.contains(&finance_secret));
    let listed = admin.json(&["keys", "list", "--tenant", &id]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(!listed.to_string().contains(&secret));

    let rotated = admin
        .json(&["keys", "rotate", &key_id, "--grace-seconds", "60"])
        .await;
    let new_secret = str_of(&rotated, "/secret").to_string();
    let new_key_id = str_of(&rotated, "/api_key/key_id").to_string();
    assert!(new_secret.starts_with("ekyc_") && new_secret != secret);
    assert_ne!(new_key_id, key_id);
    assert_eq!(rotated["replaced"]["key_id"], key_id.as_str());
    assert!(
        str_of(&rotated, "/replaced/expire_time").ends_with('Z'),
        "{rotated}"
    );

    let revoked = admin.json(&["keys", "revoke", &new_key_id]).await;
    assert_eq!(revoked["usable"], false);
    assert!(str_of(&revoked, "/revoke_time").ends_with('Z'), "{revoked}");

    // The audit trail names every change and never a secret.
    let trail = admin.ok(&["audit", "list", "--tenant", &id]).await;
    let events = admin.json(&["audit", "list", "--tenant", &id]).await;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    for action in [
        "tenant.create",
        "tenant.update",
        "tenant.suspend",
        "tenant.resume",
        "api_key.issue",
        "api_key.rotate",
        "api_key.revoke",
    ] {
        assert!(trail.contains(action), "{action} missing from {trail}");
        assert!(actions.contains(&action), "{action} missing from {events}");
    }
    assert!(trail.contains("policy.limits.burst"), "{trail}");
    let everything = admin.ok(&["audit", "list", "--json"]).await;
    for s in [&secret, &finance_secret, &new_secret, &issued.token] {
        assert!(!trail.contains(s.as_str()) && !everything.contains(s.as_str()));
    }

    // A refusal names the field and the rule, and exits 1.
    let bad = admin
        .run(&["tenants", "create", "--name", "x", "--rate", "-5"])
        .await;
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tenant.policy.limits.requests_per_second") && err.contains("NEGATIVE"),
        "{err}"
    );

    // A verifier key may not administer.
    let denied = verifier.run(&["tenants", "list"]).await;
    assert_eq!(denied.status.code(), Some(1));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("ROLE_NOT_ALLOWED"),
        "{err}"
    );
    assert!(denied.stdout.is_empty());

    // The signing keys moved to `signing-keys`.
    let signing = verifier.json(&["signing-keys"]).await;
    assert!(
        signing.as_array().is_some_and(|k| !k.is_empty()),
        "{signing}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_admin_clears_a_subjects_guard_with_the_id_on_stdin() {
    let server = TestServer::start(TestOptions::default()).await;
    let (_, issued) = tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
        .await
        .expect("bootstrap");
    let dir = server.dir.path();
    let admin = Ekyc::new(&server.endpoint(), dir, "admin.key", &issued.token);
    let verifier = Ekyc::new(&server.endpoint(), dir, "bank.key", &server.api_key);
    let citizen = ekyc_synth::citizen(42, 6);
    // Five wrong birth dates lock the subject out.
    for day in 1..=5 {
        let out = verifier
            .run(&[
                "verify",
                "--id",
                &citizen.id_number,
                "--dob",
                &format!("1970-01-0{day}"),
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = verifier
        .run(&[
            "verify",
            "--id",
            &citizen.id_number,
            "--dob",
            &citizen.date_of_birth,
        ])
        .await;
    assert!(!refused.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(printed.contains("SUBJECT_GUARD_TRIPPED"), "{printed}");

    // The ID goes in on stdin, never on the command line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ekyc"))
        .args(["--endpoint", &admin.endpoint, "--api-key-file"])
        .arg(&admin.key_file)
        .args([
            "guard",
            "clear",
            "--id-number",
            "-",
            "--reason",
            "ticket 42",
            "--json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run ekyc");
    use tokio::io::AsyncWriteExt as _;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{}\n", citizen.id_number).as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait");
    assert!(out.status.success());
    let cleared: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cleared["cleared_failures"], 5);
    verifier
        .ok(&[
            "verify",
            "--id",
            &citizen.id_number,
            "--dob",
            &citizen.date_of_birth,
        ])
        .await;
    let trail = admin.ok(&["audit", "list", "--json"]).await;
    assert!(
        trail.contains("subject_guard.clear") && trail.contains(str_of(&cleared, "/audit_subject"))
    );
    assert!(!trail.contains(&citizen.id_number));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_admin_records_a_tenants_legal_particulars() {
    let server = TestServer::start(TestOptions::default()).await;
    let (_, issued) = tenants::bootstrap(&server.app.store, server.app.limiter.config(), false)
        .await
        .expect("bootstrap");
    let admin = Ekyc::new(
        &server.endpoint(),
        server.dir.path(),
        "admin.key",
        &issued.token,
    );
    let created = admin
        .json(&[
            "tenants",
            "create",
            "--name",
            "Vietcombank",
            "--legal-name",
            "Ngân hàng TMCP Ngoại thương Việt Nam",
            "--tax-code",
            "0100112437",
        ])
        .await;
    let id = str_of(&created, "/tenant_id").to_string();
    assert_eq!(
        str_of(&created, "/legal/legal_name"),
        "Ngân hàng TMCP Ngoại thương Việt Nam"
    );
    // A bad tax code names its field and changes nothing.
    let refused = admin
        .run(&["tenants", "update", &id, "--tax-code", "12345"])
        .await;
    assert!(!refused.status.success());
    let printed = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(printed.contains("tenant.legal.tax_code"), "{printed}");
    let shown = admin.ok(&["tenants", "show", &id]).await;
    assert!(shown.contains("0100112437"), "{shown}");
    // Only the flag given changes.
    admin
        .ok(&[
            "tenants",
            "update",
            &id,
            "--address",
            "198 Trần Quang Khải, Hà Nội",
        ])
        .await;
    let shown = admin.json(&["tenants", "show", &id]).await;
    assert_eq!(str_of(&shown, "/legal/tax_code"), "0100112437");
    assert_eq!(
        str_of(&shown, "/legal/address"),
        "198 Trần Quang Khải, Hà Nội"
    );
    let trail = admin.ok(&["audit", "list", "--tenant", &id]).await;
    assert!(trail.contains("legal.address"), "{trail}");
    server.stop().await;
}
