//! The Prometheus endpoint over real HTTP: per-method call counts by
//! status code and latency histograms for every service, in OpenMetrics
//! text, with no personal data.

use std::time::Duration;

use ekyc_client::{Client, v1 as pb};
use ekyc_service::test_support::{TestOptions, TestServer, http_get, unique_request_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_is_counted_and_timed_by_method_and_code() {
    let server = TestServer::start(TestOptions::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = tokio::spawn(ekyc_service::metrics::serve(
        listener,
        std::sync::Arc::clone(&server.app),
        async {
            let _ = stopped.await;
        },
    ));

    let c = Client::connect(
        &server.endpoint(),
        Some(&server.api_key),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let citizen = ekyc_synth::citizen(42, 3);
    let ask = pb::VerifyRequest {
        request_id: unique_request_id("metrics"),
        id_number: citizen.id_number.clone(),
        claims: Some(pb::Claims {
            full_name: Some(citizen.full_name.clone()),
            date_of_birth: Some(citizen.date_of_birth.clone()),
            ..Default::default()
        }),
        purpose_code: "ACCOUNT_OPENING".into(),
        consent_reference: "consent-1".into(),
    };
    c.verify(ask.clone()).await.expect("answered");
    let bad = pb::VerifyRequest {
        id_number: "12345".into(),
        ..ask.clone()
    };
    c.verify_unchecked(bad).await.expect_err("invalid");
    // A verifier key may call neither admin nor billing methods: counted
    // all the same, by their code.
    c.admin()
        .get_tenant(c.request(pb::GetTenantRequest::default()))
        .await
        .expect_err("not for a verifier");
    c.billing()
        .list_price_plans(c.request(pb::ListPricePlansRequest {}))
        .await
        .expect_err("not for a verifier");

    let response = tokio::task::spawn_blocking(move || http_get(&addr.to_string(), "/metrics"))
        .await
        .expect("scrape");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let verify = r#"service="ekyc.v1.VerificationService",method="Verify""#;
    for line in [
        format!("ekyc_rpc_calls_total{{{verify},code=\"OK\"}} 1"),
        format!("ekyc_rpc_calls_total{{{verify},code=\"INVALID_ARGUMENT\"}} 1"),
        // The client fetched the signing keys to check the attestation.
        r#"ekyc_rpc_calls_total{service="ekyc.v1.VerificationService",method="ListSigningKeys",code="OK"} 1"#.to_string(),
        r#"ekyc_rpc_calls_total{service="ekyc.v1.TenantAdminService",method="GetTenant",code="PERMISSION_DENIED"} 1"#.to_string(),
        r#"ekyc_rpc_calls_total{service="ekyc.v1.BillingService",method="ListPricePlans",code="PERMISSION_DENIED"} 1"#.to_string(),
        format!("ekyc_rpc_duration_seconds_count{{{verify}}} 2"),
        format!("ekyc_rpc_duration_seconds_bucket{{le=\"+Inf\",{verify}}} 2"),
        r#"ekyc_rpc_duration_seconds_count{service="ekyc.v1.BillingService",method="ListPricePlans"} 1"#.to_string(),
        r#"ekyc_rpc_duration_seconds_count{service="ekyc.v1.TenantAdminService",method="GetTenant"} 1"#.to_string(),
        "ekyc_verify_calls_total{outcome=\"answered\"} 1".to_string(),
        "# TYPE ekyc_rpc_duration_seconds histogram".to_string(),
    ] {
        assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
    }
    assert!(body.ends_with("# EOF\n"), "{body}");
    // The buckets are cumulative and end with every call.
    let buckets: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with("ekyc_rpc_duration_seconds_bucket{") && l.contains(verify))
        .map(|l| l.rsplit(' ').next().expect("value").parse().expect("count"))
        .collect();
    assert!(buckets.len() > 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    for private in [
        &citizen.id_number,
        &citizen.full_name,
        &citizen.date_of_birth,
    ] {
        assert!(!body.contains(private.as_str()), "personal data in metrics");
    }

    let missing = tokio::task::spawn_blocking(move || http_get(&addr.to_string(), "/other"))
        .await
        .expect("scrape");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    // The endpoint stops when told to.
    stop.send(()).expect("endpoint running");
    tokio::time::timeout(Duration::from_secs(5), endpoint)
        .await
        .expect("stops")
        .expect("task");
    server.stop().await;
}
