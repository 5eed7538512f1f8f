//! Checks `--json` documents against the schema file the README points to
//! (docs/schema/ets-output.schema.json) with a real JSON-Schema validator: Python's
//! `jsonschema` (draft 2020-12), installed once into a venv under `target/`.
//!
//! Why not a Rust validator crate: the ones tried (jsonschema, boon) turn on features of crates
//! the engines share (serde_json `float_roundtrip`, idna `default`), and cargo's feature
//! unification then recompiles mistral.rs and the HTTP stack for every `cargo test`, about 25
//! minutes on the 2-core CI machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The validator's pinned release.
const JSONSCHEMA: &str = "jsonschema==4.26.0";

/// Validates every document given on stdin (one JSON value) against the schema in argv[1];
/// prints each violation and exits 1 if there is any.
const CHECK: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
doc = json.load(sys.stdin)
errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
for e in errors:
    print("/".join(map(str, e.absolute_path)) or "(top)", ":", e.message)
sys.exit(1 if errors else 0)
"#;

fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/ets-output.schema.json")
}

/// The venv's python with `jsonschema` in it, made on first use under `<target>/py-jsonschema`.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // <target>/<profile>/deps/<test-binary>
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the target directory")
            .to_path_buf();
        let venv = target.join("py-jsonschema");
        let python = venv.join("bin").join("python");
        let ready = |p: &Path| {
            Command::new(p)
                .args(["-c", "import jsonschema"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ready(&python) {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status();
            assert!(
                made.is_ok_and(|s| s.success()),
                "python3 -m venv {}",
                venv.display()
            );
            let pip = Command::new(venv.join("bin").join("pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    JSONSCHEMA,
                ])
                .status();
            assert!(pip.is_ok_and(|s| s.success()), "pip install {JSONSCHEMA}");
            assert!(ready(&python), "{JSONSCHEMA} does not import");
        }
        python
    })
}

/// `Err` with every violation, or `Ok`.
fn validate(doc: &Value) -> Result<(), String> {
    let mut child = Command::new(python())
        .args(["-c", CHECK])
        .arg(schema_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the validator");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => panic!(
            "the validator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Panics, listing every violation, unless `doc` is a valid `--json` document of type `kind`.
pub fn check(kind: &str, doc: &Value) {
    assert_eq!(doc["schema"], 1, "no schema version: {doc}");
    assert_eq!(doc["type"], kind, "{doc}");
    if let Err(e) = validate(doc) {
        panic!("{kind} document breaks the schema:\n{e}\n{doc}");
    }
}

/// Parses stdout as exactly one JSON document and checks it.
pub fn one(kind: &str, stdout: &[u8]) -> Value {
    let doc: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    check(kind, &doc);
    doc
}

#[test]
fn the_schema_refuses_what_it_should() {
    use serde_json::json;
    assert_eq!(
        validate(&json!({"schema": 1, "type": "done", "message": "ok"})),
        Ok(())
    );
    for bad in [
        json!({"type": "done", "message": "ok"}),
        json!({"schema": 2, "type": "done", "message": "ok"}),
        json!({"schema": 1, "type": "done"}),
        json!({"schema": 1, "type": "error", "error": {"kind": "BadRequest", "message": "x"}}),
        json!({"schema": 1, "type": "jobs", "jobs": [{"job": 1}]}),
        json!({"schema": 1, "type": "nonsense"}),
    ] {
        assert!(validate(&bad).is_err(), "accepted {bad}");
    }
}
