//! AWS inventory, IAM preflight, poller and doctor tests: one binary (every test binary links the
//! whole AWS SDK). `fake` answers the SDK's HTTP requests in-process (pagination, throttling,
//! denials, IRSA); `moto_*` run against a real moto server started by `../support/moto.rs`.

#[path = "../support/moto.rs"]
mod moto;

mod cluster_truth;
#[path = "../support/aws_fake.rs"]
mod fake;
mod irsa;
mod kms;
mod mocked;
mod moto_doctor;
#[path = "../support/moto_faults.rs"]
mod moto_faults;
mod moto_inventory;
mod moto_retag;
mod poller;
mod tls_path;

use std::sync::Arc;

use hardened_csi_operator::aws::sdk::{AwsSettings, SdkAws};
use hardened_csi_operator::runtime::metrics::Metrics;

/// The SDK implementation talking to a fake, with static keys and fast retries.
pub async fn sdk_on(fake: &Arc<fake::Fake>, metrics: &Arc<Metrics>) -> SdkAws {
    SdkAws::new(sdk_settings(fake, metrics)).await.expect("SDK client builds")
}

pub fn sdk_settings(fake: &Arc<fake::Fake>, metrics: &Arc<Metrics>) -> AwsSettings {
    AwsSettings {
        http_client: Some(fake.client()),
        credentials: moto::static_credentials(),
        retry: moto::fast_retries(),
        ..AwsSettings::new(moto::REGION, metrics.aws.clone())
    }
}

/// The value of one `aws_requests` series in the Prometheus text.
pub fn aws_requests(metrics: &Metrics, operation: &str, outcome: &str) -> u64 {
    let needle =
        format!("hardened_csi_operator_aws_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} ");
    metrics.encode().lines().find_map(|l| l.strip_prefix(&needle)?.parse().ok()).unwrap_or(0)
}
