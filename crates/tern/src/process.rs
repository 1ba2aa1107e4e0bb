//! The process around the broker: the PID file, dropping root privileges (`user`), and
//! systemd's readiness protocol (`Type=notify`).

use std::path::{Path, PathBuf};

/// Why `-d` (Mosquitto's daemon mode) is refused.
pub(crate) const DAEMON_REFUSED: &str = "-d (run in the background) is not supported: run \
    Tern in the foreground under a supervisor, such as systemd with the unit in \
    dist/systemd/tern.service (Type=notify: systemd knows when Tern is ready), and use \
    `pid_file` if something needs the process id";

/// The PID file (`pid_file`): written once the listeners are bound, removed when dropped (at
/// exit).
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes the process id, followed by a newline, to `path` (replacing what is there).
    pub(crate) fn write(path: &Path) -> anyhow::Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("`pid_file`: cannot write `{}`: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs as `user` from now on, when started as root (Mosquitto's `user`): its groups, then its
/// group, then its user id. Called once the listeners are bound and the files opened. Without
/// root, or when `user` is root itself, nothing changes (with a warning where it matters).
pub(crate) fn drop_privileges(user: Option<&str>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use nix::unistd::{Uid, User, initgroups, setgid, setuid};
        let root = Uid::effective().is_root();
        match (user, root) {
            (None, true) => {
                tracing::warn!(
                    "running as root: set `user` (mosquitto.conf, or `user` in tern.toml) to \
                     run as another user once the listeners are bound"
                );
            }
            (None, false) => {}
            (Some(name), false) => {
                tracing::warn!(
                    "`user {name}` ignored: Tern was not started as root, so it keeps running \
                     as the user that started it"
                );
            }
            (Some("root"), true) => tracing::warn!("running as root (`user root`)"),
            (Some(name), true) => {
                let account = User::from_name(name)
                    .map_err(|e| anyhow::anyhow!("`user`: cannot look up `{name}`: {e}"))?
                    .ok_or_else(|| anyhow::anyhow!("`user`: no user named `{name}`"))?;
                let cname = std::ffi::CString::new(name)
                    .map_err(|_| anyhow::anyhow!("`user`: `{name}` contains a NUL byte"))?;
                initgroups(&cname, account.gid).map_err(|e| {
                    anyhow::anyhow!("`user`: cannot set the groups of `{name}`: {e}")
                })?;
                setgid(account.gid).map_err(|e| {
                    anyhow::anyhow!("`user`: cannot switch to group {}: {e}", account.gid)
                })?;
                setuid(account.uid)
                    .map_err(|e| anyhow::anyhow!("`user`: cannot switch to `{name}`: {e}"))?;
                tracing::info!(
                    "now running as `{name}` (uid {}, gid {})",
                    account.uid,
                    account.gid
                );
            }
        }
    }
    #[cfg(not(unix))]
    if let Some(name) = user {
        tracing::warn!("`user {name}` ignored: not supported on this system");
    }
    Ok(())
}

/// Tells systemd the broker is ready (listeners bound, store recovered). Does nothing when
/// not started by systemd with `Type=notify` (no `NOTIFY_SOCKET`).
pub(crate) fn notify_ready() {
    #[cfg(unix)]
    notify(&[sd_notify::NotifyState::Ready]);
}

/// Tells systemd a reload has started (`RELOADING=1`, with the time `Type=notify-reload` asks
/// for); [`notify_ready`] ends it.
pub(crate) fn notify_reloading() {
    #[cfg(unix)]
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
}

/// Tells systemd the broker is stopping.
pub(crate) fn notify_stopping() {
    #[cfg(unix)]
    notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(unix)]
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
