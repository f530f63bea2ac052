//! Reading a `HardenedCsiDriver` from untrusted input (a file for `render`, a stored object that
//! bypassed admission) with errors that name the field: type errors carry their path and unknown
//! fields are refused instead of silently dropped.

use super::HardenedCsiDriver;
use super::validate::{FieldError, FieldErrors};

/// Parses one object, refusing unknown fields under `spec` and type errors, by field path.
pub fn from_value(value: serde_json::Value) -> Result<HardenedCsiDriver, FieldErrors> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let parsed: Result<HardenedCsiDriver, _> = serde_path_to_error::deserialize(de);
    let mut errs = FieldErrors::default();
    match parsed {
        Err(e) => {
            errs.0.push(FieldError::new(e.path().to_string(), e.inner().to_string()));
            Err(errs)
        }
        Ok(hcd) => {
            // metadata is the API server's business; only the user's spec must be exact.
            for path in unknown.into_iter().filter(|p| p.starts_with("spec.")) {
                errs.0.push(FieldError::new(path, "unknown field; see `kubectl explain hardenedcsidriver.spec`"));
            }
            if errs.0.is_empty() { Ok(hcd) } else { Err(errs) }
        }
    }
}

/// Parses the first YAML document of a file's text.
pub fn from_yaml(text: &str) -> Result<HardenedCsiDriver, FieldErrors> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| FieldErrors(vec![FieldError::new("(document)", format!("not valid YAML: {e}"))]))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    if kind != "HardenedCsiDriver" {
        return Err(FieldErrors(vec![FieldError::new(
            "kind",
            format!("{kind:?} is not HardenedCsiDriver (apiVersion csi.hardened.dev/v1alpha1)"),
        )]));
    }
    from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_and_unknown_fields_name_the_path() {
        let bad = "apiVersion: csi.hardened.dev/v1alpha1\nkind: HardenedCsiDriver\nmetadata: {name: \
            ebs}\nspec:\n  controller: {replicas: two}\n";
        let e = from_yaml(bad).unwrap_err();
        assert_eq!(e.0[0].field, "spec.controller.replicas");
        let unknown = "apiVersion: csi.hardened.dev/v1alpha1\nkind: HardenedCsiDriver\nmetadata: {name: \
            ebs}\nspec:\n  storageClass: []\n  node: {kubeletDir: /x}\n";
        let e = from_yaml(unknown).unwrap_err();
        let mut fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["spec.node.kubeletDir", "spec.storageClass"]);
        let wrong_kind = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
        assert_eq!(from_yaml(wrong_kind).unwrap_err().0[0].field, "kind");
    }
}
