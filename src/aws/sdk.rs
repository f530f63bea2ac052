//! `AwsApi` on the AWS SDK: client construction (region, endpoints, FIPS, credentials), the
//! driver's identity in IRSA mode, bounded retries and per-request metrics.
//!
//! Retries are the SDK's own standard strategy (its throttling and transient error lists, its
//! exponential backoff with jitter and its retry quota), bounded by `RetryPolicy::max_attempts`;
//! an interceptor (`CountAttempts`) counts every HTTP attempt in the metrics with its real
//! outcome, so the worst case of a refresh is `max_attempts` times its request budget.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::identity::IdentityCache;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types as ec2t;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::DateTime;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;

use super::api::{
    Attachment, AwsApi, AwsError, ErrorClass, Filter, KmsAnswer, KmsKey, KmsProbe, Page, Principal, Probe, Snapshot,
    Verdict, Volume, classify,
};
use super::metrics::AwsMetrics;
use super::{POD_IDENTITY_AUDIENCE, STS_AUDIENCE, TAG_CSI_VOLUME_NAME};

/// Page sizes: the largest EC2 allows, so a refresh needs the fewest requests.
pub const VOLUME_PAGE: i32 = 500;
pub const SNAPSHOT_PAGE: i32 = 1000;
/// Session name of every role the operator assumes (visible in CloudTrail).
pub const SESSION_NAME: &str = "hardened-csi-operator-preflight";
/// Assumed-role credentials are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The bounds given to the SDK's standard retry strategy: attempts per call (the first
/// included) and its backoff range. What is retried (throttling, 5xx, timeouts and connection
/// failures) is the SDK's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per call, the first included (>= 1).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 4, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// The SDK retry configuration of this policy.
    pub fn retry_config(&self) -> RetryConfig {
        if self.max_attempts <= 1 {
            return RetryConfig::disabled();
        }
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.base_delay)
            .with_max_backoff(self.max_delay)
    }
}

/// Counts every HTTP attempt of every call (the SDK's retries included) in the metrics, by
/// operation and outcome, and in a running total the caller reads to report attempts per call.
#[derive(Clone, Debug)]
struct CountAttempts {
    metrics: AwsMetrics,
    total: Arc<AtomicU64>,
}

/// The AWS error code of an HTTP answer: the `x-amzn-ErrorType` header (rest-json), `<Code>` of an
/// XML error (EC2, STS), or `__type` / `code` of a JSON error body.
fn error_code(response: &HttpResponse) -> Option<String> {
    if let Some(t) = response.headers().get("x-amzn-errortype") {
        return t.split(':').next().map(str::to_string);
    }
    let body = std::str::from_utf8(response.body().bytes()?).ok()?;
    if let Some(start) = body.find("<Code>") {
        let rest = &body[start + 6..];
        return rest.find("</Code>").map(|end| rest[..end].trim().to_string());
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = json.get("__type").or_else(|| json.get("code")).or_else(|| json.get("Code"))?.as_str()?;
    Some(code.rsplit('#').next().unwrap_or(code).to_string())
}

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_else(|| "unknown".into());
        let outcome = match context.response() {
            Some(r) if r.status().is_success() => "ok",
            Some(r) => {
                let status = r.status().as_u16();
                match error_code(r) {
                    Some(code) if code == "DryRunOperation" || code == "DryRunOperationException" => "dry_run",
                    Some(code) => classify(&code, Some(status)).outcome(),
                    None => classify("", Some(status)).outcome(),
                }
            }
            None => match context.output_or_error() {
                Some(Err(e)) if e.is_timeout_error() || e.is_connector_error() => ErrorClass::Transport.outcome(),
                Some(Err(e)) if find_source::<CredentialsError>(e).is_some() => ErrorClass::Credentials.outcome(),
                _ => ErrorClass::Client.outcome(),
            },
        };
        self.metrics.count_request(&operation, outcome);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Where the credentials of the probed identity come from.
#[derive(Clone)]
pub enum CredentialSource {
    /// The operator's own default chain (environment, web identity file, Pod Identity, IMDS).
    Default,
    /// Fixed keys (moto, tests).
    Static { access_key_id: String, secret_access_key: String },
    /// Assume `role_arn` with STS AssumeRole using the base credentials (`doctor --role-arn`).
    AssumeRole { role_arn: String, base: Box<CredentialSource> },
    /// IRSA as the driver gets it: a TokenRequest for the driver's service account (audience
    /// sts.amazonaws.com), then STS AssumeRoleWithWebIdentity with `role_arn`.
    WebIdentity { kube: kube::Client, namespace: String, service_account: String, role_arn: String },
    /// EKS Pod Identity as the driver gets it: a TokenRequest for the driver's service account
    /// (audience pods.eks.amazonaws.com), then EKS Auth AssumeRoleForPodIdentity in `cluster_name`,
    /// signed with the default chain (the operator's own role needs only
    /// `eks-auth:AssumeRoleForPodIdentity`, never the driver's policy).
    PodIdentity {
        kube: kube::Client,
        namespace: String,
        service_account: String,
        cluster_name: String,
        /// The credentials that sign the EKS Auth call (the operator's own).
        base: Box<CredentialSource>,
    },
}

impl fmt::Debug for CredentialSource {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Default => f.write_str("Default"),
            CredentialSource::Static { access_key_id, .. } => write!(f, "Static({access_key_id})"),
            CredentialSource::AssumeRole { role_arn, base } => write!(f, "AssumeRole({role_arn}, base {base:?})"),
            CredentialSource::WebIdentity { namespace, service_account, role_arn, .. } => {
                write!(f, "WebIdentity({namespace}/{service_account} -> {role_arn})")
            }
            CredentialSource::PodIdentity { namespace, service_account, cluster_name, .. } => {
                write!(f, "PodIdentity({namespace}/{service_account} in {cluster_name})")
            }
        }
    }
}

/// Everything needed to build the SDK clients.
#[derive(Clone)]
pub struct AwsSettings {
    /// Region; None: the SDK's resolution (AWS_REGION, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint of every service (moto, or a test proxy). Unset: AWS's (or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Endpoint of EC2 only (`spec.aws.ec2Endpoint`, a VPC endpoint); wins over `endpoint_url`.
    pub ec2_endpoint: Option<String>,
    /// Endpoint of STS only (`spec.aws.stsEndpoint`); wins over `endpoint_url`.
    pub sts_endpoint: Option<String>,
    /// Endpoint of KMS only (`spec.aws.kmsEndpoint`, the operator's KMS probes); wins over
    /// `endpoint_url`.
    pub kms_endpoint: Option<String>,
    /// Use FIPS endpoints for every call the operator makes.
    pub fips: bool,
    /// HTTP(S) proxy of every AWS call (`spec.proxy`), with its bypass list.
    pub proxy: Option<ProxySettings>,
    /// Extra CA certificates (PEM) trusted beside the system roots (`spec.aws.caBundle`).
    pub ca_bundle: Option<Vec<u8>>,
    pub credentials: CredentialSource,
    /// HTTP client override (tests use the SDK's replay and function clients).
    pub http_client: Option<SharedHttpClient>,
    pub retry: RetryPolicy,
    pub metrics: AwsMetrics,
    /// How the status names non-role credentials (default `operator credentials`).
    pub principal_label: Option<String>,
    /// Set when these credentials are not the driver's and cannot be (see
    /// `Principal::not_verifiable`): the preflight is then skipped.
    pub not_verifiable: Option<String>,
}

impl AwsSettings {
    pub fn new(region: impl Into<String>, metrics: AwsMetrics) -> Self {
        Self {
            region: Some(region.into()),
            endpoint_url: None,
            ec2_endpoint: None,
            sts_endpoint: None,
            kms_endpoint: None,
            fips: false,
            proxy: None,
            ca_bundle: None,
            credentials: CredentialSource::Default,
            http_client: None,
            retry: RetryPolicy::default(),
            metrics,
            principal_label: None,
            not_verifiable: None,
        }
    }
}

/// The proxy of the operator's AWS calls: `url` for HTTP and HTTPS, hosts in `no_proxy` direct.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub url: String,
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    /// Credentials in the proxy URL are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxySettings({}, no_proxy {:?})", crate::crd::validate::redact_url(&self.url), self.no_proxy)
    }
}

/// The SDK's HTTPS client (rustls with aws-lc, as the default one) routed through `proxy` and
/// trusting `ca_bundle` beside the system roots. The PEM is checked here, before the SDK could
/// panic on it: a bad bundle is an error naming what is wrong.
pub fn https_client(proxy: Option<&ProxySettings>, ca_bundle: Option<&[u8]>) -> Result<SharedHttpClient, AwsError> {
    use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
    let fail =
        |code: &str, message: String| AwsError::new("Configure", code, message, None).with_class(ErrorClass::Client);
    let proxy_config = match proxy {
        None => None,
        Some(p) => {
            let config = ProxyConfig::all(&p.url).map_err(|e| {
                fail("InvalidProxy", format!("proxy {}: {e}", crate::crd::validate::redact_url(&p.url)))
            })?;
            Some(match &p.no_proxy {
                Some(n) => config.no_proxy(n),
                None => config,
            })
        }
    };
    let mut trust = tls::TrustStore::default();
    if let Some(pem) = ca_bundle {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| fail("InvalidCaBundle", format!("the CA bundle is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(fail("InvalidCaBundle", "the CA bundle holds no PEM certificate".to_string()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| fail("InvalidCaBundle", format!("certificate {} of the CA bundle: {e}", i + 1)))?;
        }
        trust = trust.with_pem_certificate(pem.to_vec());
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| fail("InvalidCaBundle", format!("TLS configuration: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, _components| {
        let mut builder = Connector::builder();
        if let Some(s) = settings {
            builder = builder.connector_settings(s.clone());
        }
        builder.set_proxy_config(proxy_config.clone());
        builder
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(context.clone())
            .build()
    }))
}

/// Makes one logical call (the SDK retries it) and reports how many attempts it took.
#[derive(Clone)]
struct Caller {
    counter: CountAttempts,
}

impl Caller {
    async fn call<T, E, Fut>(&self, operation: &'static str, send: impl FnOnce() -> Fut) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let before = self.counter.total.load(Ordering::Relaxed);
        send().await.map_err(|e| {
            let mut err = to_aws_error(operation, &e);
            let made = self.counter.total.load(Ordering::Relaxed).saturating_sub(before);
            err.attempts = u32::try_from(made).unwrap_or(u32::MAX).max(1);
            err
        })
    }
}

/// Maps an SDK error to the AWS error code and class the status reports.
fn to_aws_error<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    // A failure of our own credential provider carries its own AwsError (TokenRequest, STS).
    if let Some(inner) = find_source::<AwsError>(err) {
        return inner.clone();
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(_) => {
            let code = err.code().map(str::to_string).unwrap_or_else(|| format!("HTTP{}", status.unwrap_or(0)));
            AwsError::new(operation, code, err.message().unwrap_or("no message").to_string(), status)
        }
        SdkError::TimeoutError(_) => AwsError::new(operation, "Timeout", "the request timed out", None),
        SdkError::DispatchFailure(d) => {
            if find_source::<CredentialsError>(err).is_some() {
                AwsError::new(operation, "NoCredentials", format!("no AWS credentials: {}", chain(err)), None)
            } else if d.is_timeout() {
                AwsError::new(operation, "Timeout", chain(err), None)
            } else {
                AwsError::new(operation, "ConnectionError", chain(err), None).with_class(ErrorClass::Transport)
            }
        }
        SdkError::ResponseError(_) => {
            let e = AwsError::new(operation, "InvalidResponse", chain(err), status);
            if status.is_some_and(|s| s >= 500) { e.with_class(ErrorClass::Server) } else { e }
        }
        _ => AwsError::new(operation, "InvalidRequest", chain(err), None),
    }
}

fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

fn timestamp(dt: Option<&DateTime>) -> Option<Timestamp> {
    let dt = dt?;
    Timestamp::new(dt.secs(), dt.subsec_nanos() as i32).ok()
}

/// Credentials of an assumed role, fetched on demand and kept until shortly before expiry.
struct RoleCredentials {
    source: RoleSource,
    sts: aws_sdk_sts::Client,
    caller: Caller,
    cache: Mutex<Option<(Credentials, Option<String>)>>,
}

enum RoleSource {
    WebIdentity {
        kube: kube::Client,
        namespace: String,
        service_account: String,
        role_arn: String,
    },
    PodIdentity {
        kube: kube::Client,
        namespace: String,
        service_account: String,
        cluster_name: String,
        eks_auth: aws_sdk_eksauth::Client,
    },
}

impl RoleCredentials {
    fn description(&self) -> String {
        match &self.source {
            RoleSource::WebIdentity { namespace, service_account, role_arn, .. } => {
                format!("irsa role {role_arn} (service account {namespace}/{service_account})")
            }
            RoleSource::PodIdentity { namespace, service_account, cluster_name, .. } => {
                format!(
                    "pod identity role of service account {namespace}/{service_account} (EKS cluster {cluster_name})"
                )
            }
        }
    }

    /// Cached credentials and the assumed-role ARN, renewed when close to expiry.
    async fn get(&self) -> Result<(Credentials, Option<String>), AwsError> {
        let mut cache = self.cache.lock().await;
        if let Some((creds, arn)) = cache.as_ref() {
            let fresh = creds.expiry().is_none_or(|exp| exp > SystemTime::now() + RENEW_BEFORE);
            if fresh {
                return Ok((creds.clone(), arn.clone()));
            }
        }
        let fetched = self.fetch().await?;
        *cache = Some(fetched.clone());
        Ok(fetched)
    }

    async fn fetch(&self) -> Result<(Credentials, Option<String>), AwsError> {
        let (creds, user) = match &self.source {
            RoleSource::PodIdentity { kube, namespace, service_account, cluster_name, eks_auth } => {
                let token = service_account_token(kube, namespace, service_account, POD_IDENTITY_AUDIENCE).await?;
                let out = self
                    .caller
                    .call("AssumeRoleForPodIdentity", || {
                        eks_auth.assume_role_for_pod_identity().cluster_name(cluster_name).token(&token).send()
                    })
                    .await?;
                let Some(c) = out.credentials else {
                    return Err(AwsError::new(
                        "AssumeRoleForPodIdentity",
                        "InvalidResponse",
                        "EKS Auth returned no credentials",
                        None,
                    ));
                };
                let credentials =
                    session_credentials(c.access_key_id, c.secret_access_key, c.session_token, c.expiration);
                return Ok((credentials, out.assumed_role_user.map(|u| u.arn)));
            }
            RoleSource::WebIdentity { kube, namespace, service_account, role_arn } => {
                let token = service_account_token(kube, namespace, service_account, STS_AUDIENCE).await?;
                let out = self
                    .caller
                    .call("AssumeRoleWithWebIdentity", || {
                        self.sts
                            .assume_role_with_web_identity()
                            .role_arn(role_arn)
                            .role_session_name(SESSION_NAME)
                            .web_identity_token(&token)
                            .send()
                    })
                    .await?;
                (out.credentials, out.assumed_role_user)
            }
        };
        let Some(c) = creds else {
            return Err(AwsError::new("AssumeRole", "InvalidResponse", "STS returned no credentials", None));
        };
        let credentials = session_credentials(c.access_key_id, c.secret_access_key, c.session_token, c.expiration);
        Ok((credentials, user.map(|u| u.arn)))
    }
}

/// Temporary credentials as STS and EKS Auth return them (both say when they expire).
fn session_credentials(access_key_id: String, secret: String, session_token: String, expiry: DateTime) -> Credentials {
    let expiry = SystemTime::try_from(expiry).ok();
    Credentials::new(access_key_id, secret, Some(session_token), expiry, "hardened-csi-operator")
}

/// A TokenRequest for the service account with `audience` (sts.amazonaws.com for IRSA,
/// pods.eks.amazonaws.com for Pod Identity), as the kubelet would project it into the driver's pod.
pub async fn service_account_token(
    kube: &kube::Client,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> Result<String, AwsError> {
    let api: Api<ServiceAccount> = Api::namespaced(kube.clone(), namespace);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let fail = |message: String| AwsError::new("TokenRequest", "ServiceAccountToken", message, None);
    match api.create_token_request(service_account, &PostParams::default(), &req).await {
        Ok(tr) => match tr.status.and_then(|s| s.token).filter(|t| !t.is_empty()) {
            Some(token) => Ok(token),
            _ => Err(fail(format!("the TokenRequest for {namespace}/{service_account} returned no token"))),
        },
        Err(kube::Error::Api(s)) if s.code == 404 => Err(fail(format!(
            "service account {namespace}/{service_account} not found: the driver's controller service account must \
                exist before its role can be checked"
        ))),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(fail(format!(
            "the operator may not create tokens for {namespace}/{service_account}: it needs `create` on \
                serviceaccounts/token in {namespace} ({})",
            s.message
        ))),
        Err(e) => Err(fail(format!("TokenRequest for {namespace}/{service_account}: {e}"))),
    }
}

#[derive(Clone)]
struct RoleProvider(Arc<RoleCredentials>);

impl fmt::Debug for RoleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleProvider({})", self.0.description())
    }
}

impl ProvideCredentials for RoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.0.get().await.map(|(c, _)| c).map_err(CredentialsError::provider_error)
        })
    }
}

/// `AwsApi` on the AWS SDK.
pub struct SdkAws {
    region: String,
    fips: bool,
    ec2: aws_sdk_ec2::Client,
    ebs: aws_sdk_ebs::Client,
    kms: aws_sdk_kms::Client,
    sts: aws_sdk_sts::Client,
    role: Option<Arc<RoleCredentials>>,
    caller: Caller,
    principal_label: String,
    not_verifiable: Option<String>,
}

impl SdkAws {
    /// Builds the clients. Nothing is sent until the first call.
    pub async fn new(settings: AwsSettings) -> Result<Self, AwsError> {
        let counter = CountAttempts { metrics: settings.metrics.clone(), total: Arc::new(AtomicU64::new(0)) };
        let caller = Caller { counter: counter.clone() };
        let mut assume_role = None;
        let (base_source, role_source) = match settings.credentials.clone() {
            CredentialSource::AssumeRole { role_arn, base } => {
                assume_role = Some(role_arn);
                (*base, None)
            }
            CredentialSource::WebIdentity { kube, namespace, service_account, role_arn } => (
                CredentialSource::Default,
                Some(RoleSource::WebIdentity { kube, namespace, service_account, role_arn }),
            ),
            CredentialSource::PodIdentity { base, .. } => (*base, None),
            other => (other, None),
        };
        let base = load_config(&settings, &base_source).await?;
        let Some(region) = base.region().map(|r| r.to_string()).filter(|r| !r.trim().is_empty()) else {
            return Err(AwsError::new(
                "Configure",
                "MissingRegion",
                "no AWS region: set spec.aws.region (or --aws-region / AWS_REGION)",
                None,
            )
            .with_class(ErrorClass::Client));
        };

        // Every STS call goes to the STS endpoint when one is set (`spec.aws.stsEndpoint`,
        // `doctor --sts-endpoint`), AssumeRole's included.
        let sts_endpoint = match &settings.sts_endpoint {
            Some(url) => Some(
                usable_endpoint(url, "the STS endpoint (spec.aws.stsEndpoint, doctor --sts-endpoint)")?.to_string(),
            ),
            None => None,
        };
        // `doctor --role-arn`: aws-config's own AssumeRoleProvider (STS AssumeRole with the base
        // credentials, cached and renewed by the SDK); every client then signs as the role.
        let mut principal_label =
            settings.principal_label.clone().unwrap_or_else(|| "operator credentials".to_string());
        let base = match &assume_role {
            Some(role_arn) => {
                let sts_base = match &sts_endpoint {
                    Some(url) => base.to_builder().endpoint_url(url).build(),
                    None => base.clone(),
                };
                let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
                    .session_name(SESSION_NAME)
                    .configure(&sts_base)
                    .build()
                    .await;
                principal_label = format!("role {role_arn} (assumed with the caller's credentials)");
                base.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build()
            }
            None => base,
        };
        let mut sts_conf = aws_sdk_sts::config::Builder::from(&base).interceptor(counter.clone());
        if let Some(url) = &sts_endpoint {
            sts_conf = sts_conf.endpoint_url(url);
        }
        let sts = aws_sdk_sts::Client::from_conf(sts_conf.build());
        let role_source = match (role_source, settings.credentials.clone()) {
            (None, CredentialSource::PodIdentity { kube, namespace, service_account, cluster_name, .. }) => {
                Some(RoleSource::PodIdentity {
                    kube,
                    namespace,
                    service_account,
                    cluster_name,
                    eks_auth: aws_sdk_eksauth::Client::from_conf(
                        aws_sdk_eksauth::config::Builder::from(&base).interceptor(counter.clone()).build(),
                    ),
                })
            }
            (other, _) => other,
        };
        let role = role_source.map(|source| {
            Arc::new(RoleCredentials { source, sts: sts.clone(), caller: caller.clone(), cache: Mutex::new(None) })
        });

        // Each client its own retry quota: the SDK's default partition (one per service name)
        // shares a token bucket across every client in the process, so one driver's identity
        // being throttled would use up the retries of every other.
        let mut ec2_conf = aws_sdk_ec2::config::Builder::from(&base)
            .interceptor(counter.clone())
            .retry_partition(aws_sdk_ec2::config::retry::RetryPartition::custom("ec2").build());
        let mut ebs_conf = aws_sdk_ebs::config::Builder::from(&base)
            .interceptor(counter.clone())
            .retry_partition(aws_sdk_ebs::config::retry::RetryPartition::custom("ebs").build());
        let mut kms_conf = aws_sdk_kms::config::Builder::from(&base)
            .interceptor(counter)
            .retry_partition(aws_sdk_kms::config::retry::RetryPartition::custom("kms").build());
        if let Some(role) = &role {
            let provider = SharedCredentialsProvider::new(RoleProvider(role.clone()));
            // RoleCredentials caches and renews itself; a second cache would only hide errors.
            ec2_conf = ec2_conf.credentials_provider(provider.clone()).identity_cache(IdentityCache::no_cache());
            ebs_conf = ebs_conf.credentials_provider(provider.clone()).identity_cache(IdentityCache::no_cache());
            kms_conf = kms_conf.credentials_provider(provider).identity_cache(IdentityCache::no_cache());
        }
        if let Some(url) = &settings.ec2_endpoint {
            ec2_conf = ec2_conf.endpoint_url(usable_endpoint(url, "spec.aws.ec2Endpoint")?);
        }
        if let Some(url) = &settings.kms_endpoint {
            kms_conf = kms_conf
                .endpoint_url(usable_endpoint(url, "the KMS endpoint (spec.aws.kmsEndpoint, doctor --kms-endpoint)")?);
        }
        Ok(Self {
            region,
            fips: settings.fips,
            ec2: aws_sdk_ec2::Client::from_conf(ec2_conf.build()),
            ebs: aws_sdk_ebs::Client::from_conf(ebs_conf.build()),
            kms: aws_sdk_kms::Client::from_conf(kms_conf.build()),
            sts,
            role,
            caller,
            principal_label,
            not_verifiable: settings.not_verifiable.clone(),
        })
    }
}

/// `url` if the SDK can use it as an endpoint: an http(s) URL with a host. The SDK panics when
/// it resolves an empty endpoint (and fails every call on other garbage), so a spec that slipped
/// past validation is refused here, by field, with credentials in the URL redacted.
fn usable_endpoint<'a>(url: &'a str, field: &str) -> Result<&'a str, AwsError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) => Ok(url),
        _ => Err(AwsError::new(
            "Configure",
            "InvalidEndpoint",
            format!(
                "{field}: {:?} is not an endpoint: expected an http(s) URL with a host, e.g. \
                 https://ec2.eu-west-1.amazonaws.com",
                crate::crd::validate::redact_credentials(url)
            ),
            None,
        )
        .with_class(ErrorClass::Client)),
    }
}

async fn load_config(settings: &AwsSettings, source: &CredentialSource) -> Result<aws_config::SdkConfig, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .use_fips(settings.fips)
        .retry_config(settings.retry.retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = settings.region.as_ref().filter(|r| !r.trim().is_empty()) {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(usable_endpoint(url, "the AWS endpoint URL")?);
    }
    if let Some(client) = &settings.http_client {
        loader = loader.http_client(client.clone());
    } else if settings.proxy.is_some() || settings.ca_bundle.is_some() {
        loader = loader.http_client(https_client(settings.proxy.as_ref(), settings.ca_bundle.as_deref())?);
    }
    match source {
        CredentialSource::Default => {}
        CredentialSource::Static { access_key_id, secret_access_key } => {
            loader =
                loader.credentials_provider(Credentials::new(access_key_id, secret_access_key, None, None, "static"));
        }
        CredentialSource::AssumeRole { .. }
        | CredentialSource::WebIdentity { .. }
        | CredentialSource::PodIdentity { .. } => {
            return Err(AwsError::new(
                "Configure",
                "InvalidCredentialSource",
                "a role's base credentials must be the default chain or static keys",
                None,
            )
            .with_class(ErrorClass::Client));
        }
    }
    Ok(loader.load().await)
}

fn ec2_filters(filters: &[Filter]) -> Vec<ec2t::Filter> {
    filters.iter().map(|f| ec2t::Filter::builder().name(&f.name).set_values(Some(f.values.clone())).build()).collect()
}

fn tag_spec(resource: ec2t::ResourceType, tags: &[(String, String)]) -> ec2t::TagSpecification {
    let tags = tags.iter().map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build()).collect();
    ec2t::TagSpecification::builder().resource_type(resource).set_tags(Some(tags)).build()
}

fn tags_of(tags: &[ec2t::Tag]) -> std::collections::BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn volume_of(v: &ec2t::Volume) -> Volume {
    let tag = |key: &str| v.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
    Volume {
        id: v.volume_id().unwrap_or_default().to_string(),
        size_gib: v.size().unwrap_or(0).max(0) as u64,
        volume_type: v.volume_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        zone: v.availability_zone().unwrap_or_default().to_string(),
        state: v.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        create_time: timestamp(v.create_time()),
        csi_volume_name: tag(TAG_CSI_VOLUME_NAME).or_else(|| tag("kubernetes.io/created-for/pv/name")),
        attachments: v
            .attachments()
            .iter()
            .map(|a| Attachment {
                instance_id: a.instance_id().unwrap_or_default().to_string(),
                state: a.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                attach_time: timestamp(a.attach_time()),
            })
            .collect(),
        tags: tags_of(v.tags()),
    }
}

fn snapshot_of(s: &ec2t::Snapshot) -> Snapshot {
    Snapshot {
        id: s.snapshot_id().unwrap_or_default().to_string(),
        state: s.state().map(|x| x.as_str().to_string()).unwrap_or_default(),
        volume_size_gib: s.volume_size().unwrap_or(0).max(0) as u64,
        start_time: timestamp(s.start_time()),
        tags: tags_of(s.tags()),
    }
}

/// A DryRun answer as a verdict. Throttling, transport and credential failures stay errors
/// (the refresh fails and is marked stale); a 5xx that outlasted the SDK's retries leaves the
/// action undecided until the next refresh (moto answers 5xx for the actions it lacks).
///
/// A success of a mutating call means the endpoint ignored DryRun and performed it: `Performed`,
/// with the ID of what it created (empty when nothing was).
fn verdict(read_only: bool, r: Result<String, AwsError>) -> Result<Verdict, AwsError> {
    match r {
        Ok(_) if read_only => Ok(Verdict::Allowed),
        Ok(created) => Ok(Verdict::Performed(created)),
        Err(e) if e.code == "DryRunOperation" => Ok(Verdict::Allowed),
        Err(e) if e.class == ErrorClass::Denied => Ok(Verdict::Denied),
        Err(e) if matches!(e.class, ErrorClass::Throttled | ErrorClass::Transport | ErrorClass::Credentials) => Err(e),
        Err(e) => Ok(Verdict::Undecided(e.code)),
    }
}

/// A KMS DryRun answer (`DryRunOperationException` when it would have succeeded), with AWS's
/// message, which for a denial names the policy that denied it. A success despite DryRun means
/// the endpoint performed the call (`Performed`).
fn kms_verdict(r: Result<(), AwsError>) -> Result<KmsAnswer, AwsError> {
    match r {
        Ok(()) => Ok(KmsAnswer { verdict: Verdict::Performed(String::new()), message: String::new() }),
        Err(e) if e.code == "DryRunOperationException" || e.code == "DryRunOperation" => {
            Ok(KmsAnswer { verdict: Verdict::Allowed, message: e.message })
        }
        Err(e) if e.class == ErrorClass::Denied => Ok(KmsAnswer { verdict: Verdict::Denied, message: e.message }),
        Err(e) if matches!(e.class, ErrorClass::Throttled | ErrorClass::Transport | ErrorClass::Credentials) => Err(e),
        Err(e) => Ok(KmsAnswer { verdict: Verdict::Undecided(e.code), message: e.message }),
    }
}

/// The ciphertext the Decrypt and ReEncrypt probes send: no key made it, so KMS may refuse it as
/// `InvalidCiphertextException` instead of deciding the permission.
const PLACEHOLDER_CIPHERTEXT: &[u8] = b"hardened-csi-operator-preflight-placeholder-ciphertext";

/// What a probe that creates nothing returns when performed.
fn none<T>(_: T) -> String {
    String::new()
}

impl AwsApi for SdkAws {
    fn region(&self) -> &str {
        &self.region
    }

    fn fips(&self) -> bool {
        self.fips
    }

    fn principal(&self) -> BoxFuture<'_, Result<Principal, AwsError>> {
        Box::pin(async move {
            if let Some(role) = &self.role {
                let (_, arn) = role.get().await?;
                return Ok(Principal { description: role.description(), arn, not_verifiable: None });
            }
            // Only for the ARN: a cluster whose network reaches EC2 but not STS (a VPC endpoint for
            // EC2 alone) still gets its inventory; bad credentials are reported here already.
            let arn = match self.caller.call("GetCallerIdentity", || self.sts.get_caller_identity().send()).await {
                Ok(out) => out.arn,
                Err(e) if e.class == ErrorClass::Credentials => return Err(e),
                Err(e) => {
                    tracing::debug!(code = %e.code, "GetCallerIdentity failed; the caller ARN stays unknown");
                    None
                }
            };
            Ok(Principal {
                description: self.principal_label.clone(),
                arn,
                not_verifiable: self.not_verifiable.clone(),
            })
        })
    }

    fn describe_volumes(
        &self,
        filters: &[Filter],
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Volume>, AwsError>> {
        let filters = ec2_filters(filters);
        Box::pin(async move {
            let out = self
                .caller
                .call("DescribeVolumes", || {
                    self.ec2
                        .describe_volumes()
                        .set_filters(Some(filters.clone()))
                        .max_results(VOLUME_PAGE)
                        .set_next_token(next_token.clone())
                        .send()
                })
                .await?;
            Ok(Page {
                items: out.volumes().iter().map(volume_of).collect(),
                next_token: out.next_token().filter(|t| !t.is_empty()).map(str::to_string),
            })
        })
    }

    fn describe_snapshots(
        &self,
        filters: &[Filter],
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Snapshot>, AwsError>> {
        let filters = ec2_filters(filters);
        Box::pin(async move {
            let out = self
                .caller
                .call("DescribeSnapshots", || {
                    self.ec2
                        .describe_snapshots()
                        .owner_ids("self")
                        .set_filters(Some(filters.clone()))
                        .max_results(SNAPSHOT_PAGE)
                        .set_next_token(next_token.clone())
                        .send()
                })
                .await?;
            Ok(Page {
                items: out.snapshots().iter().map(snapshot_of).collect(),
                next_token: out.next_token().filter(|t| !t.is_empty()).map(str::to_string),
            })
        })
    }

    fn availability_zones(&self) -> BoxFuture<'_, Result<Vec<String>, AwsError>> {
        Box::pin(async move {
            let out =
                self.caller.call("DescribeAvailabilityZones", || self.ec2.describe_availability_zones().send()).await?;
            let mut zones: Vec<String> =
                out.availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_string)).collect();
            zones.sort();
            Ok(zones)
        })
    }

    fn encryption_by_default(&self) -> BoxFuture<'_, Result<bool, AwsError>> {
        Box::pin(async move {
            let out = self
                .caller
                .call("GetEbsEncryptionByDefault", || self.ec2.get_ebs_encryption_by_default().send())
                .await?;
            Ok(out.ebs_encryption_by_default().unwrap_or(false))
        })
    }

    fn default_kms_key_id(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        Box::pin(async move {
            let out = self
                .caller
                .call("GetEbsDefaultKmsKeyId", || {
                    self.ec2
                        .get_ebs_default_kms_key_id()
                        .customize()
                        .config_override(aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled()))
                        .send()
                })
                .await?;
            out.kms_key_id().map(str::to_string).ok_or_else(|| {
                AwsError::new("GetEbsDefaultKmsKeyId", "InvalidResponse", "no KmsKeyId in the answer", None)
            })
        })
    }

    fn probe(&self, probe: &Probe) -> BoxFuture<'_, Result<Verdict, AwsError>> {
        let probe = probe.clone();
        Box::pin(async move {
            let op = probe.operation();
            let ec2 = &self.ec2;
            let c = &self.caller;
            let answer: Result<String, AwsError> = match &probe {
                Probe::DescribeInstances => {
                    c.call(op, || ec2.describe_instances().dry_run(true).max_results(5).send()).await.map(none)
                }
                // One named type, as the driver asks for its node's type (and moto, which ignores
                // DryRun here, then answers one type instead of hundreds).
                Probe::DescribeInstanceTypes => c
                    .call(op, || {
                        ec2.describe_instance_types().dry_run(true).instance_types(ec2t::InstanceType::T3Micro).send()
                    })
                    .await
                    .map(none),
                Probe::DescribeVolumesModifications => c
                    .call(op, || ec2.describe_volumes_modifications().dry_run(true).max_results(5).send())
                    .await
                    .map(none),
                Probe::DescribeVolumeStatus => {
                    c.call(op, || ec2.describe_volume_status().dry_run(true).max_results(5).send()).await.map(none)
                }
                Probe::CreateVolume { zone, tags } => c
                    .call(op, || {
                        ec2.create_volume()
                            .dry_run(true)
                            .availability_zone(zone)
                            .size(1)
                            .volume_type(ec2t::VolumeType::Gp3)
                            .encrypted(true)
                            .tag_specifications(tag_spec(ec2t::ResourceType::Volume, tags))
                            .send()
                    })
                    .await
                    .map(|o| o.volume_id.unwrap_or_default()),
                Probe::CopyVolumes { volume_id, tags } => c
                    .call(op, || {
                        ec2.copy_volumes()
                            .dry_run(true)
                            .source_volume_id(volume_id)
                            .tag_specifications(tag_spec(ec2t::ResourceType::Volume, tags))
                            .send()
                    })
                    .await
                    .map(|o| o.volumes().iter().filter_map(|v| v.volume_id()).collect::<Vec<_>>().join(",")),
                Probe::DeleteVolume { volume_id } => {
                    c.call(op, || ec2.delete_volume().dry_run(true).volume_id(volume_id).send()).await.map(none)
                }
                Probe::AttachVolume { volume_id, instance_id } => c
                    .call(op, || {
                        ec2.attach_volume()
                            .dry_run(true)
                            .volume_id(volume_id)
                            .instance_id(instance_id)
                            .device("/dev/xvdbz")
                            .send()
                    })
                    .await
                    .map(none),
                Probe::DetachVolume { volume_id } => {
                    c.call(op, || ec2.detach_volume().dry_run(true).volume_id(volume_id).send()).await.map(none)
                }
                Probe::ModifyVolume { volume_id } => c
                    .call(op, || {
                        ec2.modify_volume().dry_run(true).volume_id(volume_id).volume_type(ec2t::VolumeType::Gp3).send()
                    })
                    .await
                    .map(none),
                Probe::CreateSnapshot { volume_id, tags } => c
                    .call(op, || {
                        ec2.create_snapshot()
                            .dry_run(true)
                            .volume_id(volume_id)
                            .tag_specifications(tag_spec(ec2t::ResourceType::Snapshot, tags))
                            .send()
                    })
                    .await
                    .map(|o| o.snapshot_id.unwrap_or_default()),
                Probe::DeleteSnapshot { snapshot_id } => {
                    c.call(op, || ec2.delete_snapshot().dry_run(true).snapshot_id(snapshot_id).send()).await.map(none)
                }
                Probe::LockSnapshot { snapshot_id } => c
                    .call(op, || {
                        ec2.lock_snapshot()
                            .dry_run(true)
                            .snapshot_id(snapshot_id)
                            .lock_mode(ec2t::LockMode::Governance)
                            .lock_duration(1)
                            .send()
                    })
                    .await
                    .map(none),
                Probe::EnableFastSnapshotRestores { zone, snapshot_id } => c
                    .call(op, || {
                        ec2.enable_fast_snapshot_restores()
                            .dry_run(true)
                            .availability_zones(zone)
                            .source_snapshot_ids(snapshot_id)
                            .send()
                    })
                    .await
                    .map(none),
                Probe::DeleteTags { volume_id, keys } => c
                    .call(op, || {
                        let tags = keys.iter().map(|k| ec2t::Tag::builder().key(k).build()).collect();
                        ec2.delete_tags().dry_run(true).resources(volume_id).set_tags(Some(tags)).send()
                    })
                    .await
                    .map(none),
                Probe::CreateTags { volume_id, tags } => c
                    .call(op, || {
                        let tags = tags.iter().map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build()).collect();
                        ec2.create_tags().dry_run(true).resources(volume_id).set_tags(Some(tags)).send()
                    })
                    .await
                    .map(none),
            };
            verdict(probe.read_only(), answer)
        })
    }

    fn describe_key(&self, key: &str) -> BoxFuture<'_, Result<Result<KmsKey, KmsAnswer>, AwsError>> {
        let key = key.to_string();
        Box::pin(async move {
            let answer = self.caller.call("DescribeKey", || self.kms.describe_key().key_id(&key).send()).await;
            match answer {
                Ok(out) => {
                    let Some(m) = out.key_metadata else {
                        return Err(AwsError::new(
                            "DescribeKey",
                            "InvalidResponse",
                            "no KeyMetadata in the answer",
                            None,
                        ));
                    };
                    Ok(Ok(KmsKey {
                        arn: m.arn.unwrap_or_else(|| m.key_id.clone()),
                        state: m.key_state.map(|s| s.as_str().to_string()).unwrap_or_default(),
                        manager: m.key_manager.map(|s| s.as_str().to_string()).unwrap_or_default(),
                        spec: m.key_spec.map(|s| s.as_str().to_string()).unwrap_or_default(),
                        usage: m.key_usage.map(|s| s.as_str().to_string()).unwrap_or_default(),
                    }))
                }
                Err(e)
                    if matches!(e.class, ErrorClass::Throttled | ErrorClass::Transport | ErrorClass::Credentials) =>
                {
                    Err(e)
                }
                Err(e) if e.class == ErrorClass::Denied => {
                    Ok(Err(KmsAnswer { verdict: Verdict::Denied, message: e.message }))
                }
                Err(e) => Ok(Err(KmsAnswer { verdict: Verdict::Undecided(e.code), message: e.message })),
            }
        })
    }

    fn kms_probe(&self, probe: KmsProbe, key: &str, grantee: &str) -> BoxFuture<'_, Result<KmsAnswer, AwsError>> {
        let (key, grantee) = (key.to_string(), grantee.to_string());
        Box::pin(async move {
            use aws_sdk_kms::primitives::Blob;
            use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
            let (kms, c, op) = (&self.kms, &self.caller, probe.operation());
            let answer = match probe {
                KmsProbe::GenerateDataKey => c
                    .call(op, || {
                        kms.generate_data_key_without_plaintext()
                            .key_id(&key)
                            .key_spec(DataKeySpec::Aes256)
                            .dry_run(true)
                            .send()
                    })
                    .await
                    .map(none),
                // The operations EC2's grants for an EBS volume carry.
                KmsProbe::CreateGrant => c
                    .call(op, || {
                        kms.create_grant()
                            .key_id(&key)
                            .grantee_principal(&grantee)
                            .operations(GrantOperation::Decrypt)
                            .operations(GrantOperation::Encrypt)
                            .operations(GrantOperation::GenerateDataKeyWithoutPlaintext)
                            .operations(GrantOperation::ReEncryptFrom)
                            .operations(GrantOperation::ReEncryptTo)
                            .operations(GrantOperation::DescribeKey)
                            .dry_run(true)
                            .send()
                    })
                    .await
                    .map(none),
                KmsProbe::Encrypt => c
                    .call(op, || kms.encrypt().key_id(&key).plaintext(Blob::new(b"x".to_vec())).dry_run(true).send())
                    .await
                    .map(none),
                KmsProbe::Decrypt => c
                    .call(op, || {
                        kms.decrypt()
                            .key_id(&key)
                            .ciphertext_blob(Blob::new(PLACEHOLDER_CIPHERTEXT.to_vec()))
                            .dry_run(true)
                            .send()
                    })
                    .await
                    .map(none),
                KmsProbe::ReEncrypt => c
                    .call(op, || {
                        kms.re_encrypt()
                            .source_key_id(&key)
                            .destination_key_id(&key)
                            .ciphertext_blob(Blob::new(PLACEHOLDER_CIPHERTEXT.to_vec()))
                            .dry_run(true)
                            .send()
                    })
                    .await
                    .map(none),
            };
            kms_verdict(answer.map(|_| ()))
        })
    }

    fn list_snapshot_blocks(&self, snapshot_id: &str) -> BoxFuture<'_, Result<u64, AwsError>> {
        let snapshot_id = snapshot_id.to_string();
        Box::pin(async move {
            let out = self
                .caller
                .call("ListSnapshotBlocks", || {
                    self.ebs
                        .list_snapshot_blocks()
                        .snapshot_id(&snapshot_id)
                        .max_results(100)
                        .customize()
                        .config_override(aws_sdk_ebs::config::Builder::default().retry_config(RetryConfig::disabled()))
                        .send()
                })
                .await?;
            Ok(out.blocks().len() as u64)
        })
    }

    fn create_tags(&self, resource_ids: &[String], tags: &[(String, String)]) -> BoxFuture<'_, Result<(), AwsError>> {
        let ids = resource_ids.to_vec();
        let tags: Vec<ec2t::Tag> = tags.iter().map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build()).collect();
        Box::pin(async move {
            self.caller
                .call("CreateTags", || {
                    self.ec2.create_tags().set_resources(Some(ids.clone())).set_tags(Some(tags.clone())).send()
                })
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_bounds_the_sdk_standard_strategy() {
        let p =
            RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let c = p.retry_config();
        assert_eq!(c.mode(), aws_smithy_types::retry::RetryMode::Standard);
        assert_eq!(c.max_attempts(), 3);
        assert_eq!((c.initial_backoff(), c.max_backoff()), (Duration::from_millis(100), Duration::from_secs(1)));
        let once = RetryPolicy { max_attempts: 1, ..p }.retry_config();
        assert_eq!(once.max_attempts(), 1, "one attempt: no retry");
    }

    #[test]
    fn error_codes_are_read_from_every_protocol() {
        let resp = |body: &str, header: Option<&str>| {
            let mut r = HttpResponse::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("status"),
                aws_smithy_types::body::SdkBody::from(body.to_string()),
            );
            if let Some(h) = header {
                r.headers_mut().insert("x-amzn-ErrorType", h.to_string());
            }
            r
        };
        let ec2 = "<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(error_code(&resp(ec2, None)).as_deref(), Some("RequestLimitExceeded"));
        let json = r#"{"__type":"com.amazonaws#ThrottlingException","message":"slow"}"#;
        assert_eq!(error_code(&resp(json, None)).as_deref(), Some("ThrottlingException"));
        assert_eq!(
            error_code(&resp("", Some("AccessDeniedException:http://x"))).as_deref(),
            Some("AccessDeniedException")
        );
        assert_eq!(error_code(&resp("not an error", None)), None);
    }

    #[test]
    fn debug_of_credentials_never_shows_the_secret() {
        let s =
            CredentialSource::Static { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "very-secret".into() };
        let text = format!("{s:?}");
        assert!(text.contains("AKIDEXAMPLE") && !text.contains("very-secret"), "{text}");
    }
}
