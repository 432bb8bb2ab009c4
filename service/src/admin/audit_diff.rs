//! What an update changed, leaf by leaf, for the audit trail.

use crate::store::Tenant;
use crate::tenants;

/// `(path, old JSON, new JSON)` for every leaf that differs.
pub(super) fn diff(old: &Tenant, new: &Tenant) -> Vec<(String, String, String)> {
    let mut a = std::collections::BTreeMap::new();
    let mut b = std::collections::BTreeMap::new();
    flatten(
        "",
        &serde_json::from_str(&tenants::audit_json(old)).unwrap_or_default(),
        &mut a,
    );
    flatten(
        "",
        &serde_json::from_str(&tenants::audit_json(new)).unwrap_or_default(),
        &mut b,
    );
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |m: &std::collections::BTreeMap<String, serde_json::Value>| {
                m.get(k).map(|v| v.to_string()).unwrap_or_default()
            };
            (k.clone(), show(&a), show(&b))
        })
        .collect()
}

pub(super) fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
