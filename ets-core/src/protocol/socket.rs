//! Where the daemon's socket lives: `$ETS_SOCKET`, else `$XDG_RUNTIME_DIR/ets/etsd.sock`, else
//! `/tmp/ets-$UID/etsd.sock`. Client and daemon both call [`default_socket_path`].

use std::path::PathBuf;

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "ETS_SOCKET";

/// File name of the socket inside its directory.
pub const SOCKET_FILE: &str = "etsd.sock";

/// The socket path a client connects to and a daemon listens on unless told otherwise.
pub fn default_socket_path() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = var(SOCKET_ENV) {
        return PathBuf::from(path);
    }
    if let Some(runtime) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("ets").join(SOCKET_FILE);
    }
    PathBuf::from(format!("/tmp/ets-{}", current_uid())).join(SOCKET_FILE)
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_names_the_user() {
        let path = PathBuf::from(format!("/tmp/ets-{}", current_uid())).join(SOCKET_FILE);
        assert!(path.to_string_lossy().contains(&current_uid().to_string()));
        assert!(
            default_socket_path().ends_with(SOCKET_FILE) || std::env::var_os(SOCKET_ENV).is_some()
        );
    }
}
