//! A fake EC2 + STS + EBS + KMS speaking the real wire protocols (awsQuery XML; awsJson 1.1 for KMS,
//! which honours DryRun as KMS does, unlike moto), plugged into the SDK as
//! its HTTP client, so the SDK implementation itself (serialisation, pagination, retries,
//! signing, error parsing) is what the tests exercise. It records every request.
//!
//! Include it with `#[path = "../support/aws_fake.rs"] mod aws_fake;` (tests, benches): it needs
//! only the crate's normal dependencies. `Fake::new(volumes, snapshots).client()` is the
//! `AwsSettings::http_client` / `PollerSettings::http_client`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Req {
    pub action: String,
    pub params: HashMap<String, String>,
    pub host: String,
    pub authorization: String,
}

#[derive(Default)]
pub struct Fake {
    pub volumes: usize,
    pub snapshots: usize,
    /// Action -> how many answers are still RequestLimitExceeded (usize::MAX: always).
    pub throttle: Mutex<HashMap<String, usize>>,
    /// Action -> how many answers are still 503.
    pub unavailable: Mutex<HashMap<String, usize>>,
    /// Actions answered UnauthorizedOperation.
    pub deny: HashSet<String>,
    /// AssumeRoleWithWebIdentity answer: None = success, Some(code) = that error.
    pub sts_error: Option<String>,
    /// Answer every Describe page with the token it was sent (a paging bug).
    pub repeat_token: bool,
    /// Actions performed despite DryRun (an endpoint that ignores it): answered with success.
    pub ignore_dry_run: HashSet<String>,
    /// EKS Auth AssumeRoleForPodIdentity answer: None = success, Some(code) = that error.
    pub eks_auth_error: Option<String>,
    /// An account shared by two clusters, (this, other): even-numbered volumes and snapshots
    /// carry this cluster's tags (`ebs.csi.aws.com/cluster-name` and `kubernetes.io/cluster/<id>`
    /// `owned`), odd-numbered ones the other's, and Describe calls honour `tag:` filters as EC2
    /// does (on top of the default scope rules). None: every item is the requested cluster's.
    pub clusters: Option<(String, String)>,
    /// KMS: (operation, substring of the KeyId, AccessDeniedException message): that operation on
    /// a matching key is denied with that message (KMS names the policy that denied it).
    pub kms_deny: Vec<(String, String, String)>,
    /// KMS keys (as named, or an ARN substring) that do not exist: DescribeKey NotFoundException.
    pub kms_missing: HashSet<String>,
    /// KMS key (substring of the KeyId) -> KeyState other than Enabled.
    pub kms_state: HashMap<String, String>,
    pub requests: Mutex<Vec<Req>>,
}

/// The account of the fake's KMS keys named by ID or alias.
pub const KMS_ACCOUNT: &str = "123456789012";
/// KMS's message when an identity-based policy denies.
pub fn kms_identity_denial(op: &str, key: &str) -> String {
    format!(
        "User: {ASSUMED_ARN} is not authorized to perform: kms:{op} on resource: {key} because no identity-based \
            policy allows the kms:{op} action"
    )
}
/// KMS's message when the key policy denies.
pub fn kms_key_policy_denial(op: &str, key: &str) -> String {
    format!(
        "User: {ASSUMED_ARN} is not authorized to perform: kms:{op} on resource: {key} because no resource-based \
            policy allows the kms:{op} action"
    )
}

/// The key ARN the fake's DescribeKey resolves a key ID, alias or ARN to.
pub fn kms_arn(key: &str) -> String {
    if key.starts_with("arn:") && key.contains(":key/") {
        return key.to_string();
    }
    let id = key.rsplit('/').next().unwrap_or(key);
    let account = if key.starts_with("arn:") { key.split(':').nth(4).unwrap_or(KMS_ACCOUNT) } else { KMS_ACCOUNT };
    format!("arn:aws:kms:us-east-1:{account}:key/0000-{id}")
}

fn kms_error(status: u16, code: &str, message: &str) -> (u16, String) {
    (status, serde_json::json!({"__type": code, "message": message}).to_string())
}

pub const ASSUMED_KEY: &str = "ASIAIRSAEXAMPLE";
pub const ASSUMED_ARN: &str = "arn:aws:sts::123456789012:assumed-role/ebs-csi-driver/hardened-csi-operator-preflight";
pub const CALLER_ARN: &str = "arn:aws:iam::123456789012:user/operator";
pub const POD_IDENTITY_KEY: &str = "ASIAPODIDENTITYEXAMPLE";
pub const POD_IDENTITY_ARN: &str = "arn:aws:sts::123456789012:assumed-role/ebs-csi-pod-identity/eks-prod-ebs-csi-c-1";
/// The fake holds one cluster's volumes: whatever cluster ID a request filters on is theirs.
/// Volume (and snapshot) `i` carries `ebs.csi.aws.com/cluster-name=<id>` unless `i % 4 == 3`
/// (created by an older driver or the EKS add-on), and `kubernetes.io/cluster/<id>=owned` always.
pub fn has_cluster_name_tag(i: usize) -> bool {
    i % 4 != 3
}

/// Whether item `i` matches the first tag filter of a Describe request.
fn matches_scope(params: &HashMap<String, String>, i: usize) -> bool {
    match params.get("Filter.1.Name").map(String::as_str) {
        Some("tag:ebs.csi.aws.com/cluster-name") => has_cluster_name_tag(i),
        _ => true,
    }
}

pub fn volume_state(i: usize) -> &'static str {
    if i.is_multiple_of(10) { "available" } else { "in-use" }
}
pub fn volume_size(i: usize) -> u64 {
    10 + (i % 3) as u64
}
pub fn volume_type(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "gp3" } else { "gp2" }
}
pub fn volume_zone(i: usize) -> String {
    format!("us-east-1{}", ["a", "b", "c"][i % 3])
}
pub fn snapshot_state(j: usize) -> &'static str {
    if j.is_multiple_of(100) { "pending" } else { "completed" }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// REST/JSON services: the EBS direct API and EKS Auth.
fn json_path(path: &str) -> bool {
    path.starts_with("/snapshots") || path.starts_with("/clusters/")
}

fn ec2_error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                <Message>{message}</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
        ),
    )
}

fn is_sts(action: &str) -> bool {
    matches!(action, "GetCallerIdentity" | "AssumeRole" | "AssumeRoleWithWebIdentity")
}

/// An error in the protocol of the action's service (EC2 and STS wrap errors differently).
fn error(action: &str, status: u16, code: &str, message: &str) -> (u16, String) {
    if is_sts(action) { (status, sts_error(code, message).1) } else { ec2_error(status, code, message) }
}

fn sts_error(code: &str, message: &str) -> (u16, String) {
    (
        403,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                <Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
        ),
    )
}

fn ec2_ok(action: &str, inner: &str) -> (u16, String) {
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
                xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                <requestId>req-1</requestId>{inner}</{action}Response>"
        ),
    )
}

fn take(map: &Mutex<HashMap<String, usize>>, action: &str) -> bool {
    let mut m = map.lock().expect("lock");
    match m.get_mut(action) {
        Some(n) if *n > 0 => {
            if *n != usize::MAX {
                *n -= 1;
            }
            true
        }
        _ => false,
    }
}

impl Fake {
    pub fn new(volumes: usize, snapshots: usize) -> Self {
        Self { volumes, snapshots, ..Default::default() }
    }

    /// An account of `volumes` and `snapshots` of which half are cluster `this`'s (see `clusters`).
    pub fn shared(volumes: usize, snapshots: usize, this: &str, other: &str) -> Self {
        Self { volumes, snapshots, clusters: Some((this.into(), other.into())), ..Default::default() }
    }

    /// The cluster tags of item `i` (none for a one-cluster fake).
    fn cluster_tags(&self, i: usize) -> Vec<(String, String)> {
        let Some((this, other)) = &self.clusters else { return Vec::new() };
        let id = if i.is_multiple_of(2) { this } else { other };
        vec![
            ("ebs.csi.aws.com/cluster-name".into(), id.clone()),
            (format!("kubernetes.io/cluster/{id}"), "owned".into()),
        ]
    }

    /// The indices of the `total` items that every `tag:` filter of the request selects (EC2:
    /// filters are ANDed, the values of one filter ORed). Without `clusters`, all of them.
    fn selected(&self, params: &HashMap<String, String>, total: usize) -> Vec<usize> {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for n in 1.. {
            let Some(name) = params.get(&format!("Filter.{n}.Name")) else { break };
            let values = (1..).map_while(|v| params.get(&format!("Filter.{n}.Value.{v}")).cloned()).collect();
            filters.push((name.clone(), values));
        }
        if self.clusters.is_none() {
            return (0..total).collect();
        }
        (0..total)
            .filter(|i| {
                let tags = self.cluster_tags(*i);
                filters.iter().all(|(name, values)| match name.strip_prefix("tag:") {
                    Some(key) => tags.iter().any(|(k, v)| k == key && values.contains(v)),
                    None if name == "tag-key" => tags.iter().any(|(k, _)| values.contains(k)),
                    None => true,
                })
            })
            .collect()
    }

    fn tag_xml(&self, i: usize) -> String {
        self.cluster_tags(i).iter().map(|(k, v)| format!("<item><key>{k}</key><value>{v}</value></item>")).collect()
    }

    /// The SDK HTTP client answering from this fake.
    pub fn client(self: &Arc<Self>) -> SharedHttpClient {
        let fake = self.clone();
        infallible_client_fn(move |req| {
            let body = req.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let host = req.uri().host().unwrap_or_default().to_string();
            let authorization =
                req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let path = req.uri().path().to_string();
            let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_string);
            let kms = target.is_some();
            let (status, text) = fake.handle(&body, &host, &path, authorization, target);
            let mut resp = Response::new(StatusCode::try_from(status).expect("status"), SdkBody::from(text));
            let mut headers = Headers::new();
            headers.insert(
                "content-type",
                if kms {
                    "application/x-amz-json-1.1"
                } else if json_path(&path) {
                    "application/json"
                } else {
                    "text/xml"
                },
            );
            *resp.headers_mut() = headers;
            resp.try_into_http1x().expect("http 1.x response")
        })
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn count(&self, action: &str) -> usize {
        self.requests().iter().filter(|r| r.action == action).count()
    }

    fn handle(
        &self,
        body: &str,
        host: &str,
        path: &str,
        authorization: String,
        target: Option<String>,
    ) -> (u16, String) {
        // KMS is awsJson 1.1: POST / with X-Amz-Target TrentService.<Operation> and a JSON body.
        if let Some(op) = target.as_deref().and_then(|t| t.strip_prefix("TrentService.")) {
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let mut params = HashMap::new();
            if let Some(map) = json.as_object() {
                for (k, v) in map {
                    params.insert(k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                }
            }
            self.requests.lock().expect("lock").push(Req {
                action: op.to_string(),
                params: params.clone(),
                host: host.to_string(),
                authorization,
            });
            return self.kms_answer(op, &params);
        }
        let params: HashMap<String, String> = body
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        // The EBS direct API is REST/JSON: GET /snapshots/{id}/blocks; EKS Auth is REST/JSON:
        // POST /clusters/{name}/assume-role-for-pod-identity with {"token": ...}.
        let action = if path.starts_with("/snapshots/") {
            "ListSnapshotBlocks".to_string()
        } else if path.ends_with("/assume-role-for-pod-identity") {
            let mut params = HashMap::new();
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            params.insert("token".to_string(), json["token"].as_str().unwrap_or_default().to_string());
            params.insert("cluster".to_string(), path.split('/').nth(2).unwrap_or_default().to_string());
            self.requests.lock().expect("lock").push(Req {
                action: "AssumeRoleForPodIdentity".into(),
                params,
                host: host.to_string(),
                authorization: authorization.clone(),
            });
            return self.answer("AssumeRoleForPodIdentity", &HashMap::new());
        } else {
            params.get("Action").cloned().unwrap_or_default()
        };
        self.requests.lock().expect("lock").push(Req {
            action: action.clone(),
            params: params.clone(),
            host: host.to_string(),
            authorization,
        });
        self.answer(&action, &params)
    }

    fn answer(&self, action: &str, params: &HashMap<String, String>) -> (u16, String) {
        let action = action.to_string();
        if take(&self.throttle, &action) {
            let code = if is_sts(&action) { "Throttling" } else { "RequestLimitExceeded" };
            return error(&action, if is_sts(&action) { 400 } else { 503 }, code, "Request limit exceeded.");
        }
        if take(&self.unavailable, &action) {
            return error(&action, 503, "Unavailable", "The server is unavailable.");
        }
        if self.deny.contains(&action) {
            return error(&action, 403, "UnauthorizedOperation", "You are not authorized to perform this operation.");
        }
        if params.get("DryRun").map(String::as_str) == Some("true") && !self.ignore_dry_run.contains(&action) {
            return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
        }
        match action.as_str() {
            "AssumeRoleForPodIdentity" => {
                if let Some(code) = &self.eks_auth_error {
                    return (
                        if code == "AccessDeniedException" { 403 } else { 400 },
                        format!("{{\"__type\":\"{code}\",\"message\":\"EKS Auth says {code}\"}}"),
                    );
                }
                (
                    200,
                    format!(
                        "{{\"subject\":{{\"namespace\":\"kube-system\",\"serviceAccount\":\"ebs-csi-controller-sa\"}},\
                        \"audience\":\"pods.eks.amazonaws.com\",\"podIdentityAssociation\":{{\"associationArn\":\
                        \"arn:aws:eks:us-east-1:123456789012:podidentityassociation/prod/a-1\",\
                        \"associationId\":\"a-1\"}},\
                        \"assumedRoleUser\":{{\"arn\":\"{POD_IDENTITY_ARN}\",\"assumeRoleId\":\"AROAPOD:s\"}},\
                        \"credentials\":{{\"sessionToken\":\"session\",\"secretAccessKey\":\"secret\",\
                        \"accessKeyId\":\"{POD_IDENTITY_KEY}\",\"expiration\":4070908800}}}}"
                    ),
                )
            }
            "CreateVolume" => {
                ec2_ok(&action, "<volumeId>vol-0performed000000</volumeId><size>1</size><status>creating</status>")
            }
            "GetCallerIdentity" => (
                200,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                        <GetCallerIdentityResult><Arn>{CALLER_ARN}</Arn><UserId>AIDAEXAMPLE</UserId>\
                        <Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata>\
                        <RequestId>req-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
                ),
            ),
            "AssumeRoleWithWebIdentity" | "AssumeRole" => {
                if let Some(code) = &self.sts_error {
                    return sts_error(code, "Not authorized to perform sts:AssumeRoleWithWebIdentity");
                }
                (
                    200,
                    format!(
                        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
                            <AssumedRoleUser><Arn>{ASSUMED_ARN}</Arn><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId>\
                            </AssumedRoleUser><Credentials><AccessKeyId>{ASSUMED_KEY}</AccessKeyId>\
                            <SecretAccessKey>secret</SecretAccessKey><SessionToken>session</SessionToken>\
                            <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></{action}Result>\
                            <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></{action}Response>"
                    ),
                )
            }
            "DescribeAvailabilityZones" => ec2_ok(
                &action,
                "<availabilityZoneInfo><item><zoneName>us-east-1a</zoneName><zoneState>available</zoneState></item>\
                    <item><zoneName>us-east-1b</zoneName><zoneState>available</zoneState></item><item>\
                    <zoneName>us-east-1c</zoneName><zoneState>available</zoneState></item></availabilityZoneInfo>",
            ),
            "GetEbsEncryptionByDefault" => ec2_ok(&action, "<ebsEncryptionByDefault>true</ebsEncryptionByDefault>"),
            "GetEbsDefaultKmsKeyId" => ec2_ok(&action, "<kmsKeyId>alias/aws/ebs</kmsKeyId>"),
            "DescribeVolumes" => {
                let matching: Vec<usize> =
                    self.selected(params, self.volumes).into_iter().filter(|i| matches_scope(params, *i)).collect();
                let (start, end, next) = self.page(params, matching.len());
                let mut items = String::new();
                for &i in &matching[start..end] {
                    items.push_str(&format!(
                        "<item><volumeId>vol-{i:017x}</volumeId><size>{}</size><availabilityZone>{}</availabilityZone>\
                            <status>{}</status><createTime>2026-01-01T00:00:00.000Z</createTime>\
                            <volumeType>{}</volumeType><tagSet><item><key>CSIVolumeName</key><value>pv-{i}</value>\
                            </item><item><key>ebs.csi.aws.com/cluster</key><value>true</value></item>{}</tagSet>\
                            <attachmentSet/></item>",
                        volume_size(i),
                        volume_zone(i),
                        volume_state(i),
                        volume_type(i),
                        self.tag_xml(i)
                    ));
                }
                ec2_ok(&action, &format!("<volumeSet>{items}</volumeSet>{next}"))
            }
            "DescribeSnapshots" => {
                let matching: Vec<usize> =
                    self.selected(params, self.snapshots).into_iter().filter(|j| matches_scope(params, *j)).collect();
                let (start, end, next) = self.page(params, matching.len());
                let mut items = String::new();
                for &j in &matching[start..end] {
                    items.push_str(&format!(
                        "<item><snapshotId>snap-{j:017x}</snapshotId><volumeId>vol-{j:017x}</volumeId>\
                            <status>{}</status><startTime>2026-01-02T00:00:00.000Z</startTime>\
                            <volumeSize>10</volumeSize><ownerId>123456789012</ownerId><tagSet>{}</tagSet></item>",
                        snapshot_state(j),
                        self.tag_xml(j)
                    ));
                }
                ec2_ok(&action, &format!("<snapshotSet>{items}</snapshotSet>{next}"))
            }
            "ListSnapshotBlocks" => (
                200,
                "{\"Blocks\":[{\"BlockIndex\":0,\"BlockToken\":\"t\"}],\"BlockSize\":524288,\"VolumeSize\":10}"
                    .to_string(),
            ),
            other => ec2_error(400, "InvalidAction", &format!("The fake has no {other}")),
        }
    }

    /// A KMS answer: DescribeKey resolves any key but `kms_missing`; the other operations honour
    /// DryRun (`DryRunOperationException`, HTTP 412, as KMS answers) unless `ignore_dry_run`.
    fn kms_answer(&self, op: &str, params: &HashMap<String, String>) -> (u16, String) {
        let key = params
            .get("KeyId")
            .or_else(|| params.get("DestinationKeyId"))
            .or_else(|| params.get("SourceKeyId"))
            .cloned()
            .unwrap_or_default();
        if take(&self.throttle, op) {
            return kms_error(400, "ThrottlingException", "Rate exceeded");
        }
        if let Some((_, _, message)) = self.kms_deny.iter().find(|(o, k, _)| o == op && key.contains(k.as_str())) {
            return kms_error(400, "AccessDeniedException", message);
        }
        if self.kms_missing.iter().any(|m| key.contains(m.as_str())) {
            return kms_error(400, "NotFoundException", &format!("Key '{key}' does not exist"));
        }
        let arn = kms_arn(&key);
        let state = self.kms_state.iter().find(|(k, _)| key.contains(k.as_str())).map(|(_, s)| s.as_str());
        if op == "DescribeKey" {
            let manager = if key.ends_with("alias/aws/ebs") { "AWS" } else { "CUSTOMER" };
            return (
                200,
                serde_json::json!({"KeyMetadata": {
                    "KeyId": arn.rsplit('/').next(), "Arn": arn, "AWSAccountId": arn.split(':').nth(4),
                    "KeyState": state.unwrap_or("Enabled"), "Enabled": state.is_none(), "KeyManager": manager,
                    "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT", "CreationDate": 1767225600.0,
                }})
                .to_string(),
            );
        }
        if let Some(state) = state {
            return kms_error(400, "KMSInvalidStateException", &format!("{arn} is {state}"));
        }
        if params.get("DryRun").map(String::as_str) == Some("true") && !self.ignore_dry_run.contains(op) {
            return kms_error(
                412,
                "DryRunOperationException",
                "The request would have succeeded, but the DryRun \
                option is set.",
            );
        }
        match op {
            "CreateGrant" => (200, serde_json::json!({"GrantId": "grant-performed", "GrantToken": "t"}).to_string()),
            "GenerateDataKeyWithoutPlaintext" | "Encrypt" => {
                (200, serde_json::json!({"CiphertextBlob": "eA==", "KeyId": arn}).to_string())
            }
            _ => kms_error(400, "InvalidCiphertextException", ""),
        }
    }

    /// Index range of the requested page and the `<nextToken>` element for the next one.
    fn page(&self, params: &HashMap<String, String>, total: usize) -> (usize, usize, String) {
        let size: usize = params.get("MaxResults").and_then(|m| m.parse().ok()).unwrap_or(total.max(1));
        let start: usize = params.get("NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
        let end = (start + size).min(total);
        let next = if self.repeat_token {
            format!("<nextToken>{}</nextToken>", params.get("NextToken").cloned().unwrap_or_else(|| "1".into()))
        } else if end < total {
            format!("<nextToken>{end}</nextToken>")
        } else {
            String::new()
        };
        (start, end, next)
    }
}

impl Fake {
    /// Serves this fake over HTTP on 127.0.0.1 until the runtime stops, for an operator running
    /// as its own process (`--aws-endpoint-url http://<addr>`). Returns the bound address.
    pub async fn serve(self: Arc<Self>) -> std::net::SocketAddr {
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let fake = self.clone();
                async move {
                    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let auth =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let content_type = if target.is_some() {
                        "application/x-amz-json-1.1"
                    } else if json_path(uri.path()) {
                        "application/json"
                    } else {
                        "text/xml"
                    };
                    let (status, text) = fake.handle(&body, &host, uri.path(), auth, target);
                    (
                        axum::http::StatusCode::from_u16(status)
                            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                        [("content-type", content_type)],
                        text,
                    )
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the AWS fake");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }
}
