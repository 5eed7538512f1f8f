//! What `--json` prints: one JSON object per line, each with `"schema"` (the version of the
//! output format, [`SCHEMA_VERSION`]) and `"type"` (what the object is). docs/json.md describes
//! every type; docs/schema/ets-output.schema.json is the JSON Schema the tests validate real
//! outputs against. Names are kebab-case (enum values) and snake_case (keys); durations are
//! seconds as numbers, in keys ending `_s`.
//!
//! The version goes up when a key is removed or changes meaning; new keys may appear in any
//! version, so readers ignore keys they do not know.

use ets_client::{ClientError, JobId};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Version of the `--json` output format.
pub const SCHEMA_VERSION: u32 = 1;

/// `value` as a document of type `kind`: an object gets `schema` and `type` added; anything
/// else (a list) is put under the key `kind`.
pub fn document(kind: &str, value: impl Serialize) -> Value {
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut map = Map::new();
    map.insert("schema".into(), json!(SCHEMA_VERSION));
    map.insert("type".into(), json!(kind));
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                if k != "schema" && k != "type" {
                    map.insert(k, v);
                }
            }
        }
        other => {
            map.insert(kind.into(), other);
        }
    }
    Value::Object(map)
}

/// An error document: `{"schema", "type": "error", "job", "error": {"kind", "message"}}`.
pub fn error_document(job: Option<JobId>, kind: &str, message: &str) -> Value {
    document(
        "error",
        json!({"job": job, "error": {"kind": kind, "message": message}}),
    )
}

/// The kebab-case kind of a client-side error: the daemon's own kind for a refused request or
/// a failed job, else what went wrong on this side.
pub fn client_error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Server { kind, .. } | ClientError::JobFailed { kind, .. } => kind.to_string(),
        ClientError::Cancelled { .. } => "cancelled".into(),
        ClientError::UntrustedDaemon { .. } => "untrusted-daemon".into(),
        ClientError::ProtocolMismatch { .. } => "protocol-mismatch".into(),
        e if e.is_unreachable() => "unreachable".into(),
        _ => "client".into(),
    }
}

/// The kind of any error `ets` ends with.
pub fn error_kind(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return client_error_kind(e);
        }
        if cause.downcast_ref::<super::UsageError>().is_some() {
            return "usage".into();
        }
    }
    "error".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_schema_and_type_and_lists_go_under_their_kind() {
        let d = document("status", json!({"pid": 7, "type": "x"}));
        assert_eq!(d, json!({"schema": 1, "type": "status", "pid": 7}));
        assert_eq!(
            document("jobs", vec![1, 2]),
            json!({"schema": 1, "type": "jobs", "jobs": [1, 2]})
        );
    }

    #[test]
    fn error_kinds_are_kebab_case() {
        let e = ClientError::JobFailed {
            job: 3,
            kind: ets_client::ErrorKind::BadRequest,
            message: "x".into(),
        };
        assert_eq!(client_error_kind(&e), "bad-request");
        let usage = anyhow::Error::new(super::super::UsageError("bad".into()));
        assert_eq!(error_kind(&usage), "usage");
    }
}
