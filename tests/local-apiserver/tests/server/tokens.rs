use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::common::{server, status};

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().map(val).collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (18 - 6 * i));
        let take = chunk.len() - 1;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..take]);
    }
    out
}

#[tokio::test]
async fn token_requests_return_a_jwt_with_the_requested_audiences() {
    let srv = server().await;
    let sas: Api<ServiceAccount> = Api::default_namespaced(srv.client());
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "ebs-csi-controller-sa"}})).unwrap();
    let sa = sas.create(&PostParams::default(), &sa).await.unwrap();
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 3600}}))
            .unwrap();
    let client = srv.client();
    let post = |name: &str| {
        axum::http::Request::post(format!("/api/v1/namespaces/default/serviceaccounts/{name}/token"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req).unwrap())
            .unwrap()
    };
    let tr: TokenRequest = client.request(post("ebs-csi-controller-sa")).await.unwrap();
    let st = tr.status.unwrap();
    let token = st.token.unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:ebs-csi-controller-sa");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], json!(sa.metadata.uid.unwrap()));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    let err = status(client.request::<TokenRequest>(post("missing")).await);
    assert_eq!(err.code, 404);
    assert_eq!(srv.counters().requests("create", "serviceaccounts/token"), 2);
}
