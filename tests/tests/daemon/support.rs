//! Starting the real `etsd` binary on a temporary socket, and a raw protocol client.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ets_core::protocol::{
    read_frame, write_frame, CodecError, JobEvent, JobId, Request, Response, SolveRequest,
    StatusReport, PROTOCOL_VERSION,
};
use ets_core::{Method, SearchConfig};

/// The workspace's target directory and profile folder the test binary runs from.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Paths of `etsd` and `ets` beside the test binary. `cargo test --workspace` builds both
/// before any test runs (ets-daemon and ets-client have integration tests, so cargo builds their
/// binaries). A nested `cargo build` here would resolve features without the workspace's
/// dev-dependencies and compile mistral.rs a second time.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINARIES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let dir = profile_dir();
        let (etsd, ets) = (dir.join("etsd"), dir.join("ets"));
        for bin in [&etsd, &ets] {
            assert!(
                bin.is_file(),
                "{} is missing: run these tests with `cargo test --workspace` (or `cargo build \
                 -p ets-daemon -p ets-client` first)",
                bin.display()
            );
        }
        (etsd, ets)
    })
}

/// A fresh temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ets-e2e-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The model store the tests read; the test models are pulled into it on first use (a no-op
/// when they are there).
pub fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use ets_engine::store::{Store, MINILM_L6, SMOLLM2_135M};
        let store = Store::open_default().expect("a model store");
        store
            .ensure_pulled(&[SMOLLM2_135M, MINILM_L6])
            .unwrap_or_else(|e| panic!("pulling the test models: {e}"));
        store.root().to_path_buf()
    })
    .clone()
}

/// A running `etsd` on its own socket; SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Daemon {
    /// Starts `etsd` with `extra` flags and waits until it answers.
    pub fn start(name: &str, extra: &[&str]) -> Daemon {
        let dir = temp_dir(name);
        let socket = dir.join("ets").join("etsd.sock");
        let child = Self::spawn(&socket, &dir, extra);
        let mut daemon = Daemon {
            child: Some(child),
            socket,
            dir,
        };
        daemon.wait_ready();
        daemon
    }

    /// Starts `etsd` on the model store `store` (not the test store) and waits until it answers.
    pub fn start_with_store(name: &str, store: &Path, extra: &[&str]) -> Daemon {
        let dir = temp_dir(name);
        let socket = dir.join("ets").join("etsd.sock");
        let child = Self::spawn_with_store(&socket, &dir, store, extra);
        let mut daemon = Daemon {
            child: Some(child),
            socket,
            dir,
        };
        daemon.wait_ready();
        daemon
    }

    /// Spawns `etsd` on `socket` without waiting.
    pub fn spawn(socket: &Path, dir: &Path, extra: &[&str]) -> Child {
        Self::spawn_with_store(socket, dir, &models_dir(), extra)
    }

    /// Spawns `etsd` on `socket` and the model store `store` without waiting.
    pub fn spawn_with_store(socket: &Path, dir: &Path, store: &Path, extra: &[&str]) -> Child {
        let (etsd, _) = binaries();
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new(etsd);
        // SAFETY: prctl(2) only, between fork and exec. The daemon gets SIGTERM when the thread
        // that started it ends, so no daemon outlives the test process.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
            .arg("--socket")
            .arg(socket)
            .arg("--models-dir")
            .arg(store)
            .args(["--auto-pull", "false"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("XDG_STATE_HOME", dir.join("state"))
            // No etsd.toml of the user's leaks into a test.
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etsd.stderr")).unwrap())
            .spawn()
            .expect("starting etsd")
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etsd exited early ({status}): {}", self.log());
            }
            if let Ok(mut c) = Conn::open(&self.socket) {
                if c.hello().is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etsd did not answer within 60 s: {}", self.log());
    }

    /// What the daemon wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etsd.stderr")).unwrap_or_default()
    }

    /// Starts `etsd` owned by a thread that lives as long as the test process: it needs no
    /// `--idle-exit` (which would end it under tests that leave it idle, on a slow machine), and
    /// it still gets SIGTERM when the test process ends.
    pub fn start_for_process(name: &'static str, extra: &'static [&'static str]) -> Daemon {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("etsd-{name}-owner"))
            .spawn(move || {
                let mut daemon = Daemon::start(name, extra);
                let child = daemon.child.take();
                tx.send(daemon).unwrap();
                let _child = child;
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        rx.recv().expect("the daemon's owner thread started it")
    }

    /// A connected, greeted client.
    pub fn connect(&self) -> Conn {
        let mut c = Conn::open(&self.socket).expect("connecting to etsd");
        c.hello().expect("handshake");
        c
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon still running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut child, Duration::from_secs(90)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("etsd did not exit within 90 s of SIGTERM")
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for a child at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A raw protocol connection (blocking), for tests that need to see every frame. Job messages
/// that arrive while it waits for a reply, or for another job's end, are held, never dropped:
/// [`Conn::recv`] and [`Conn::finish`] see them later.
pub struct Conn {
    pub stream: UnixStream,
    held: VecDeque<Response>,
}

impl Conn {
    /// Connects without greeting.
    pub fn open(socket: &Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Conn {
            stream,
            held: VecDeque::new(),
        })
    }

    /// Exchanges Hello; returns the daemon's protocol version.
    pub fn hello(&mut self) -> Result<u32, String> {
        self.send(&Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "e2e".into(),
        });
        match self.read() {
            Some(Response::Hello { protocol, .. }) => Ok(protocol),
            other => Err(format!("expected Hello, got {other:?}")),
        }
    }

    pub fn send(&mut self, request: &Request) {
        write_frame(&mut self.stream, request).expect("sending a request");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending bytes");
    }

    /// The next frame off the socket; `None` when the daemon closed the connection.
    fn read(&mut self) -> Option<Response> {
        read_frame(&mut self.stream).ok().flatten()
    }

    /// The next message: a held job message first, else the next frame; `None` when the daemon
    /// closed the connection.
    pub fn recv(&mut self) -> Option<Response> {
        self.held.pop_front().or_else(|| self.read())
    }

    /// Sends a request and returns its reply (the first frame that belongs to no job), holding
    /// job messages seen meanwhile.
    pub fn request(&mut self, request: &Request) -> Response {
        self.send(request);
        loop {
            let r = self.read().expect("a reply");
            if r.job().is_none() {
                return r;
            }
            self.held.push_back(r);
        }
    }

    /// The daemon's status.
    pub fn status(&mut self) -> StatusReport {
        match self.request(&Request::Status) {
            Response::Status(s) => *s,
            other => panic!("expected Status, got {other:?}"),
        }
    }

    /// Submits a solve; returns the job id.
    pub fn submit(&mut self, request: SolveRequest) -> JobId {
        match self.request(&Request::Solve(Box::new(request))) {
            Response::Accepted { job } => job,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    /// Reads until job `job` ends; returns its events and final message.
    /// Other jobs' messages, and replies, are held for later.
    pub fn finish(&mut self, job: JobId) -> (Vec<JobEvent>, Response) {
        let mut events = Vec::new();
        let mut others = VecDeque::new();
        let mut held = std::mem::take(&mut self.held);
        let end = loop {
            let r = match held.pop_front() {
                Some(r) => r,
                None => self.read().expect("the job's messages"),
            };
            match r {
                Response::Event { job: j, event } if j == job => events.push(event),
                r @ (Response::Result { .. }
                | Response::Failed { .. }
                | Response::Cancelled { .. })
                    if r.job() == Some(job) =>
                {
                    break r
                }
                other => others.push_back(other),
            }
        };
        others.extend(held);
        self.held = others;
        (events, end)
    }

    /// Reads whatever the daemon sends until it closes (true) or `limit` passes (false).
    pub fn drain(&mut self, limit: Duration) -> (Vec<Response>, bool) {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut seen: Vec<Response> = self.held.drain(..).collect();
        loop {
            match read_frame(&mut self.stream) {
                Ok(Some(r)) => seen.push(r),
                Ok(None) => return (seen, true),
                Err(CodecError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return (seen, false)
                }
                Err(_) => return (seen, true),
            }
        }
    }
}

/// A small, fast search on the real model: one step of at most `tokens` tokens per child.
pub fn tiny_solve(
    problem: &str,
    method: Method,
    width: usize,
    tokens: usize,
    seed: u64,
) -> SolveRequest {
    let mut r = SolveRequest::new(problem);
    r.config = SearchConfig {
        method,
        width,
        max_depth: 1,
        max_step_tokens: tokens,
        max_total_tokens: tokens,
        seed,
        ..SearchConfig::default()
    };
    r
}

/// A search that runs for a while (several depths), for cancellation and shutdown tests.
pub fn long_solve(problem: &str) -> SolveRequest {
    let mut r = SolveRequest::new(problem);
    r.config = SearchConfig {
        method: Method::Rebase,
        width: 4,
        max_depth: 20,
        max_step_tokens: 24,
        max_total_tokens: 400,
        seed: 3,
        ..SearchConfig::default()
    };
    r
}
