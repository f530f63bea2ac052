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

/// The terms of a field selector, split at unescaped commas (`fields.splitTerms`).
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let (mut terms, mut start, mut in_slash) = (Vec::new(), 0, false);
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// `fields.splitTerm`: the first operator from the left, `!=` and `==` before `=`.
fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    (0..term.len()).filter(|i| term.is_char_boundary(*i)).find_map(|i| {
        ["!=", "==", "="]
            .into_iter()
            .find(|op| term[i..].starts_with(op))
            .map(|op| (&term[..i], op, &term[i + op.len()..]))
    })
}

/// `fields.UnescapeValue`: only `\\`, `\,` and `\=` are escapes.
fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `fields.ParseSelector` then `RequiresExactMatch("metadata.name")`: `Err` when the selector does
/// not parse (the real server then drops the whole list options, so no name), else the value of
/// the first `metadata.name=`/`==` term in sorted order. No trimming: `metadata.name =x` names
/// the field `metadata.name ` and matches nothing here.
fn exact_name(selector: &str) -> Result<Option<String>, ()> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut name = None;
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        let (field, op, value) = split_term(term).ok_or(())?;
        let value = unescape(value).ok_or(())?;
        if name.is_none() && op != "!=" && field == "metadata.name" {
            name = Some(value);
        }
    }
    Ok(name)
}

/// Whether the query decodes as `ListOptions` (`ParameterCodec.DecodeParameters`): selectors that
/// parse and integers where integers go. Booleans always decode (anything but absent, `0` or
/// `false` is true).
fn list_options_decode(q: &Query) -> bool {
    let int = |k: &str| q.get(k).is_none_or(|v| v.trim().parse::<i64>().is_ok());
    let labels = q.get("labelSelector").is_none_or(|s| crate::selectors::LabelSelector::parse(s).is_ok());
    let fields = q.get("fieldSelector").is_none_or(|s| exact_name(s).is_ok());
    labels && fields && int("limit") && q.get("timeoutSeconds").is_none_or(|v| v.is_empty() || v.parse::<i64>().is_ok())
}

/// `Convert_Slice_string_To_bool`: only `0` and `false` (any case) are false.
fn query_bool(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
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
    // A collection GET is a list or watch; it names an object when its field selector requires
    // `metadata.name` to equal one, and only when every list option decodes (a bad labelSelector
    // or limit drops the name, as in the real server, where the handler then refuses it with 400).
    if info.name.is_empty() && info.verb == "get" {
        let decodes = list_options_decode(q);
        info.verb = if query_bool(q, "watch") { "watch" } else { "list" }.into();
        if decodes
            && let Some(Ok(Some(name))) = q.get("fieldSelector").map(|s| exact_name(s))
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

    /// What kube-rs sends for a cache or a live check by name: the name holds beside a label
    /// selector, a limit and a watch.
    #[test]
    fn the_name_holds_with_label_selector_limit_and_watch() {
        let name = ("fieldSelector", "metadata.name=ebs.csi.aws.com");
        let labels = ("labelSelector", "app.kubernetes.io/instance=ebs,app.kubernetes.io/managed-by=x");
        let path = "/apis/storage.k8s.io/v1/csidrivers";
        let a = from_request(&Method::GET, path, &q(&[name, labels, ("limit", "1")]));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "ebs.csi.aws.com"));
        let watch = [name, labels, ("watch", "true"), ("resourceVersion", "12"), ("timeoutSeconds", "290")];
        let a = from_request(&Method::GET, path, &q(&watch));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "ebs.csi.aws.com"));
        // Sorted terms: the first metadata.name term in sorted order wins.
        let a = from_request(&Method::GET, path, &q(&[("fieldSelector", "metadata.name=b,metadata.name=a")]));
        assert_eq!(a.name, "a");
    }

    /// When any list option fails to decode, the real server resets them all: no name (so a
    /// resourceNames rule does not apply), the verb from `watch` alone.
    #[test]
    fn options_that_do_not_decode_drop_the_name() {
        let name = ("fieldSelector", "metadata.name=one");
        let path = "/api/v1/namespaces/ns1/configmaps";
        for bad in [("labelSelector", "a in (b"), ("limit", "ten"), ("timeoutSeconds", "soon")] {
            let a = from_request(&Method::GET, path, &q(&[name, bad]));
            assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", ""), "{bad:?}");
        }
        for bad in ["metadata.name", "metadata.name=one,x", "metadata.name=a\\b"] {
            let a = from_request(&Method::GET, path, &q(&[("fieldSelector", bad)]));
            assert_eq!(a.name, "", "{bad}");
        }
        // No trimming: a space makes another field; escapes unescape; a path-unsafe name is no name.
        assert_eq!(from_request(&Method::GET, path, &q(&[("fieldSelector", "metadata.name =one")])).name, "");
        assert_eq!(from_request(&Method::GET, path, &q(&[("fieldSelector", "metadata.name=a\\,b")])).name, "a,b");
        assert_eq!(from_request(&Method::GET, path, &q(&[("fieldSelector", "metadata.name=..")])).name, "");
        // Booleans: anything but 0/false is true.
        let a = from_request(&Method::GET, path, &q(&[name, ("watch", "yes")]));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "one"));
        let a = from_request(&Method::GET, path, &q(&[name, ("watch", "False")]));
        assert_eq!(a.verb, "list");
        // The deprecated /watch/ prefix is a watch already: its field selector names nothing.
        let a = from_request(&Method::GET, "/api/v1/watch/namespaces/ns1/configmaps", &q(&[name]));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", ""));
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
