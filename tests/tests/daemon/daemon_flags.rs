//! Promises of the daemon's flags and of its socket, against the real `etsd`: `--log-file`,
//! the socket's 0600 mode, SIGINT, `--idle-exit`, and the peer-uid check on a live socket.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ets_core::protocol::{read_frame, ErrorKind, Request, Response};

use crate::support::{temp_dir, wait_timeout, Daemon};

/// Sends `signal` to the daemon and waits (at most 60 s) for its exit status.
fn signal_and_wait(daemon: &mut Daemon, signal: i32) -> ExitStatus {
    let mut child: Child = daemon.child.take().expect("daemon running");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("etsd did not exit within 60 s of signal {signal}")
    })
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_log_file_gets_the_logs_the_socket_is_private_and_sigint_exits_cleanly() {
    let logs = temp_dir("log-file");
    let log = logs.join("nested").join("etsd.log");
    let mut daemon = Daemon::start("sigint", &["--log-file", log.to_str().unwrap()]);

    // The socket: 0600, in a 0700 directory of the daemon's own naming.
    assert_eq!(mode(&daemon.socket), 0o600, "socket mode");
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700, "socket dir");

    // Logs go to the file (its directory created), not to stderr.
    let status = daemon.connect().status();
    assert!(status.pid > 0);
    let written = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(written.contains("etsd listening"), "{written}");
    assert!(
        written.contains(&daemon.socket.display().to_string()),
        "{written}"
    );
    assert!(
        !daemon.log().contains("etsd listening"),
        "stderr: {}",
        daemon.log()
    );

    // SIGINT: exit 0, the socket removed, said in the log.
    let exit = signal_and_wait(&mut daemon, libc::SIGINT);
    assert!(exit.success(), "exit status {exit}");
    assert!(!daemon.socket.exists(), "socket removed");
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("SIGINT: shutting down"), "{written}");
    assert!(written.contains("etsd stopped"), "{written}");
    let _ = std::fs::remove_dir_all(&logs);
}

#[test]
fn idle_exit_waits_for_the_last_client_then_exits() {
    let mut daemon = Daemon::start("idle-exit", &["--idle-exit", "6s"]);
    // A client holds the daemon past the idle time.
    let mut client = daemon.connect();
    std::thread::sleep(Duration::from_secs(10));
    let child = daemon.child.as_mut().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "etsd exited with a client connected: {}",
        daemon.log()
    );
    assert!(client.status().clients >= 1);
    // The client leaves: six seconds later the daemon exits, cleanly.
    drop(client);
    let left = Instant::now();
    let exit = wait_timeout(daemon.child.as_mut().unwrap(), Duration::from_secs(60))
        .unwrap_or_else(|| panic!("etsd still runs 60 s after its last client left"));
    let after = left.elapsed();
    daemon.child = None;
    assert!(exit.success(), "exit status {exit}");
    assert!(
        after >= Duration::from_secs(5),
        "exited {after:?} after the last client left, before the idle time"
    );
    assert!(!daemon.socket.exists(), "socket removed");
    assert!(daemon.log().contains("idle: exiting"), "{}", daemon.log());
}

/// True when this process may run a child as another uid (root in CI).
fn can_switch_uid() -> bool {
    ets_core::protocol::current_uid() == 0
}

#[test]
fn a_peer_of_another_uid_is_refused_on_a_live_socket() {
    if !can_switch_uid() {
        eprintln!("skipped: needs root to connect as another uid (CI runs as root)");
        return;
    }
    let daemon = Daemon::start("peer-uid", &[]);
    // Open the socket to everybody: only the peer check stands in the way now.
    for dir in [daemon.dir.as_path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = temp_dir("peer-uid-out");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let seen = out.join("seen.bin");
    // As `nobody`: connect, say hello, record whatever the daemon answers.
    let hello = ets_core::protocol::encode_frame(&Request::Hello {
        protocol: ets_core::protocol::PROTOCOL_VERSION,
        client: "nobody".into(),
    })
    .unwrap();
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.settimeout(20)\n\
         s.connect({sock:?})\n\
         try:\n  s.sendall(bytes({hello:?}))\nexcept Exception: pass\n\
         data=b''\n\
         try:\n  \
           while True:\n    \
             chunk=s.recv(65536)\n    \
             if not chunk: break\n    \
             data+=chunk\n\
         except Exception: pass\n\
         open({seen:?},'wb').write(data)\n",
        sock = daemon.socket.display().to_string(),
        seen = seen.display().to_string(),
    );
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::null())
        .status()
        .expect("python3 as nobody");
    assert!(status.success(), "the peer script failed: {status}");
    let bytes = std::fs::read(&seen).expect("the peer recorded the answer");
    let mut reader = bytes.as_slice();
    let answer: Option<Response> = read_frame(&mut reader).unwrap();
    match answer {
        Some(Response::Error { kind, message }) => {
            assert_eq!(kind, ErrorKind::BadRequest, "{message}");
            assert!(message.contains("uid 65534"), "{message}");
        }
        other => panic!("a peer of uid 65534 got {other:?}"),
    }
    assert!(reader.is_empty(), "one frame, then the daemon closed");
    // Counted, logged, and the daemon still serves its own user.
    let mut c = daemon.connect();
    let Response::Metrics(metrics) = c.request(&Request::Metrics) else {
        panic!("metrics")
    };
    assert!(metrics.contains("ets_peers_refused_total 1"), "{metrics}");
    assert!(
        daemon.log().contains("refusing a connection"),
        "{}",
        daemon.log()
    );
    assert_eq!(c.status().clients, 1, "only this client is connected");
    let _ = std::fs::remove_dir_all(&out);
}
