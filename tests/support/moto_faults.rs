//! A fault proxy in front of moto, in-process: the SDK's HTTP client, forwarding every request to
//! moto over real HTTP except the EC2 actions told to fail, which it answers itself the way EC2
//! does (moto has no fault injection). It records the EC2 `CreateTags` calls that reached moto
//! (DryRun ones apart), with their resource IDs.
//!
//! Include it with `#[path = "../support/moto_faults.rs"] mod moto_faults;` and pass
//! `Faults::client()` as `AwsSettings::http_client` / `PollerSettings::http_client` beside moto's
//! endpoint URL.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Headers, Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// What to break, and what went through.
#[derive(Debug, Default)]
pub struct Faults {
    /// EC2 action -> how many of its next (non-DryRun) requests are answered `RequestLimitExceeded`.
    pub throttle: Mutex<HashMap<String, usize>>,
    /// EC2 actions answered `UnauthorizedOperation` (DryRun or not).
    pub deny: Mutex<Vec<String>>,
    /// Resource IDs of every CreateTags request moto performed (DryRun apart), in order.
    pub create_tags: Mutex<Vec<Vec<String>>>,
    /// Every EC2 action requested, DryRun ones included.
    pub actions: Mutex<Vec<(String, bool)>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn throttle(&self, action: &str, times: usize) {
        self.throttle.lock().expect("lock").insert(action.to_string(), times);
    }

    pub fn deny(&self, action: &str) {
        self.deny.lock().expect("lock").push(action.to_string());
    }

    /// The CreateTags calls moto performed.
    pub fn create_tags_calls(&self) -> Vec<Vec<String>> {
        self.create_tags.lock().expect("lock").clone()
    }

    /// Requests of `action`, DryRun ones included.
    pub fn requests(&self, action: &str) -> usize {
        self.actions.lock().expect("lock").iter().filter(|(a, _)| a == action).count()
    }

    /// Requests of `action` that were not DryRun.
    pub fn performed(&self, action: &str) -> usize {
        self.actions.lock().expect("lock").iter().filter(|(a, dry)| a == action && !dry).count()
    }

    /// The SDK HTTP client: this proxy in front of the default HTTPS/HTTP client.
    pub fn client(self: &Arc<Self>) -> SharedHttpClient {
        let inner = hardened_csi_operator::aws::sdk::https_client(None, None).expect("the default HTTP client builds");
        SharedHttpClient::new(FaultyClient { inner, faults: self.clone() })
    }

    /// The answer to `form` (an EC2 query body), or None to forward it to moto.
    fn answer(&self, form: &HashMap<String, String>) -> Option<(u16, &'static str, String)> {
        let action = form.get("Action")?.clone();
        let dry_run = form.get("DryRun").is_some_and(|v| v == "true");
        self.actions.lock().expect("lock").push((action.clone(), dry_run));
        if self.deny.lock().expect("lock").contains(&action) {
            return Some((403, "UnauthorizedOperation", format!("You are not authorized to perform {action}.")));
        }
        if !dry_run {
            let mut throttle = self.throttle.lock().expect("lock");
            if let Some(n) = throttle.get_mut(&action).filter(|n| **n > 0) {
                *n -= 1;
                return Some((503, "RequestLimitExceeded", "Request limit exceeded.".to_string()));
            }
        }
        if action == "CreateTags" && !dry_run {
            let mut ids: Vec<(usize, String)> = form
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("ResourceId.")?.parse().ok()?, v.clone())))
                .collect();
            ids.sort();
            self.create_tags.lock().expect("lock").push(ids.into_iter().map(|(_, id)| id).collect());
        }
        None
    }
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form(body: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

#[derive(Debug)]
struct FaultyClient {
    inner: SharedHttpClient,
    faults: Arc<Faults>,
}

impl HttpClient for FaultyClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: Arc<Faults>,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let Some((status, code, message)) = self.faults.answer(&form(&body)) else {
            return self.inner.call(request);
        };
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                <Message>{message}</Message></Error></Errors><RequestID>fault-1</RequestID></Response>"
        );
        let mut response = Response::new(StatusCode::try_from(status).expect("status"), SdkBody::from(xml));
        let mut headers = Headers::new();
        headers.insert("content-type", "text/xml");
        *response.headers_mut() = headers;
        HttpConnectorFuture::ready(Ok(response))
    }
}
