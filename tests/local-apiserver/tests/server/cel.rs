//! CRD `x-kubernetes-validations` with the Kubernetes CEL libraries, through the API: each rule
//! accepts what the real server accepts and rejects the rest with its 422 shape
//! (`spec.x: Invalid value: <value>: <message>`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::common::{server, status};

/// A bounded property with one rule (unbounded strings make most rules too costly for the
/// real server's static cost check).
fn prop(type_: &str, rule: Value) -> Value {
    json!({"type": type_, "maxLength": 256, "x-kubernetes-validations": [rule]})
}

fn rules_crd() -> Value {
    let spec = json!({
        "type": "object",
        "properties": {
            "memory": prop("string", json!({
                "rule": "isQuantity(self) && quantity(self).compareTo(quantity('64Mi')) >= 0 \
                         && quantity(self).isLessThan(quantity('1Ti'))",
                "message": "must be a quantity between 64Mi and 1Ti"})),
            "cpus": prop("string", json!({
                "rule": "quantity(self).isInteger() && quantity(self).asInteger() <= 8 \
                         && quantity(self).isGreaterThan(quantity('0'))",
                "message": "must be a whole number of CPUs from 1 to 8"})),
            "endpoint": prop("string", json!({
                "rule": "isURL(self) && url(self).getScheme() == 'https' && url(self).getHost() != ''",
                "message": "must be an https URL"})),
            "address": prop("string", json!({
                "rule": "isIP(self) && ip(self).family() == 4", "message": "must be an IPv4 address"})),
            "subnet": prop("string", json!({
                "rule": "isCIDR(self) && cidr(self).prefixLength() >= 16 && cidr('10.0.0.0/8').containsCIDR(self)",
                "message": "must be a /16 or smaller inside 10.0.0.0/8"})),
            "volumeName": prop("string", json!({
                "rule": "!format.dns1123Label().validate(self).hasValue()",
                "messageExpression":
                    "'must be a DNS-1123 label: ' + format.dns1123Label().validate(self).value()[0]"})),
            "weights": {"type": "array", "maxItems": 16, "items": {"type": "integer"}, "x-kubernetes-validations": [
                {"rule": "self.isSorted()", "message": "must be sorted"},
                {"rule": "self.sum() <= 100",
                 "messageExpression": "'must add up to at most 100, not ' + string(self.sum())"},
                {"rule": "self.min() >= 1 && self.max() <= 50", "message": "each weight must be 1 to 50"}
            ]},
            "zones": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 64},
                      "x-kubernetes-validations": [
                {"rule": "self.indexOf('us-east-1a') <= 0", "message": "us-east-1a, if listed, must come first"},
                {"rule": "self.all(z, self.lastIndexOf(z) == self.indexOf(z))", "message": "zones must not repeat"}
            ]},
            "tag": prop("string", json!({
                "rule": "self.find('^v[0-9]+') != '' && size(self.findAll('[0-9]+')) <= 3",
                "message": "must look like v1, v1.2 or v1.2.3"})),
            "label": prop("string", json!({
                "rule": "self.lowerAscii() == self && self.trim() == self && self.replace('_', '-') == self \
                         && self.split('-').all(p, size(p) > 0)",
                "message": "must be lower case words joined by single dashes"})),
            "notAfter": {"type": "string", "format": "date-time", "maxLength": 64, "x-kubernetes-validations": [{
                "rule": "self > timestamp('2026-01-01T00:00:00Z')", "message": "must be after 2026"}]},
            "fixedName": prop("string", json!({"rule": "self == oldSelf", "message": "is immutable"})),
            "capacity": prop("string", json!({
                "rule": "!oldSelf.hasValue() || quantity(self).compareTo(quantity(oldSelf.value())) >= 0",
                "optionalOldSelf": true, "message": "may not shrink"})),
            "mode": prop("string", json!({
                "rule": "self != 'legacy'", "reason": "FieldValueForbidden", "message": "legacy mode was removed"}))
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rules.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "rules", "singular": "rule", "kind": "Rule"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}}]
        }
    })
}

async fn rules_api(srv: &local_apiserver::LocalApiServer) -> Api<DynamicObject> {
    let client = srv.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("rules.example.com", &PatchParams::apply("test"), &Patch::Apply(rules_crd())).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Rule"), "rules");
    Api::namespaced_with(client, "default", &ar)
}

fn rule_obj(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Rule", "metadata": {"name": name},
                                  "spec": spec}))
    .unwrap()
}

/// Creates `spec`; None when accepted, else the one cause's (field, reason, message) and the
/// Status message.
async fn try_create(api: &Api<DynamicObject>, spec: Value) -> Option<(String, String, String)> {
    let name = format!("r{}", rand_suffix());
    match api.create(&PostParams::default(), &rule_obj(&name, spec.clone())).await {
        Ok(_) => None,
        Err(e) => {
            let s = status(Err::<(), _>(e));
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{spec}: {}", s.message);
            let causes = s.details.expect("details").causes;
            assert_eq!(causes.len(), 1, "{spec}: {causes:?}");
            let c = &causes[0];
            assert_eq!(s.message, format!("Rule.example.com \"{name}\" is invalid: {}: {}", c.field, c.message));
            Some((c.field.clone(), c.reason.clone(), c.message.clone()))
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn invalid(field: &str, message: &str) -> Option<(String, String, String)> {
    Some((field.into(), "FieldValueInvalid".into(), message.into()))
}

#[tokio::test]
async fn quantity_library() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    assert_eq!(try_create(&api, json!({"memory": "512Mi"})).await, None);
    assert_eq!(try_create(&api, json!({"memory": "64Mi"})).await, None);
    assert_eq!(try_create(&api, json!({"memory": "0.5Gi"})).await, None);
    let msg = "Invalid value: \"1Ki\": must be a quantity between 64Mi and 1Ti";
    assert_eq!(try_create(&api, json!({"memory": "1Ki"})).await, invalid("spec.memory", msg));
    let e = try_create(&api, json!({"memory": "2Ti"})).await;
    assert_eq!(e.unwrap().2, "Invalid value: \"2Ti\": must be a quantity between 64Mi and 1Ti");
    assert!(try_create(&api, json!({"memory": "lots"})).await.is_some(), "not a quantity");
    assert_eq!(try_create(&api, json!({"cpus": "4"})).await, None);
    assert_eq!(try_create(&api, json!({"cpus": "2000m"})).await, None, "2000m is the integer 2");
    for bad in ["500m", "9", "0"] {
        let e = try_create(&api, json!({"cpus": bad})).await;
        assert_eq!(e.map(|c| c.0), Some("spec.cpus".into()), "{bad}");
    }
}

#[tokio::test]
async fn url_ip_and_cidr_libraries() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    assert_eq!(try_create(&api, json!({"endpoint": "https://ebs.us-east-1.amazonaws.com/path?q=1"})).await, None);
    let e = try_create(&api, json!({"endpoint": "http://ebs.us-east-1.amazonaws.com"})).await;
    assert_eq!(
        e,
        invalid("spec.endpoint", "Invalid value: \"http://ebs.us-east-1.amazonaws.com\": must be an https URL")
    );
    assert!(try_create(&api, json!({"endpoint": "not a url"})).await.is_some());

    assert_eq!(try_create(&api, json!({"address": "10.1.2.3"})).await, None);
    let e = try_create(&api, json!({"address": "fd00::1"})).await;
    assert_eq!(e, invalid("spec.address", "Invalid value: \"fd00::1\": must be an IPv4 address"));
    assert!(try_create(&api, json!({"address": "10.1.2"})).await.is_some());

    assert_eq!(try_create(&api, json!({"subnet": "10.20.0.0/16"})).await, None);
    assert_eq!(try_create(&api, json!({"subnet": "10.20.30.0/24"})).await, None);
    for bad in ["10.0.0.0/8", "192.168.0.0/16", "10.20.0.0"] {
        let e = try_create(&api, json!({"subnet": bad})).await;
        assert_eq!(e.map(|c| c.0), Some("spec.subnet".into()), "{bad}");
    }
}

#[tokio::test]
async fn format_library_with_message_expression() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    assert_eq!(try_create(&api, json!({"volumeName": "data-0"})).await, None);
    let (field, reason, message) = try_create(&api, json!({"volumeName": "Data_0"})).await.expect("rejected");
    assert_eq!((field.as_str(), reason.as_str()), ("spec.volumeName", "FieldValueInvalid"));
    assert!(message.starts_with("Invalid value: \"Data_0\": must be a DNS-1123 label: "), "{message}");
    // The detail is the format library's (a part of the real server's wording).
    assert!(message.contains("must consist of lower case alphanumeric characters or '-'"), "{message}");
    let long = "a".repeat(64);
    assert!(try_create(&api, json!({"volumeName": long})).await.is_some(), "labels are at most 63 characters");
}

#[tokio::test]
async fn lists_library() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    assert_eq!(try_create(&api, json!({"weights": [10, 20, 30]})).await, None);
    // An object or list value is not shown in the message, like the real server.
    assert_eq!(
        try_create(&api, json!({"weights": [30, 20]})).await,
        invalid("spec.weights", "Invalid value: must be sorted")
    );
    let e = try_create(&api, json!({"weights": [40, 45, 50]})).await;
    assert_eq!(e, invalid("spec.weights", "Invalid value: must add up to at most 100, not 135"));
    assert_eq!(
        try_create(&api, json!({"weights": [0, 5]})).await.unwrap().2,
        "Invalid value: each weight must be 1 to 50"
    );
    assert_eq!(try_create(&api, json!({"zones": ["us-east-1a", "us-east-1b"]})).await, None);
    assert_eq!(try_create(&api, json!({"zones": ["us-east-1b", "us-east-1c"]})).await, None);
    let e = try_create(&api, json!({"zones": ["us-east-1b", "us-east-1a"]})).await;
    assert_eq!(e, invalid("spec.zones", "Invalid value: us-east-1a, if listed, must come first"));
    let e = try_create(&api, json!({"zones": ["us-east-1b", "us-east-1c", "us-east-1b"]})).await;
    assert_eq!(e, invalid("spec.zones", "Invalid value: zones must not repeat"));
}

#[tokio::test]
async fn regex_and_strings_libraries_and_typed_values() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    assert_eq!(try_create(&api, json!({"tag": "v1.2.3"})).await, None);
    assert!(try_create(&api, json!({"tag": "1.2.3"})).await.is_some(), "find: must start with v");
    assert!(try_create(&api, json!({"tag": "v1.2.3.4"})).await.is_some(), "findAll: at most three numbers");
    assert_eq!(try_create(&api, json!({"label": "fast-io"})).await, None);
    for bad in ["Fast-io", " fast", "fast_io", "fast--io"] {
        let e = try_create(&api, json!({"label": bad})).await;
        assert_eq!(e.map(|c| c.0), Some("spec.label".into()), "{bad:?}");
    }
    assert_eq!(try_create(&api, json!({"notAfter": "2026-06-01T00:00:00Z"})).await, None);
    let e = try_create(&api, json!({"notAfter": "2025-06-01T00:00:00Z"})).await;
    assert_eq!(e, invalid("spec.notAfter", "Invalid value: \"2025-06-01T00:00:00Z\": must be after 2026"));
    let e = try_create(&api, json!({"mode": "legacy"})).await;
    let forbidden = ("spec.mode".into(), "FieldValueForbidden".into(), "Forbidden: legacy mode was removed".into());
    assert_eq!(e, Some(forbidden));
}

#[tokio::test]
async fn transition_rules_and_optional_old_self() {
    let srv = server().await;
    let api = rules_api(&srv).await;
    let pp = PostParams::default();
    api.create(&pp, &rule_obj("t", json!({"fixedName": "a", "capacity": "10Gi"}))).await.unwrap();
    let patch = |spec: Value| {
        let api = api.clone();
        async move { api.patch("t", &PatchParams::default(), &Patch::Merge(json!({"spec": spec}))).await }
    };
    let e = status(patch(json!({"fixedName": "b"})).await);
    assert_eq!(e.code, 422);
    assert_eq!(e.message, "Rule.example.com \"t\" is invalid: spec.fixedName: Invalid value: \"b\": is immutable");
    patch(json!({"capacity": "20Gi"})).await.expect("growing is allowed");
    let e = status(patch(json!({"capacity": "15Gi"})).await);
    assert_eq!(e.message, "Rule.example.com \"t\" is invalid: spec.capacity: Invalid value: \"15Gi\": may not shrink");
    // Without optionalOldSelf a transition rule does not run on create or when the field is new;
    // with it, it runs on create with oldSelf = optional.none().
    api.create(&pp, &rule_obj("u", json!({"capacity": "1Gi"}))).await.expect("create: no old value");
    patch(json!({"fixedName": null})).await.expect("removing the field is not a transition");
    patch(json!({"fixedName": "c"})).await.expect("adding the field back has no old value");
}

#[tokio::test]
async fn crds_with_rules_that_do_not_compile_are_refused() {
    let srv = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(srv.client());
    let mut crd = rules_crd();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    spec["broken"] = prop("string", json!({"rule": "self.("}));
    spec["list"] = json!({"type": "array", "items": prop("string", json!({"rule": "self == oldSelf"}))});
    spec["renamed"] = json!({"type": "object", "properties": {"iops": {"type": "integer"}},
                             "x-kubernetes-validations": [{"rule": "!has(self.iopsPerGB) || self.iops > 0"}]});
    let e = status(crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap()).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = e.details.unwrap().causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
    let base = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties";
    assert!(
        fields.iter().any(|f| f.starts_with(&format!(
            "{base}[broken].x-kubernetes-validations[0].rule: Invalid value: \"self.(\": compilation failed: "
        ))),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with(&format!("{base}[list].items.x-kubernetes-validations[0].rule:"))
            && f.contains("oldSelf cannot be used on the uncorrelatable portion of the schema")),
        "{fields:?}"
    );
    let undefined = format!(
        "{base}[renamed].x-kubernetes-validations[0].rule: Invalid value: \"!has(self.iopsPerGB) || self.iops > 0\": \
         compilation failed: ERROR: <input>: undefined field 'iopsPerGB'"
    );
    assert!(fields.contains(&undefined), "{fields:?}");
    assert!(crds.get_opt("rules.example.com").await.unwrap().is_none(), "nothing was stored");
}

#[tokio::test]
async fn crds_whose_rules_cost_too_much_are_refused() {
    let srv = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(srv.client());
    let classes = |bounds: Value| {
        let mut list = json!({"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "default": {"type": "boolean"}}},
        "x-kubernetes-validations": [
            {"rule": "self.filter(c, c.default).size() <= 1", "message": "at most one default"},
            {"rule": "self.all(c, self.exists_one(d, d.name == c.name))", "message": "names must be unique"}
        ]});
        if let (Some(l), Some(b)) = (list.as_object_mut(), bounds.as_object()) {
            l.extend(b.clone());
        }
        let mut crd = rules_crd();
        crd["metadata"]["name"] = json!("classes.example.com");
        crd["spec"]["names"] = json!({"plural": "classes", "singular": "class", "kind": "Class"});
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            json!({"type": "object", "properties": {"classes": list}});
        serde_json::from_value::<CustomResourceDefinition>(crd).unwrap()
    };
    // Unbounded, the list may hold a million items as far as the real server's estimate goes:
    // the O(n^2) uniqueness rule and even the filter exceed the per-rule budget.
    let e = status(crds.create(&PostParams::default(), &classes(json!({}))).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let causes = e.details.unwrap().causes;
    let at = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[classes].x-kubernetes-validations";
    let forbidden = |i: usize, factor: &str| {
        causes.iter().any(|c| {
            c.field == format!("{at}[{i}].rule")
                && c.reason == "FieldValueForbidden"
                && c.message
                    .starts_with(&format!("Forbidden: estimated rule cost exceeds budget by factor of {factor}"))
                && c.message.ends_with(
                    "adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)",
                )
        })
    };
    assert!(forbidden(1, "more than 100x"), "{causes:?}");
    assert!(forbidden(0, "1."), "{causes:?}");
    // With bounds the same rules are cheap.
    let mut crd = serde_json::to_value(classes(json!({"maxItems": 16}))).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"]["classes"]["items"]["properties"]["name"]["maxLength"] = json!(63);
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    crds.create(&PostParams::default(), &crd).await.expect("bounded rules fit the budget");
}
