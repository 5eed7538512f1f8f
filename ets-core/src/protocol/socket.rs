//! Where the daemon's socket lives: `$ETS_SOCKET`, else `$XDG_RUNTIME_DIR/ets/etsd.sock`, else
//! `/tmp/ets-$UID/etsd.sock`. Client and daemon both call [`default_socket_path`].

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "ETS_SOCKET";

/// File name of the socket inside its directory.
pub const SOCKET_FILE: &str = "etsd.sock";

/// The socket path a client connects to and a daemon listens on unless told otherwise.
pub fn default_socket_path() -> PathBuf {
    socket_path_from(
        std::env::var_os(SOCKET_ENV),
        std::env::var_os("XDG_RUNTIME_DIR"),
        current_uid(),
    )
}

/// The documented order, given the values of `$ETS_SOCKET` and `$XDG_RUNTIME_DIR` (an empty
/// value counts as unset) and the user id.
fn socket_path_from(
    ets_socket: Option<OsString>,
    xdg_runtime_dir: Option<OsString>,
    uid: u32,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty());
    if let Some(path) = set(ets_socket) {
        return PathBuf::from(path);
    }
    if let Some(runtime) = set(xdg_runtime_dir) {
        return PathBuf::from(runtime).join("ets").join(SOCKET_FILE);
    }
    PathBuf::from(format!("/tmp/ets-{uid}")).join(SOCKET_FILE)
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn ets_socket_comes_first_then_xdg_runtime_dir_then_tmp_with_the_uid() {
        assert_eq!(
            socket_path_from(some("/a/b.sock"), some("/run/user/7"), 7),
            PathBuf::from("/a/b.sock")
        );
        assert_eq!(
            socket_path_from(None, some("/run/user/7"), 7),
            PathBuf::from("/run/user/7/ets/etsd.sock")
        );
        assert_eq!(
            socket_path_from(None, None, 1234),
            PathBuf::from("/tmp/ets-1234/etsd.sock")
        );
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        assert_eq!(
            socket_path_from(some(""), some("/run/user/7"), 7),
            PathBuf::from("/run/user/7/ets/etsd.sock")
        );
        assert_eq!(
            socket_path_from(some(""), some(""), 42),
            PathBuf::from("/tmp/ets-42/etsd.sock")
        );
    }
}
