//! TLS and mutual TLS: API keys over TLS, a client certificate whose
//! subject maps to a tenant, and the refusals around them.

use std::path::Path;
use std::time::Duration;

use ekyc_client::{Client, ClientError, v1 as pb};
use ekyc_service::config::TlsConfig;
use ekyc_service::store::{Tenant, TenantPolicy};
use ekyc_service::tenants::{self, Actor};
use ekyc_service::test_support::{TestOptions, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ekyc test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca cert");
        Pki {
            ca_pem: cert.pem(),
            ca: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and key (PEM) signed by this CA.
    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path
}

fn tls(pki: &Pki, identity: Option<&(String, String)>) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        c = c.identity(Identity::from_pem(cert, key));
    }
    c
}

fn request(c: &ekyc_synth::Citizen) -> pb::VerifyRequest {
    pb::VerifyRequest {
        request_id: "tls-1".into(),
        id_number: c.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(c.full_name.clone()),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent".into(),
    }
}

async fn start(pki: &Pki, dir: &Path, require_client_cert: bool) -> TestServer {
    let (cert, key) = pki.leaf("localhost", &["localhost"]);
    TestServer::start(TestOptions {
        tls: TlsConfig {
            cert_file: Some(write(dir, "server.pem", &cert)),
            key_file: Some(write(dir, "server.key", &key)),
            client_ca_file: Some(write(dir, "ca.pem", &pki.ca_pem)),
            require_client_cert,
        },
        ..TestOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_over_tls_and_client_certificates_map_to_tenants() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&pki, dir.path(), false).await;
    let gateway = tenants::new_tenant(
        "bank-x",
        TenantPolicy::default(),
        Some("bank-x-gateway".into()),
        server.app.limiter.config(),
    )
    .expect("tenant");
    tenants::create_tenant(&server.app.store, &gateway, &Actor::local("test"))
        .await
        .expect("create");
    let citizen = ekyc_synth::citizen(42, 1);
    let timeout = Duration::from_secs(10);

    // An API key over TLS, no client certificate.
    let keyed = Client::connect_with_tls(
        &server.endpoint(),
        Some(&server.api_key),
        timeout,
        Some(tls(&pki, None)),
    )
    .await
    .expect("tls connect");
    let answer = keyed
        .verify(request(&citizen))
        .await
        .expect("verify over tls");
    assert_eq!(
        answer.attestation.tenant_id,
        tenant_id_of(&server, "test-bank").await
    );

    // A client certificate alone: the tenant comes from its subject.
    let id = pki.leaf("bank-x-gateway", &[]);
    let mtls = Client::connect_with_tls(
        &server.endpoint(),
        None,
        timeout,
        Some(tls(&pki, Some(&id))),
    )
    .await
    .expect("mtls connect");
    let answer = mtls
        .verify(request(&citizen))
        .await
        .expect("verify over mtls");
    assert_eq!(answer.attestation.tenant_id, gateway.id);
    assert_eq!(answer.response.decision, pb::Decision::Yes as i32);

    // A key of one tenant with the certificate of another is refused.
    let mixed = Client::connect_with_tls(
        &server.endpoint(),
        Some(&server.api_key),
        timeout,
        Some(tls(&pki, Some(&id))),
    )
    .await
    .expect("connect");
    let s = mixed
        .verify_unchecked(request(&citizen))
        .await
        .expect_err("credentials disagree");
    assert_eq!(s.code(), Code::PermissionDenied);
    assert_eq!(
        s.get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .as_deref(),
        Some("CREDENTIALS_DISAGREE")
    );

    // A CA-signed certificate that maps to no tenant.
    let stranger = pki.leaf("someone-else", &[]);
    let c = Client::connect_with_tls(
        &server.endpoint(),
        None,
        timeout,
        Some(tls(&pki, Some(&stranger))),
    )
    .await
    .expect("connect");
    let s = c
        .verify_unchecked(request(&citizen))
        .await
        .expect_err("unknown subject");
    assert_eq!(s.code(), Code::Unauthenticated);
    assert_eq!(
        s.get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .as_deref(),
        Some("CLIENT_CERT_UNKNOWN")
    );

    // A certificate from another CA never completes the handshake.
    let rogue = Pki::new().leaf("bank-x-gateway", &[]);
    let refused = match Client::connect_with_tls(
        &server.endpoint(),
        None,
        timeout,
        Some(tls(&pki, Some(&rogue))),
    )
    .await
    {
        Err(_) => true,
        Ok(c) => c.verify_unchecked(request(&citizen)).await.is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");

    // Plaintext against a TLS port fails.
    let plain = format!("http://{}", server.addr);
    let refused = match Client::connect(&plain, Some(&server.api_key), timeout).await {
        Err(_) => true,
        Ok(c) => c.verify_unchecked(request(&citizen)).await.is_err(),
    };
    assert!(refused, "plaintext is refused on a TLS port");

    // Suspending the tenant refuses its certificate too.
    let mut suspended: Tenant = gateway.clone();
    suspended.status = ekyc_service::store::TenantStatus::Suspended;
    server
        .app
        .store
        .update_tenant(&suspended, gateway.updated_at_ms, &[])
        .await
        .expect("suspend");
    let s = mtls
        .verify_unchecked(request(&citizen))
        .await
        .expect_err("suspended");
    assert_eq!(s.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_refuse_connections_without_one() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&pki, dir.path(), true).await;
    let citizen = ekyc_synth::citizen(42, 1);
    let result = match Client::connect_with_tls(
        &server.endpoint(),
        Some(&server.api_key),
        Duration::from_secs(10),
        Some(tls(&pki, None)),
    )
    .await
    {
        Err(e) => Err(e),
        Ok(c) => c.verify(request(&citizen)).await.map(|_| ()),
    };
    assert!(
        matches!(
            result,
            Err(ClientError::Connect { .. }) | Err(ClientError::Status(_))
        ),
        "no client certificate, no service"
    );
    server.stop().await;
}

async fn tenant_id_of(server: &TestServer, name: &str) -> String {
    server
        .app
        .store
        .find_tenant_by_name(name)
        .await
        .expect("store")
        .expect("tenant")
        .id
}
