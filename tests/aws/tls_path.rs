//! The operator's AWS client over TLS, end to end: moto behind an HTTPS stand-in whose CA is
//! made at start (`local_apiserver::tls_standin`). The client reaches AWS there only when it
//! trusts that CA through the CA bundle (`spec.aws.caBundle`): not with the system roots alone,
//! not with another CA; and through `spec.proxy` it tunnels by CONNECT to the endpoint, except
//! for hosts in `noProxy`.

use std::net::SocketAddr;
use std::sync::Arc;

use hardened_csi_operator::aws::api::AwsApi;
use hardened_csi_operator::aws::sdk::{AwsSettings, ProxySettings, SdkAws};
use hardened_csi_operator::runtime::metrics::Metrics;
use local_apiserver::tls_standin::{ConnectProxy, TlsStandIn};

use crate::moto::Moto;

fn settings(moto: &Moto, endpoint: &str) -> AwsSettings {
    AwsSettings { endpoint_url: Some(endpoint.to_string()), ..moto.settings(Arc::new(Metrics::new())) }
}

async fn zones(settings: AwsSettings) -> Result<Vec<String>, String> {
    let api = SdkAws::new(settings).await.map_err(|e| format!("client: {e}"))?;
    api.availability_zones().await.map_err(|e| e.to_string())
}

async fn standin(moto: &Moto) -> TlsStandIn {
    let upstream: SocketAddr = format!("127.0.0.1:{}", moto.port).parse().expect("moto address");
    TlsStandIn::start(upstream).await.expect("HTTPS stand-in")
}

#[tokio::test]
async fn the_aws_client_trusts_a_private_ca_only_through_the_bundle() {
    let moto = Moto::start().await;
    let https = standin(&moto).await;
    // Plain HTTP to moto answers: the stand-in is the only difference below.
    assert!(!zones(moto.settings(Arc::new(Metrics::new()))).await.expect("moto answers").is_empty());

    // The system roots alone: the handshake fails, nothing reaches AWS.
    let err = zones(settings(&moto, &https.url)).await.expect_err("an unknown CA must not be trusted");
    assert!(err.contains("DescribeAvailabilityZones"), "{err}");
    // Another CA in the bundle: refused too.
    let other = standin(&moto).await;
    let wrong = AwsSettings { ca_bundle: Some(other.ca_pem.clone().into_bytes()), ..settings(&moto, &https.url) };
    zones(wrong).await.expect_err("a bundle of another CA must not be trusted");

    // The stand-in's CA in the bundle: the same call answers, through TLS.
    let trusted = AwsSettings { ca_bundle: Some(https.ca_pem.clone().into_bytes()), ..settings(&moto, &https.url) };
    let answered = zones(trusted).await.expect("trusted through the CA bundle");
    assert!(!answered.is_empty(), "{answered:?}");
}

#[tokio::test]
async fn the_aws_client_tunnels_through_the_proxy_except_for_no_proxy_hosts() {
    let moto = Moto::start().await;
    let https = standin(&moto).await;
    let proxy = ConnectProxy::start().await.expect("proxy");
    let authority = https.url.trim_start_matches("https://").to_string();
    let through = |no_proxy: Option<&str>| AwsSettings {
        ca_bundle: Some(https.ca_pem.clone().into_bytes()),
        proxy: Some(ProxySettings { url: proxy.url.clone(), no_proxy: no_proxy.map(str::to_string) }),
        ..settings(&moto, &https.url)
    };

    // Through the proxy: a CONNECT to the endpoint, then TLS end to end (the CA still checked).
    assert!(!zones(through(None)).await.expect("through the proxy").is_empty());
    let connects = proxy.connects();
    assert!(!connects.is_empty() && connects.iter().all(|c| *c == authority), "{connects:?}");
    // The proxy does not make an untrusted endpoint trusted.
    let untrusted = AwsSettings { ca_bundle: None, ..through(None) };
    zones(untrusted).await.expect_err("the proxy must not bypass the CA check");

    // The endpoint's host in noProxy: straight there, the proxy sees nothing more.
    let before = proxy.connects().len();
    assert!(!zones(through(Some("localhost"))).await.expect("direct").is_empty());
    assert_eq!(proxy.connects().len(), before, "{:?}", proxy.connects());
}
