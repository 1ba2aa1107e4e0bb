//! Unix domain socket listeners: MQTT for local clients through a socket file, whose
//! permissions say who may connect.
//!
//! At start, a file already at the socket's path is removed only if it is a socket that nobody
//! listens on (a connection attempt is refused): what a broker that was killed leaves behind. A
//! socket another process listens on, or a file that is not a socket, stops the start instead.
//! The file gets its mode (`unix_mode`) from the moment it exists: the socket is given that mode
//! before it is bound (Linux creates the file with the socket's mode, less the umask), and the
//! file is set to it exactly once bound, before anything is accepted. At shutdown the file is
//! removed, if it is still the one this broker created.

use std::fmt;
use std::path::{Path, PathBuf};

/// The longest socket path: `sun_path` holds 108 bytes on Linux, the last one a NUL.
pub const MAX_PATH_LEN: usize = 107;

/// A Unix socket to listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnixSocketConfig {
    /// The socket file.
    pub path: PathBuf,
    /// The file's permissions (`unix_mode`, such as `0o660`); `None` leaves them to the umask.
    pub mode: Option<u32>,
}

impl fmt::Display for UnixSocketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}", self.path.display())
    }
}

/// Checks a socket path: not empty, and short enough for `sun_path`.
pub fn check_path(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err("the Unix socket path is empty".to_owned());
    }
    if len > MAX_PATH_LEN {
        return Err(format!(
            "the Unix socket path `{}` is {len} bytes long; the system allows at most \
             {MAX_PATH_LEN}",
            path.display()
        ));
    }
    Ok(())
}

/// Parses `unix_mode`: three or four octal digits, such as `"0660"` or `"660"`, at most `0777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let valid =
        (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if valid && mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "expected permissions as octal digits such as \"0660\" (at most \"0777\"), got \
             \"{text}\""
        )),
    }
}

#[cfg(unix)]
pub(crate) use imp::{UnixSocketListener, bind};

#[cfg(unix)]
mod imp {
    use std::fs::Permissions;
    use std::io;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use socket2::{Domain, SockAddr, Socket, Type};
    use tokio::net::{UnixListener, UnixStream};

    use super::UnixSocketConfig;

    /// How long the check for another listener may wait for its connection attempt.
    const IN_USE_CHECK: Duration = Duration::from_secs(1);
    /// Connections waiting to be accepted, as tokio's own listeners.
    const BACKLOG: i32 = 1024;

    /// A bound Unix socket; dropping it removes its file.
    pub(crate) struct UnixSocketListener {
        listener: UnixListener,
        _file: SocketFile,
    }

    impl UnixSocketListener {
        /// The next connection.
        pub(crate) async fn accept(&self) -> io::Result<UnixStream> {
            self.listener.accept().await.map(|(stream, _)| stream)
        }
    }

    /// The socket file this broker created: removed when dropped, unless another file has
    /// taken its place since.
    struct SocketFile {
        path: PathBuf,
        dev: u64,
        ino: u64,
    }

    impl Drop for SocketFile {
        fn drop(&mut self) {
            if let Ok(meta) = std::fs::symlink_metadata(&self.path)
                && meta.dev() == self.dev
                && meta.ino() == self.ino
            {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    /// Binds the socket (see the module's documentation for the stale file and the mode).
    pub(crate) async fn bind(config: &UnixSocketConfig) -> io::Result<UnixSocketListener> {
        remove_stale(&config.path).await?;
        let mut socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        if let Some(mode) = config.mode {
            // The file is created with the socket's mode less the umask: never more open than
            // asked, even before the exact mode is set below. (Best effort: systems where a
            // socket has no mode of its own just skip this step.)
            let file = std::fs::File::from(OwnedFd::from(socket));
            let _ = file.set_permissions(Permissions::from_mode(mode));
            socket = Socket::from(OwnedFd::from(file));
        }
        socket.bind(&SockAddr::unix(&config.path)?)?;
        let meta = std::fs::symlink_metadata(&config.path)?;
        // From here on the file is ours: removed again if anything below fails.
        let file = SocketFile {
            path: config.path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if let Some(mode) = config.mode {
            std::fs::set_permissions(&config.path, Permissions::from_mode(mode)).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot set its mode to {mode:04o}: {e}"))
            })?;
        }
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(
            OwnedFd::from(socket),
        ))?;
        Ok(UnixSocketListener {
            listener,
            _file: file,
        })
    }

    /// Removes a socket file nobody listens on; refuses to touch anything else.
    async fn remove_stale(path: &Path) -> io::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; Tern does not remove it",
            ));
        }
        match tokio::time::timeout(IN_USE_CHECK, UnixStream::connect(path)).await {
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)?;
                tracing::info!(
                    "removed the stale socket unix:{} (nothing listened on it)",
                    path.display()
                );
                Ok(())
            }
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("a socket file is there, and checking whether it is in use failed: {e}"),
            )),
            Ok(Ok(_)) | Err(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process accepts connections on this socket",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0777"), Ok(0o777));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        for bad in [
            "",
            "66",
            "1777",
            "0778",
            "rw-rw----",
            "06600",
            "-660",
            "+660",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_path(Path::new("/run/tern.sock")).is_ok());
        assert!(check_path(Path::new("")).is_err());
        let long = format!("/{}", "x".repeat(MAX_PATH_LEN));
        assert!(check_path(Path::new(&long)).is_err());
        assert!(check_path(Path::new(&long[..MAX_PATH_LEN])).is_ok());
    }
}
