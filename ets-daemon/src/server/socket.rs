//! The daemon's socket: a private directory, one daemon per socket (a lock file), stale socket
//! files replaced, and the peer-credential check.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};

/// Holds the daemon's lock file (`<socket>.lock`) for as long as it lives; a second daemon on the
/// same socket cannot take it.
#[derive(Debug)]
pub struct SocketLock {
    _file: File,
}

/// Creates the socket's directory (mode 0700) if needed. A directory of the daemon's own
/// naming (`ets`, `ets-$UID`) must belong to this user and is kept at 0700; a directory the user
/// chose with `--socket` is left as it is (the socket itself is 0600 and peers are checked).
fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating socket directory {}", dir.display()))?;
    }
    let ours = dir
        .file_name()
        .is_some_and(|n| n == "ets" || n.to_string_lossy().starts_with("ets-"));
    if !ours {
        return Ok(());
    }
    // Not followed: a symlink planted by another user to a directory this user owns would
    // otherwise pass the owner check and have that directory chmod-ed.
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "socket directory {} is not a directory (a symlink or a file); choose another \
             --socket",
            dir.display()
        );
    }
    let uid = ets_core::protocol::current_uid();
    if meta.uid() != uid {
        bail!(
            "socket directory {} belongs to uid {}, not to this user (uid {uid}); choose another \
             --socket",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// Takes the lock of `socket`, or says which daemon holds it.
pub fn lock(socket: &Path) -> Result<SocketLock> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_dir(dir)?;
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // A symlinked lock file (planted in a shared directory) is refused, never followed.
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "opening lock file {} (it must not be a symlink)",
                path.display()
            )
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading lock file {}", path.display()))?;
    if !meta.is_file() || meta.uid() != ets_core::protocol::current_uid() {
        bail!(
            "lock file {} is not a regular file of this user; remove it or choose another --socket",
            path.display()
        );
    }
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        bail!(
            "another etsd is already running on {} (pid {}); stop it with `ets shutdown` or use \
             another --socket",
            socket.display(),
            if pid.is_empty() { "unknown" } else { pid }
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(SocketLock { _file: file })
}

/// Binds the listener at `socket` (the caller holds its lock): a socket file nobody answers on
/// is stale and replaced; one somebody answers on means a daemon that took no lock (another
/// version, say) and is an error.
pub fn bind(socket: &Path) -> Result<Listener> {
    if let Ok(meta) = fs::symlink_metadata(socket) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; refusing to replace it (choose another --socket)",
                socket.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!(
                "a daemon is already answering on {}; stop it with `ets shutdown` or use another \
                 --socket",
                socket.display()
            );
        }
        tracing::info!(socket = %socket.display(), "replacing a stale socket file");
        fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let name = socket
        .to_fs_name::<GenericFilePath>()
        .with_context(|| format!("socket path {}", socket.display()))?;
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .with_context(|| format!("listening on {}", socket.display()))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", socket.display()))?;
    Ok(listener)
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    /// The peer runs as another user.
    #[error("connection refused: peer runs as uid {peer}, this daemon serves uid {own} only")]
    OtherUser {
        /// The peer's effective uid.
        peer: u32,
        /// The daemon's effective uid.
        own: u32,
    },
    /// The kernel did not say who the peer is.
    #[error("connection refused: the peer's credentials are unknown")]
    Unknown,
}

/// The peer-credential rule: only the daemon's own user may connect.
pub fn check_peer(peer_uid: Option<u32>, own_uid: u32) -> Result<(), PeerRefused> {
    match peer_uid {
        Some(peer) if peer == own_uid => Ok(()),
        Some(peer) => Err(PeerRefused::OtherUser { peer, own: own_uid }),
        None => Err(PeerRefused::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_may_connect() {
        assert_eq!(check_peer(Some(1000), 1000), Ok(()));
        let e = check_peer(Some(1001), 1000).unwrap_err();
        assert_eq!(
            e,
            PeerRefused::OtherUser {
                peer: 1001,
                own: 1000
            }
        );
        assert!(e.to_string().contains("uid 1001") && e.to_string().contains("uid 1000"));
        assert_eq!(check_peer(None, 1000), Err(PeerRefused::Unknown));
    }

    #[test]
    fn a_second_lock_on_the_same_socket_is_refused() {
        let dir = std::env::temp_dir().join(format!("ets-lock-test-{}", std::process::id()));
        let socket = dir.join("etsd.sock");
        let first = lock(&socket).unwrap();
        let e = lock(&socket).unwrap_err().to_string();
        assert!(
            e.contains("already running") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(first);
        lock(&socket).expect("free again once the holder is gone");
        let _ = fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ets-sock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_kept() {
        let dir = scratch("symlock");
        let target = dir.join("precious.txt");
        fs::write(&target, "keep me").unwrap();
        let socket = dir.join("etsd.sock");
        std::os::unix::fs::symlink(&target, dir.join("etsd.sock.lock")).unwrap();
        let e = lock(&socket).unwrap_err();
        assert!(format!("{e:#}").contains("symlink"), "{e:#}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_regular_file_at_the_socket_path_is_not_deleted() {
        let dir = scratch("regular");
        let socket = dir.join("etsd.sock");
        fs::write(&socket, "not a socket").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = runtime
            .block_on(async { bind(&socket).map(|_| ()) })
            .unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e:#}");
        assert_eq!(fs::read_to_string(&socket).unwrap(), "not a socket");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlinked_socket_directory_is_refused_and_its_target_not_chmodded() {
        let dir = scratch("symdir");
        let real = dir.join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.join("ets");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = lock(&link.join("etsd.sock")).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e:#}");
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o777, 0o755);
        let _ = fs::remove_dir_all(&dir);
    }
}
