//! Real `llama-server` processes on loopback ports for the remote-engine tests, built from
//! llama.cpp's source by `cargo xtask llama-cpp` on first use (cached under `target/`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{binaries, models_dir, temp_dir, wait_timeout};

/// The `llama-server` binary: `$ETS_LLAMA_SERVER`, else the one `xtask llama-cpp` builds from
/// llama.cpp's source (built now, once, if missing; the `xtask` binary sits beside `etsd`, so no
/// nested cargo runs while `cargo test` holds the build lock).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("ETS_LLAMA_SERVER") {
            return PathBuf::from(path);
        }
        let xtask = binaries().0.with_file_name("xtask");
        assert!(
            xtask.is_file(),
            "{} is missing: run these tests with `cargo test --workspace`",
            xtask.display()
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(&xtask)
            .current_dir(&root)
            .args(["llama-cpp", "--print-path"])
            .stderr(Stdio::inherit())
            .output()
            .expect("running xtask llama-cpp");
        assert!(
            out.status.success(),
            "xtask llama-cpp failed ({})",
            out.status
        );
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let bin = PathBuf::from(dir.lines().last().unwrap_or_default()).join("llama-server");
        assert!(bin.is_file(), "no llama-server at {}", bin.display());
        bin
    })
    .clone()
}

/// The SmolLM2 GGUF of the test model store.
pub fn smol_gguf() -> PathBuf {
    let dir = models_dir().join("smollm2-135m");
    std::fs::read_dir(&dir)
        .expect("the smollm2-135m store folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .expect("a GGUF in the smollm2-135m folder")
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// GET `path` on loopback `port`; the status code, if anything answered.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// GET `path` on loopback `port`; the whole answer (headers and body), if anything answered.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Whether any slot of the server on `port` is generating now.
pub fn busy(port: u16) -> bool {
    http_get(port, "/slots").is_some_and(|t| t.contains("\"is_processing\":true"))
}

/// A running `llama-server`; killed when dropped.
pub struct LlamaServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl LlamaServer {
    /// Starts one on `port` with the SmolLM2 GGUF and waits until `/health` says 200.
    pub fn start(port: u16) -> LlamaServer {
        Self::start_with(port, &[])
    }

    /// [`LlamaServer::start`] with `extra` flags (`--embeddings`, …).
    pub fn start_with(port: u16, extra: &[&str]) -> LlamaServer {
        let dir = temp_dir(&format!("llama-{port}"));
        let child = Command::new(binary())
            .arg("-m")
            .arg(smol_gguf())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "1", "-np", "4", "-c", "8192", "--no-webui", "--slots"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("starting llama-server");
        let mut server = LlamaServer {
            port,
            child: Some(child),
            dir,
        };
        let started = Instant::now();
        while http_get_status(port, "/health") != Some(200) {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("llama-server exited early ({status}): {}", server.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "llama-server on {port} not healthy in 120 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it wrote to stderr.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
