//! Independent implementations agree with ours: an attestation verifies in
//! Python from the public key and docs/attestation.md alone, and the
//! reference C Argon2 derives the same keys (scripts/).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_domain::Field;
use ekyc_domain::keys::{Form, KdfMemory, KdfParams, Pepper, derive_key, derive_salt};
use ekyc_domain::normalize::normalize_id;
use ekyc_service::test_support::{TestOptions, TestServer};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// Runs a Python script with `input` on stdin; fails loudly (never skips)
/// when Python or its packages are missing.
fn python(name: &str, input: &str) -> String {
    let python = std::env::var("EKYC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(script(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (see .ci/run)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "{name} failed (pip install -r scripts/requirements.txt?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_verifies_in_python_and_any_flipped_byte_fails() {
    let server = TestServer::start(TestOptions::default()).await;
    let client = Client::connect(
        &server.endpoint(),
        Some(&server.api_key),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let citizen = ekyc_synth::citizen(42, 7);
    let request = pb::VerifyRequest {
        request_id: "bank-req-0001".into(),
        id_number: citizen.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(citizen.full_name.clone()),
            date_of_birth: Some("1901-01-01".into()),
            gender: Some(citizen.gender.clone()),
            ..Default::default()
        }),
        purpose_code: "SIM_REGISTRATION".into(),
        consent_reference: "consent/2026/000042".into(),
    };
    let answer = client.verify(request.clone()).await.expect("verify");
    let keys = client.signing_keys().await.expect("keys");
    let att = answer.response.attestation.clone().expect("attestation");
    let key = keys
        .iter()
        .find(|k| k.key_id == att.key_id)
        .expect("signing key is published");

    let mut attestations = vec![(att.payload.clone(), att.signature.clone())];
    for i in 0..att.payload.len() {
        let mut p = att.payload.clone();
        p[i] ^= 0x01;
        attestations.push((p, att.signature.clone()));
    }
    for i in 0..att.signature.len() {
        let mut s = att.signature.clone();
        s[i] ^= 0x01;
        attestations.push((att.payload.clone(), s));
    }
    let claims: serde_json::Map<String, serde_json::Value> = request
        .claims
        .as_ref()
        .expect("claims")
        .present()
        .into_iter()
        .map(|(f, v)| {
            let name = Field::from_code(f as u8).expect("field").name();
            (name.to_string(), serde_json::Value::String(v.to_string()))
        })
        .collect();
    let input = serde_json::json!({
        "public_key_hex": hex::encode(&key.public_key),
        "request": {
            "request_id": request.request_id,
            "id_number": request.id_number,
            "claims": claims,
            "purpose_code": request.purpose_code,
            "consent_reference": request.consent_reference,
        },
        "attestations": attestations.iter().map(|(p, s)| serde_json::json!({
            "payload_hex": hex::encode(p),
            "signature_hex": hex::encode(s),
        })).collect::<Vec<_>>(),
    });
    let output = python("verify_attestation.py", &input.to_string());
    let verdicts: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).expect("json verdict"))
        .collect();
    assert_eq!(verdicts.len(), attestations.len());

    let genuine = &verdicts[0];
    assert_eq!(genuine["ok"], true, "{genuine}");
    assert_eq!(
        genuine["decision"], 2,
        "a wrong birth date means decision no"
    );
    assert_eq!(genuine["transaction_id"], answer.response.transaction_id);
    let shown: Vec<serde_json::Value> = answer
        .response
        .results
        .iter()
        .map(|r| serde_json::json!([r.field, r.result, r.score]))
        .collect();
    assert_eq!(genuine["results"], serde_json::Value::Array(shown));
    for (i, v) in verdicts.iter().enumerate().skip(1) {
        assert_eq!(v["ok"], false, "tampered attestation {i} verified: {v}");
    }

    // The same answer checked against a request the client did not send
    // (another birth date) must fail too.
    let mut forged = input.clone();
    forged["request"]["claims"]["date_of_birth"] = "1985-01-01".into();
    forged["attestations"] = serde_json::json!([input["attestations"][0]]);
    let out = python("verify_attestation.py", &forged.to_string());
    assert!(
        out.contains("\"ok\": false") && out.contains("claims digest"),
        "{out}"
    );
    server.stop().await;
}

#[test]
fn reference_c_argon2_derives_the_same_keys() {
    let out = python("hashing_kat.py", "");
    let expected: serde_json::Value = serde_json::from_str(&out).expect("json");

    let mut pepper_bytes = [0u8; 32];
    for (i, b) in pepper_bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    let pepper = Pepper::new(1, &pepper_bytes);
    let id = normalize_id("079085001234").expect("id");
    let small = KdfParams {
        id: 9,
        m_kib: 64,
        t: 1,
        p: 1,
    };
    let k = derive_key(&pepper, &small, &id, &mut KdfMemory::new(&small)).expect("derive");
    let k_default = derive_key(
        &pepper,
        &KdfParams::DEFAULT,
        &id,
        &mut KdfMemory::new(&KdfParams::DEFAULT),
    )
    .expect("derive");
    assert_eq!(expected["salt"], hex::encode(derive_salt(&pepper, &id)));
    assert_eq!(expected["locator"], hex::encode(k.locator()));
    assert_eq!(expected["audit_subject"], hex::encode(k.audit_subject()));
    assert_eq!(
        expected["tag_full_name"],
        hex::encode(k.tag(Field::FullName, Form::Exact, "nguyễn văn an"))
    );
    assert_eq!(
        expected["tag_full_name_folded"],
        hex::encode(k.tag(Field::FullName, Form::Folded, "nguyen van an"))
    );
    assert_eq!(
        expected["locator_default_params"],
        hex::encode(k_default.locator())
    );
}
