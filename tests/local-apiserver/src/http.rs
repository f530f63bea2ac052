//! HTTP routing: turns a request path into discovery or a resource verb, applies injected
//! faults, counts the request, and renders the answer (JSON, Table, PartialObjectMetadata or a
//! watch stream; errors as `Status`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query as QueryExtract, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::deletion;
use crate::discovery;
use crate::error::ApiError;
use crate::handlers::{self, Query, Reply, Target};
use crate::openapi;
use crate::protobuf;
use crate::server::Shared;
use crate::table::{self, Format};
use crate::tokens;
use crate::watch;
use crate::write;

/// The real API server rejects request bodies over 3 MiB; so does this one (413).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)).with_state(shared)
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A parsed resource request.
struct ResourceRequest {
    target: Target,
    verb: &'static str,
}

/// What a path addresses.
enum Route {
    Discovery(Value),
    Text(&'static str),
    Resource(ResourceRequest),
    /// `/local-apiserver/version`: reads or changes the Kubernetes version at run time.
    VersionControl,
    NotFound,
}

fn route(shared: &Shared, method: &Method, path: &str, q: &Query) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => {
            return Ok(Route::Discovery(discovery::version(&shared.kubernetes_version())));
        }
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Text("ok")),
        ["local-apiserver", "version"] => return Ok(Route::VersionControl),
        ["local-apiserver", "access-log"] if method == Method::GET => {
            return crate::auth::audit::report(shared, q.get("user")).map(Route::Discovery);
        }
        ["api"] => {
            let port = shared.port.load(std::sync::atomic::Ordering::Relaxed);
            return Ok(Route::Discovery(discovery::core_versions(port)));
        }
        ["apis"] => return Ok(Route::Discovery(discovery::groups(&shared.registry))),
        ["openapi", "v3"] => return Ok(Route::Discovery(openapi::index(&shared.registry))),
        ["openapi", "v3", "api", v] => {
            return Ok(openapi::document(&shared.registry, "", v, &shared.kubernetes_version())
                .map(Route::Discovery)
                .unwrap_or(Route::NotFound));
        }
        ["openapi", "v3", "apis", g, v] => {
            return Ok(openapi::document(&shared.registry, g, v, &shared.kubernetes_version())
                .map(Route::Discovery)
                .unwrap_or(Route::NotFound));
        }
        ["api", "v1"] => {
            return Ok(discovery::resources(&shared.registry, "", "v1")
                .map(Route::Discovery)
                .unwrap_or(Route::NotFound));
        }
        ["apis", g] => {
            return Ok(discovery::group(&shared.registry, g).map(Route::Discovery).unwrap_or(Route::NotFound));
        }
        ["apis", g, v] => {
            return Ok(discovery::resources(&shared.registry, g, v).map(Route::Discovery).unwrap_or(Route::NotFound));
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Ok(Route::NotFound),
    };
    // [namespaces, ns, plural, name?, sub?] or [plural, name?, sub?]; namespaces/{name}/status
    // and namespaces/{name}/finalize address the Namespace itself.
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*ns), Some(*sub))
        }
        ["namespaces", ns, plural, tail @ ..] => (Some(*ns), *plural, tail.first().copied(), tail.get(1).copied()),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return Ok(Route::NotFound),
    };
    let Some(info) = shared.registry.lookup(group, version, plural) else {
        return Ok(Route::NotFound);
    };
    if namespace.is_some() && !info.namespaced {
        return Ok(Route::NotFound);
    }
    let sub = match sub {
        None => None,
        Some("status") if info.status_subresource => Some("status"),
        Some("finalize") if info.kind == "Namespace" => Some("finalize"),
        Some("token") if info.token_subresource => Some("token"),
        Some("scale") if info.scale_subresource => Some("scale"),
        Some(_) => return Ok(Route::NotFound),
    };
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if sub == Some("token") => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {method} {path}"
            )));
        }
    };
    // `status` and `scale` serve get, update and patch only, as their REST storage does.
    if matches!(sub, Some("status" | "scale")) && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method} {path}"
        )));
    }
    // Namespaced objects are written through their namespace's path only.
    if info.namespaced && namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method} {path} ({} is namespaced)",
            info.plural
        )));
    }
    let target = Target {
        info,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    Ok(Route::Resource(ResourceRequest { target, verb }))
}

fn resource_label(t: &Target) -> String {
    match &t.subresource {
        Some(sub) => format!("{}/{sub}", t.info.plural),
        None => t.info.plural.clone(),
    }
}

/// Renders a reply in the format the client asked for.
fn render(t: &Target, reply: &Reply, format: Format, q: &Query) -> Value {
    let body = &reply.body;
    if body["kind"] == "Status" || format == Format::Full {
        return body.clone();
    }
    let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
    let is_list = body.get("items").is_some_and(Value::is_array);
    match (format, is_list) {
        (Format::Table, true) => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            table::table(&t.info, &items, body["metadata"].clone(), include, true)
        }
        (Format::Table, false) => {
            let rv = body["metadata"]["resourceVersion"].clone();
            table::table(&t.info, std::slice::from_ref(body), json!({"resourceVersion": rv}), include, true)
        }
        (Format::Metadata, true) => table::partial_metadata_list(
            body["items"].as_array().map(Vec::as_slice).unwrap_or_default(),
            body["metadata"].clone(),
        ),
        (Format::Metadata, false) => table::partial_metadata(body),
        (Format::Full, _) => body.clone(),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    QueryExtract(q): QueryExtract<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let header_str =
        |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let accept = header_str(header::ACCEPT);
    let content_type = header_str(header::CONTENT_TYPE);
    let user_agent = header_str(header::USER_AGENT);
    let format = table::format_from_accept(&accept);

    // Authentication and authorization come first, as in the real filter chain.
    let requester = match crate::auth::admit_request(&shared, &method, &path, &q, &headers) {
        Ok(r) => r,
        Err(e) => {
            let a = crate::auth::request_info::from_request(&method, &path, &q);
            let resource = if a.resource_request { a.combined_resource() } else { String::new() };
            shared.counters.record(&a.verb, &resource, e.code, false);
            return error_response(&e);
        }
    };
    let routed = match route(&shared, &method, &path, &q) {
        Ok(r) => r,
        Err(e) => {
            shared.counters.record("unknown", "", e.code, false);
            return error_response(&e);
        }
    };
    let rr = match routed {
        Route::Discovery(doc) => {
            shared.counters.record("get", "", 200, false);
            return json_response(200, &doc);
        }
        Route::Text(t) => {
            shared.counters.record("get", "", 200, false);
            return Response::new(Body::from(t));
        }
        Route::NotFound => {
            shared.counters.record("get", "", 404, false);
            return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        Route::VersionControl => {
            let verb = if method == Method::GET { "get" } else { "update" };
            return match discovery::version_control(&shared, method.as_str(), &body) {
                Ok(doc) => {
                    shared.counters.record(verb, "", 200, false);
                    json_response(200, &doc)
                }
                Err(e) => {
                    shared.counters.record(verb, "", e.code, false);
                    error_response(&e)
                }
            };
        }
        Route::Resource(rr) => rr,
    };
    let resource = resource_label(&rr.target);
    let (delay, fault) = shared.faults.decide(rr.verb, &resource);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(e) = fault {
        shared.counters.record(rr.verb, &resource, e.code, false);
        return error_response(&e);
    }
    let t = &rr.target;
    // JSON (and YAML for apply) bodies are understood, plus protobuf for the kinds kubectl's
    // generator subcommands send that way; 415 otherwise (client-go then reports it).
    let mut body = body;
    let mut content_type = content_type;
    if !body.is_empty() && (content_type.contains("protobuf") || content_type.contains("cbor")) {
        let decoded = if content_type.contains("protobuf") {
            match t.subresource.as_deref() {
                Some("token") => protobuf::decode(&body, "authentication.k8s.io/v1", "TokenRequest"),
                Some("scale") => protobuf::decode(&body, "autoscaling/v1", "Scale"),
                _ => protobuf::decode(&body, &t.info.api_version(), &t.info.kind),
            }
        } else {
            Err("CBOR bodies are not supported".to_string())
        };
        match decoded {
            Ok(v) => {
                body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                content_type = "application/json".into();
            }
            Err(why) => {
                let e = ApiError::unsupported_media(format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json, application/yaml ({why})"
                ));
                shared.counters.record(rr.verb, &resource, e.code, false);
                return error_response(&e);
            }
        }
    }
    if rr.verb == "watch" {
        return match watch::start(shared.clone(), t, &q, format) {
            Ok(rx) => {
                shared.counters.record("watch", &resource, 200, false);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(Bytes::from(chunk)), rx))
                });
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(e) => {
                shared.counters.record("watch", &resource, e.code, false);
                error_response(&e)
            }
        };
    }
    let result = crate::auth::with_requester(requester, || match (rr.verb, t.subresource.as_deref()) {
        _ if crate::auth::reviews::is_review(&t.info) => {
            crate::auth::reviews::handle(&shared, rr.verb, t, &body, &content_type)
        }
        ("create", Some("token")) => tokens::create_token(&shared, t, &body, &content_type),
        ("get", Some("scale")) => crate::scale::get(&shared, t),
        ("update", Some("scale")) => crate::scale::update(&shared, t, &q, &body, &content_type, &user_agent),
        ("patch", Some("scale")) => crate::scale::patch(&shared, t, &q, &body, &content_type, &user_agent),
        ("get", _) => handlers::get(&shared, t),
        ("list", _) => handlers::list(&shared, t, &q),
        ("create", _) => write::create(&shared, t, &q, &body, &content_type, &user_agent),
        ("update", _) => write::update(&shared, t, &q, &body, &content_type, &user_agent),
        ("patch", _) => write::patch(&shared, t, &q, &body, &content_type, &user_agent),
        ("delete", _) => deletion::delete(&shared, t, &q, &body),
        ("deletecollection", _) => deletion::delete_collection(&shared, t, &q, &body),
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    });
    match result {
        Ok(reply) => {
            shared.counters.record(rr.verb, &resource, reply.code, reply.changed);
            json_response(reply.code, &render(t, &reply, format, &q))
        }
        Err(e) => {
            shared.counters.record(rr.verb, &resource, e.code, false);
            error_response(&e)
        }
    }
}
