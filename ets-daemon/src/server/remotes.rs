//! Remote models by name: from the daemon's config file (`[[remote]]` tables), `--remote`
//! flags (which override config entries of the same name) and `AddRemoteModel` requests at run
//! time. A name here always means the remote engine.
//!
//! The config file is `$XDG_CONFIG_HOME/ets/etsd.toml` (else `~/.config/ets/etsd.toml`), or
//! `--config PATH`; nobody creates it, and it is read only if present:
//!
//! ```toml
//! [[remote]]
//! name = "qwen-math-7b"                      # the name jobs use (--policy qwen-math-7b)
//! endpoints = ["http://gpu1:8000", "http://gpu2:8000"]
//! served_name = "Qwen/Qwen2.5-Math-7B-Instruct"  # optional: the servers' model name
//! role = "policy"                            # optional: policy, prm or embedder
//! prm_profile = "judge"                      # optional: profile when used as the PRM
//! dialect = "vllm"                           # optional: llama.cpp or vllm (else detected)
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ets_core::protocol::{ModelRole, RemoteModelSpec};
use serde::Deserialize;

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    remote: Vec<RemoteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteEntry {
    name: String,
    endpoints: Vec<String>,
    served_name: Option<String>,
    role: Option<String>,
    prm_profile: Option<String>,
    dialect: Option<String>,
    timeout_secs: Option<u32>,
}

/// The default config file path, if the environment names one.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("ets").join("etsd.toml"))
}

/// Parses a role name.
fn role(name: &str) -> Result<ModelRole, String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "policy" => Ok(ModelRole::Policy),
        "prm" => Ok(ModelRole::Prm),
        "embedder" => Ok(ModelRole::Embedder),
        other => Err(format!(
            "unknown role `{other}` (expected policy, prm or embedder)"
        )),
    }
}

/// Reads the remote models of the config file at `path` (none when it does not exist).
pub fn read_config(path: &Path) -> Result<Vec<RemoteModelSpec>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if text.len() > 1 << 20 {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    let file: ConfigFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    file.remote
        .into_iter()
        .map(|r| {
            let spec = RemoteModelSpec {
                role: r
                    .role
                    .as_deref()
                    .map(role)
                    .transpose()
                    .map_err(|e| format!("{}: remote `{}`: {e}", path.display(), r.name))?,
                name: r.name,
                endpoints: r.endpoints,
                served_name: r.served_name,
                prm_profile: r.prm_profile,
                dialect: r.dialect,
                timeout_secs: r.timeout_secs,
            };
            check(&spec).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(spec)
        })
        .collect()
}

/// Parses `--remote NAME=URL[,URL…]`.
pub fn parse_remote_flag(text: &str) -> Result<RemoteModelSpec, String> {
    let (name, urls) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=URL[,URL…]"))?;
    let spec = RemoteModelSpec {
        name: name.trim().to_owned(),
        endpoints: urls
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect(),
        ..RemoteModelSpec::default()
    };
    check(&spec)?;
    Ok(spec)
}

/// Checks what can be checked without asking the servers (shared with the fuzz target:
/// [`ets_core::protocol::check_remote`]).
pub fn check(spec: &RemoteModelSpec) -> Result<(), String> {
    ets_core::protocol::check_remote(spec)
}

/// The remote models the daemon knows.
#[derive(Debug, Default)]
pub struct Remotes {
    specs: Mutex<HashMap<String, RemoteModelSpec>>,
}

impl Remotes {
    /// Config entries, then flags (a flag replaces a config entry of the same name).
    pub fn new(config: Vec<RemoteModelSpec>, flags: &[RemoteModelSpec]) -> Self {
        let specs = config
            .into_iter()
            .chain(flags.iter().cloned())
            .map(|s| (s.name.clone(), s))
            .collect();
        Self {
            specs: Mutex::new(specs),
        }
    }

    /// The spec named `name`.
    pub fn get(&self, name: &str) -> Option<RemoteModelSpec> {
        self.lock().get(name).cloned()
    }

    /// Adds or replaces a spec; returns the one it replaced.
    pub fn insert(&self, spec: RemoteModelSpec) -> Option<RemoteModelSpec> {
        self.lock().insert(spec.name.clone(), spec)
    }

    /// Every spec, by name.
    pub fn all(&self) -> Vec<RemoteModelSpec> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RemoteModelSpec>> {
        self.specs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_lists_remote_models_and_names_bad_keys() {
        let dir = std::env::temp_dir().join(format!("ets-remote-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("etsd.toml");
        assert!(
            read_config(&path).unwrap().is_empty(),
            "a missing file is no models"
        );
        std::fs::write(
            &path,
            "[[remote]]\nname = \"big\"\nendpoints = [\"http://127.0.0.1:8001\", \
             \"http://127.0.0.1:8002\"]\nrole = \"prm\"\ndialect = \"llama.cpp\"\n",
        )
        .unwrap();
        let specs = read_config(&path).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].endpoints.len(), 2);
        assert_eq!(specs[0].role, Some(ModelRole::Prm));
        std::fs::write(
            &path,
            "[[remote]]\nname = \"x\"\nendpoint = [\"http://a:1\"]\n",
        )
        .unwrap();
        let e = read_config(&path).unwrap_err();
        assert!(e.contains("endpoint"), "{e}");
        std::fs::write(
            &path,
            "[[remote]]\nname = \"x\"\nendpoints = [\"gpu1:8000\"]\n",
        )
        .unwrap();
        let e = read_config(&path).unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_remote_flag_names_endpoints_and_overrides_the_config() {
        let flag = parse_remote_flag("big=http://a:1,http://b:2").unwrap();
        assert_eq!(flag.endpoints, vec!["http://a:1", "http://b:2"]);
        assert!(parse_remote_flag("big").is_err());
        assert!(parse_remote_flag("=http://a:1").is_err());
        let config = vec![RemoteModelSpec {
            name: "big".into(),
            endpoints: vec!["http://old:1".into()],
            ..RemoteModelSpec::default()
        }];
        let remotes = Remotes::new(config, &[flag]);
        assert_eq!(remotes.get("big").unwrap().endpoints.len(), 2);
    }
}
