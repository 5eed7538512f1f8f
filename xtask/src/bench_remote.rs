//! The remote engine's side of `cargo xtask bench-search`: a local `llama-server` (built by
//! `cargo xtask llama-cpp`) serving the same GGUF on the same cores, and the remote policy and
//! PRM it yields, wrapped so the benchmark's meters can hold them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ets_core::{
    BackendError, Continuation, ExpandRequest, Policy, Reward, ScoreRequest, ServerPromptTokens,
    StopHandle,
};

/// Parallel slots of the server: the widest search's children run at once.
const SLOTS: usize = 16;
/// Context per slot (llama-server splits `-c` among its slots).
const CONTEXT_PER_SLOT: usize = 2048;

/// A `llama-server` child process on a loopback port; killed when dropped.
pub struct LlamaServerProcess {
    child: Child,
    port: u16,
}

impl LlamaServerProcess {
    /// Starts `<bin>/llama-server` on `gguf` with `threads` threads and waits for `/health`.
    pub fn start(bin: &Path, gguf: &Path, threads: usize) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin.join("llama-server"))
            .arg("-m")
            .arg(gguf)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
            .args(["-np", &SLOTS.to_string()])
            .args(["-c", &(SLOTS * CONTEXT_PER_SLOT).to_string()])
            .args(["--no-webui"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.join("llama-server").display()))?;
        let mut server = Self { child, port };
        let started = Instant::now();
        while !server.healthy() {
            if let Some(status) = server.child.try_wait()? {
                bail!("llama-server exited at start ({status})");
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("llama-server on port {port} was not healthy within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(s, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
    }
}

impl Drop for LlamaServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A remote engine's policy, as the benchmark's meters take it.
pub struct BoxedPolicy(pub Box<dyn Policy>);

impl Policy for BoxedPolicy {
    fn encode_prompt(&mut self, problem: &str) -> Result<Vec<u32>, BackendError> {
        self.0.encode_prompt(problem)
    }

    fn expand(
        &mut self,
        requests: &[ExpandRequest<'_>],
    ) -> Result<Vec<Vec<Continuation>>, BackendError> {
        self.0.expand(requests)
    }

    fn retain(&mut self, live: &[&[u32]]) -> Result<(), BackendError> {
        self.0.retain(live)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.0.set_stop(stop)
    }

    fn server_prompt_tokens(&self) -> Option<ServerPromptTokens> {
        self.0.server_prompt_tokens()
    }
}

/// A remote engine's PRM, as the benchmark's meters take it.
pub struct BoxedReward(pub Box<dyn Reward>);

impl Reward for BoxedReward {
    fn score(&mut self, requests: &[ScoreRequest<'_>]) -> Result<Vec<Option<f64>>, BackendError> {
        self.0.score(requests)
    }

    fn retain(&mut self, live: &[ScoreRequest<'_>]) -> Result<(), BackendError> {
        self.0.retain(live)
    }

    fn set_stop(&mut self, stop: StopHandle) {
        self.0.set_stop(stop)
    }

    fn server_prompt_tokens(&self) -> Option<ServerPromptTokens> {
        self.0.server_prompt_tokens()
    }
}
