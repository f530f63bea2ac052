//! The authorization attributes of a request, derived from its method, path and query the way
//! the real `RequestInfoFactory` does: `/api/v1/...` and `/apis/GROUP/VERSION/...` are resource
//! requests (`namespaces/NS/...` sets the namespace, also for `GET /api/v1/namespaces/NS`),
//! everything else is a non-resource request whose verb is the lower-cased method. A list or
//! watch with `fieldSelector=metadata.name=X` is authorised as a request for the name X.

use axum::http::Method;

use crate::handlers::Query;

/// `authorizer.Attributes` without the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attrs {
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path (non-resource requests).
    pub path: String,
}

impl Attrs {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attrs {
        Attrs {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            api_version: "*".into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Attrs {
        Attrs { verb: verb.into(), path: path.into(), ..Default::default() }
    }

    /// `resource` or `resource/subresource`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Path segment names the real server accepts as object names (`path.IsValidPathSegmentName`).
fn valid_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// The value `metadata.name` must equal for a field selector to match (`RequiresExactMatch`).
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        if field.ends_with('!') {
            return None;
        }
        (field.trim() == "metadata.name").then(|| value.trim().to_string())
    })
}

pub fn from_request(method: &Method, path: &str, q: &Query) -> Attrs {
    let mut parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = || Attrs::non_resource(&method.as_str().to_lowercase(), path);
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return non_resource();
    }
    let mut info = Attrs { resource_request: true, ..Default::default() };
    if parts[0] == "apis" {
        if parts.len() < 4 {
            return non_resource();
        }
        info.api_group = parts[1].to_string();
        parts.drain(..2);
    } else {
        parts.drain(..1);
    }
    info.api_version = parts[0].to_string();
    parts.drain(..1);
    info.verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    // The deprecated /watch/ and /proxy/ prefixes.
    if let Some(first) = parts.first().copied()
        && (first == "watch" || first == "proxy")
    {
        if first == "watch" {
            info.verb = "watch".into();
        } else {
            info.verb = "proxy".into();
        }
        parts.drain(..1);
    }
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        info.namespace = parts[1].to_string();
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts.drain(..2);
        }
    }
    if let Some(r) = parts.first() {
        info.resource = r.to_string();
    }
    if let Some(n) = parts.get(1) {
        info.name = n.to_string();
    }
    if let Some(sub) = parts.get(2) {
        info.subresource = sub.to_string();
    }
    if info.name.is_empty() && info.verb == "get" {
        let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        info.verb = if watch { "watch" } else { "list" }.into();
        if let Some(name) = q.get("fieldSelector").and_then(|s| exact_name(s))
            && valid_path_segment(&name)
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn resource_requests_like_the_request_info_factory() {
        let a = from_request(&Method::GET, "/apis/apps/v1/namespaces/ns1/deployments/web", &q(&[]));
        assert_eq!((a.verb.as_str(), a.api_group.as_str(), a.resource.as_str()), ("get", "apps", "deployments"));
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("ns1", "web"));
        let a = from_request(&Method::GET, "/api/v1/pods", &q(&[("watch", "true")]));
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
        let a = from_request(&Method::PUT, "/api/v1/namespaces/ns1/pods/p/status", &q(&[]));
        assert_eq!(a.combined_resource(), "pods/status");
        let a = from_request(&Method::GET, "/api/v1/namespaces/ns1", &q(&[]));
        assert_eq!((a.resource.as_str(), a.name.as_str(), a.namespace.as_str()), ("namespaces", "ns1", "ns1"));
        let a = from_request(&Method::PUT, "/api/v1/namespaces/ns1/finalize", &q(&[]));
        assert_eq!((a.resource.as_str(), a.subresource.as_str()), ("namespaces", "finalize"));
        let a = from_request(&Method::DELETE, "/api/v1/namespaces/ns1/configmaps", &q(&[]));
        assert_eq!(a.verb, "deletecollection");
        let a = from_request(&Method::POST, "/api/v1/namespaces/ns1/serviceaccounts/sa/token", &q(&[]));
        assert_eq!((a.verb.as_str(), a.combined_resource().as_str()), ("create", "serviceaccounts/token"));
    }

    #[test]
    fn a_name_field_selector_names_the_list() {
        let a = from_request(
            &Method::GET,
            "/api/v1/namespaces/ns1/configmaps",
            &q(&[("fieldSelector", "metadata.name=one,metadata.namespace=ns1")]),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "one"));
        let a = from_request(&Method::GET, "/api/v1/configmaps", &q(&[("fieldSelector", "metadata.name!=one")]));
        assert_eq!(a.name, "");
        let a = from_request(&Method::GET, "/api/v1/configmaps", &q(&[("fieldSelector", "metadata.name==two")]));
        assert_eq!(a.name, "two");
    }

    #[test]
    fn everything_else_is_a_non_resource_request() {
        for p in ["/healthz", "/version", "/api", "/api/v1", "/apis/apps", "/apis/apps/v1", "/openapi/v3/api/v1"] {
            let a = from_request(&Method::GET, p, &q(&[]));
            assert!(!a.resource_request, "{p}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", p));
        }
    }
}
