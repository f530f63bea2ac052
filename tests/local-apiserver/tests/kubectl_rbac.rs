//! kubectl against the `local-apiserver` binary started with `--authorization-mode=RBAC`: the
//! written kubeconfig is the admin one; `kubectl auth can-i` (SelfSubjectAccessReview),
//! `auth can-i --list` (SelfSubjectRulesReview), `--as` impersonation, `kubectl create token` and
//! the token's use, `auth whoami`, and kubectl's rendering of 401 and 403. Requires `kubectl` on
//! PATH (preinstalled on the project's machines).

use std::path::Path;

#[path = "support/process.rs"]
mod process;

/// (success, stdout, stderr)
fn kubectl(kc: &Path, args: &[&str]) -> (bool, String, String) {
    let r = process::run(kc, args);
    (r.success, r.stdout, r.stderr)
}

fn ok(kc: &Path, args: &[&str]) -> String {
    let (success, out, err) = kubectl(kc, args);
    assert!(success, "kubectl {args:?} failed:\n{out}{err}");
    out
}

const SA: &str = "system:serviceaccount:team:app";

const RBAC: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: team}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: app, namespace: team}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [creds]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: app}
subjects:
- {kind: ServiceAccount, name: app, namespace: team}
"#;

#[test]
fn kubectl_under_rbac() {
    let srv = process::start("kubectl-rbac", &["--authorization-mode=RBAC"]);
    let kc = srv.kubeconfig.clone();
    let manifest = kc.with_extension("manifest.yaml");
    std::fs::write(&manifest, RBAC).expect("write manifest");

    // The written kubeconfig is the admin's (system:masters).
    let whoami = ok(&kc, &["auth", "whoami"]);
    assert!(whoami.contains("admin") && whoami.contains("system:masters"), "{whoami}");
    assert_eq!(ok(&kc, &["auth", "can-i", "create", "deployments"]).trim(), "yes");
    ok(&kc, &["create", "-f", &manifest.to_string_lossy()]);

    // auth can-i as the ServiceAccount (impersonation by the admin).
    let as_sa = format!("--as={SA}");
    assert_eq!(ok(&kc, &["auth", "can-i", "list", "configmaps", "-n", "team", &as_sa]).trim(), "yes");
    let (allowed, out, _) = kubectl(&kc, &["auth", "can-i", "delete", "secrets", "-n", "team", &as_sa]);
    assert!(!allowed, "can-i exits 1 for no");
    assert_eq!(out.trim(), "no");
    assert_eq!(ok(&kc, &["auth", "can-i", "get", "secrets/creds", "-n", "team", &as_sa]).trim(), "yes");
    let (allowed, out, _) = kubectl(&kc, &["auth", "can-i", "list", "secrets", "-n", "team", &as_sa]);
    assert!(!allowed && out.trim() == "no", "resourceNames do not allow list: {out}");
    let list = ok(&kc, &["auth", "can-i", "--list", "-n", "team", &as_sa]);
    let line =
        |resource: &str| list.lines().find(|l| l.split_whitespace().next() == Some(resource)).map(str::to_string);
    let cms = line("configmaps").unwrap_or_else(|| panic!("configmaps listed:\n{list}"));
    assert!(cms.contains("[get list watch]"), "{cms}");
    let secrets = line("secrets").unwrap_or_else(|| panic!("secrets listed:\n{list}"));
    assert!(secrets.contains("[creds]") && secrets.contains("[get]"), "{secrets}");
    assert!(line("selfsubjectaccessreviews.authorization.k8s.io").is_some(), "{list}");
    assert!(list.lines().any(|l| l.contains("[/api/*]") && l.contains("[get]")), "{list}");

    // kubectl --as get: allowed and denied, with kubectl's rendering of the 403.
    ok(&kc, &["create", "configmap", "settings", "-n", "team", "--from-literal=mode=fast"]);
    let got = ok(&kc, &["get", "configmaps", "-n", "team", &as_sa]);
    assert!(got.contains("settings"), "{got}");
    let (allowed, _, err) = kubectl(&kc, &["get", "secrets", "-n", "team", &as_sa]);
    assert!(!allowed);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): secrets is forbidden: User \"system:serviceaccount:team:app\" cannot list \
         resource \"secrets\" in API group \"\" in the namespace \"team\""
    );

    // kubectl create token, then kubectl with that token.
    let token = ok(&kc, &["create", "token", "app", "-n", "team"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_token = format!("--token={token}");
    let whoami = ok(&kc, &[&as_token, "auth", "whoami"]);
    assert!(whoami.contains(SA) && whoami.contains("system:serviceaccounts:team"), "{whoami}");
    let got = ok(&kc, &[&as_token, "get", "configmap", "settings", "-n", "team", "-o", "jsonpath={.data.mode}"]);
    assert_eq!(got, "fast");
    let (allowed, _, err) = kubectl(&kc, &[&as_token, "delete", "configmap", "settings", "-n", "team"]);
    assert!(!allowed);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): configmaps \"settings\" is forbidden: User \"system:serviceaccount:team:app\" \
         cannot delete resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
    // The ServiceAccount may not impersonate anyone.
    let (allowed, _, err) = kubectl(&kc, &[&as_token, "get", "configmaps", "-n", "team", "--as=bob"]);
    assert!(!allowed);
    assert!(
        err.contains(
            "users \"bob\" is forbidden: User \"system:serviceaccount:team:app\" cannot impersonate resource \"users\" \
             in API group \"\" at the cluster scope"
        ),
        "{err}"
    );
    // The access audit over HTTP (admin only, like any path outside the API).
    let report = ok(&kc, &["get", "--raw", &format!("/local-apiserver/access-log?user={SA}")]);
    let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    let unused: Vec<&str> =
        report["unusedGrants"].as_array().unwrap().iter().map(|g| g["description"].as_str().unwrap()).collect();
    // can-i asks through access reviews, which use no permission: only list and get were used.
    assert_eq!(
        unused,
        [
            "get \"secrets\" in API group \"\" named \"creds\" in the namespace \"team\" (granted by RoleBinding \
             \"team/app\" of Role \"app\")",
            "watch \"configmaps\" in API group \"\" in the namespace \"team\" (granted by RoleBinding \"team/app\" \
             of Role \"app\")",
        ],
        "{report}"
    );
    assert!(report["denied"].as_array().unwrap().iter().any(|d| d["verb"] == "delete"), "{report}");
    let (allowed, _, _) = kubectl(&kc, &[&as_token, "get", "--raw", &format!("/local-apiserver/access-log?user={SA}")]);
    assert!(!allowed, "the audit is not for the ServiceAccount itself");
    // An unknown token is 401, which kubectl reports as not logged in.
    let (allowed, _, err) = kubectl(&kc, &["--token=not-a-token", "get", "configmaps", "-n", "team"]);
    assert!(!allowed);
    assert!(err.contains("error: You must be logged in to the server (Unauthorized)"), "{err}");
}
