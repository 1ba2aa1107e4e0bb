//! Password files: files made by Debian's `mosquitto_passwd` load and verify in Tern, files
//! written by `tern passwd` are accepted by the real Mosquitto broker, and `tern passwd`'s
//! flags (-c, -b, -D, -U, -H, -I, --scram), refusals and exit statuses.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, mosquitto_passwd};
use tern::auth::password_file::PasswordFile;
use tern::auth::scram::{ScramCredential, ScramMechanism};

/// How long one external command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command left.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `program args`, feeding `stdin`, and waits at most [`COMMAND_TIMEOUT`].
fn run_with_stdin(program: &str, args: &[&std::ffi::OsStr], stdin: Option<&[u8]>) -> Output {
    let out = common::run_bounded(Command::new(program).args(args), stdin, COMMAND_TIMEOUT);
    Output {
        status: out.status,
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
    args.iter().map(|a| std::ffi::OsStr::new(*a)).collect()
}

/// `tern passwd ARGS` with standard input closed.
fn tern_passwd(args: &[&str]) -> Output {
    tern_passwd_stdin(args, None)
}

fn tern_passwd_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut full = vec!["passwd"];
    full.extend_from_slice(args);
    run_with_stdin(env!("CARGO_BIN_EXE_tern"), &os(&full), stdin)
}

/// Asserts success and returns the output.
#[track_caller]
fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        output.stderr
    );
    output
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read password file")
}

fn load(path: &Path) -> PasswordFile {
    PasswordFile::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// The names in `dir` (to check that no temporary file is left behind).
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Mosquitto's files in Tern.

#[tokio::test]
async fn mosquitto_passwd_default_pbkdf2_file_verifies_in_tern() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    mosquitto_passwd(&["-c", "-b", f, "alice", "right"]);
    mosquitto_passwd(&["-b", f, "bob", "pässword: with colon"]);
    mosquitto_passwd(&["-b", f, "carol", ""]);
    let text = read(&file);
    assert!(text.starts_with("alice:$7$101$"), "{text}");

    let pw = load(&file);
    assert_eq!(pw.len(), 3);
    assert!(pw.verify("alice", b"right"));
    assert!(!pw.verify("alice", b"wrong"));
    assert!(!pw.verify("alice", b"right "));
    assert!(pw.verify("bob", "pässword: with colon".as_bytes()));
    assert!(!pw.verify("bob", b"right"));
    assert!(pw.verify("carol", b""));
    assert!(!pw.verify("carol", b"x"));
    assert!(!pw.verify("nobody", b"right"));
}

#[tokio::test]
async fn mosquitto_passwd_sha512_and_iterations_files_verify_in_tern() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    mosquitto_passwd(&["-H", "sha512", "-c", "-b", f, "alice", "right"]);
    mosquitto_passwd(&["-I", "1000", "-b", f, "bob", "other"]);
    let text = read(&file);
    assert!(text.starts_with("alice:$6$"), "{text}");
    assert!(text.contains("\nbob:$7$1000$"), "{text}");

    let pw = load(&file);
    assert!(pw.verify("alice", b"right"));
    assert!(!pw.verify("alice", b"wrong"));
    assert!(pw.verify("bob", b"other"));
    assert!(!pw.verify("bob", b"right"));
}

#[tokio::test]
async fn mosquitto_passwd_plain_file_is_refused_until_hashed_by_tern() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    std::fs::write(&file, "# plain\nalice:right\nbob: two words \n").expect("write");
    let e = PasswordFile::load(&file).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: password for `alice` is not hashed; run `tern passwd -U FILE`"
    );
    ok(tern_passwd(&["-U", path_str(&file)]));
    let pw = load(&file);
    assert!(pw.verify("alice", b"right"));
    // Blanks around a plain-text password are not part of it, as for Mosquitto.
    assert!(pw.verify("bob", b"two words"));
    assert!(read(&file).starts_with("# plain\nalice:$7$1000$"));
}

// ---------------------------------------------------------------------------------------------
// Tern's files in Mosquitto.

/// A running `mosquitto` broker; killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    /// Starts `/usr/sbin/mosquitto` on a free loopback port with `password_file` and waits
    /// (bounded) until it accepts connections.
    fn start(password_file: &Path) -> Self {
        let dir = TempDir::new();
        let port = common::free_port();
        // Run as root, Mosquitto switches to the `mosquitto` user, which cannot read a 0600
        // file owned by root: keep root then.
        let as_root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(password_file).expect("metadata").uid() == 0
        };
        let conf = dir.path.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n{}",
                password_file.display(),
                if as_root { "user root\n" } else { "" }
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.path.join("mosquitto.log")).expect("log file");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/mosquitto");
        let mut broker = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            if let Some(status) = broker.child.try_wait().expect("wait") {
                panic!("mosquitto exited ({status}): {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path.join("mosquitto.log")).unwrap_or_default()
    }

    /// `mosquitto_pub -u USER -P PASSWORD`: its exit status (5 = not authorised).
    fn publish_as(&self, user: &str, password: &str) -> Option<i32> {
        let port = self.port.to_string();
        run_with_stdin(
            "mosquitto_pub",
            &os(&[
                "-p", &port, "-u", user, "-P", password, "-t", "t", "-m", "x",
            ]),
            None,
        )
        .code()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tern_passwd_files_are_accepted_by_mosquitto() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", f, "alice", "right"]));
    ok(tern_passwd(&["-b", "-H", "sha512", f, "bob", "b0b"]));
    ok(tern_passwd(&["-b", "-I", "101", f, "carol", "c:a r"]));
    // SCRAM lines beside the password line: Mosquitto 2.0 ignores them (with an error
    // message) and still accepts the password.
    ok(tern_passwd(&["-b", "--scram", f, "dave", "d"]));
    ok(tern_passwd_stdin(&[f, "erin"], Some(b"from stdin\n")));
    let text = read(&file);
    assert!(text.starts_with("alice:$7$1000$"), "{text}");
    assert!(text.contains("\nbob:$6$"), "{text}");
    assert!(text.contains("\ncarol:$7$101$"), "{text}");

    let broker = Mosquitto::start(&file);
    for (user, right) in [
        ("alice", "right"),
        ("bob", "b0b"),
        ("carol", "c:a r"),
        ("dave", "d"),
        ("erin", "from stdin"),
    ] {
        assert_eq!(
            broker.publish_as(user, right),
            Some(0),
            "{user}: {}",
            broker.log()
        );
        assert_eq!(
            broker.publish_as(user, "wrong"),
            Some(5),
            "{user} with a wrong password"
        );
    }
    assert_eq!(broker.publish_as("nobody", "right"), Some(5));
}

// ---------------------------------------------------------------------------------------------
// `tern passwd`'s behaviour.

#[tokio::test]
async fn create_writes_a_private_pbkdf2_file_and_overwrites() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", f, "alice", "right"]));
    let text = read(&file);
    let fields: Vec<&str> = text.trim_end().split('$').collect();
    assert_eq!(fields[0], "alice:");
    assert_eq!(fields[1], "7");
    assert_eq!(fields[2], "1000");
    assert_eq!(fields[3].len(), 16, "12-byte salt: {text}");
    assert_eq!(fields[4].len(), 88, "64-byte key: {text}");
    assert_eq!(text.lines().count(), 1);
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    assert!(load(&file).verify("alice", b"right"));

    // -c overwrites: the other users are gone; the permissions stay.
    ok(tern_passwd(&["-b", f, "bob", "x"]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    ok(tern_passwd(&["-c", "-b", f, "carol", "y"]));
    let pw = load(&file);
    assert_eq!(pw.len(), 1);
    assert!(pw.verify("carol", b"y"));
    assert!(!pw.contains("alice"));
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o640);
    assert_eq!(dir_entries(&dir.path), ["pw"], "no temporary file left");
}

#[tokio::test]
async fn without_create_the_file_must_exist() {
    let dir = TempDir::new();
    let file = dir.path.join("missing");
    let out = tern_passwd(&["-b", path_str(&file), "alice", "right"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("cannot read") && out.stderr.contains("missing"),
        "{}",
        out.stderr
    );
    assert!(!file.exists());
    let out = tern_passwd(&["-D", path_str(&file), "alice"]);
    assert_eq!(out.code(), Some(1));
    let out = tern_passwd(&["-U", path_str(&file)]);
    assert_eq!(out.code(), Some(1));
    assert!(!file.exists());
}

#[tokio::test]
async fn updating_a_user_replaces_its_lines_and_keeps_the_others() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", "--scram", f, "alice", "old"]));
    let bob_file = dir.path.join("bob");
    mosquitto_passwd(&["-c", "-b", path_str(&bob_file), "bob", "bob-pw"]);
    let bob_line = read(&bob_file).trim_end().to_owned();
    std::fs::remove_file(&bob_file).expect("remove");
    let text = format!("# the team\n{}\n# bob below\n{bob_line}\n", read(&file));
    std::fs::write(&file, &text).expect("write");

    ok(tern_passwd(&["-b", f, "alice", "new"]));
    let after = read(&file);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.len(), 5, "{after}");
    assert_eq!(lines[0], "# the team");
    assert!(lines[1].starts_with("alice:$7$1000$"), "{after}");
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], "# bob below");
    assert_eq!(lines[4], bob_line);
    let pw = load(&file);
    assert!(pw.verify("alice", b"new"));
    assert!(!pw.verify("alice", b"old"));
    assert!(pw.verify("bob", b"bob-pw"));
    // The old SCRAM lines went with the old password.
    assert!(
        pw.scram_credential("alice", ScramMechanism::Sha256)
            .is_none()
    );
}

#[tokio::test]
async fn delete_removes_every_line_of_the_user() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", "--scram", f, "alice", "a"]));
    ok(tern_passwd(&["-b", f, "bob", "b"]));
    assert_eq!(read(&file).lines().count(), 4);
    ok(tern_passwd(&["-D", f, "alice"]));
    let text = read(&file);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("bob:"));
    assert!(!load(&file).contains("alice"));

    let before = read(&file);
    let out = tern_passwd(&["-D", f, "alice"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("user `alice` is not in"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&file), before, "file untouched");
}

#[tokio::test]
async fn update_hashes_plain_lines_and_keeps_hashed_ones() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    mosquitto_passwd(&["-c", "-b", f, "kept", "k"]);
    let kept = read(&file);
    std::fs::write(
        &file,
        format!("# plain users\nalice:right\n{kept}\nbob:pw:with:colons\n"),
    )
    .expect("write");
    ok(tern_passwd(&["-U", "-H", "sha512", f]));
    let text = read(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# plain users");
    assert!(lines[1].starts_with("alice:$6$"), "{text}");
    assert_eq!(format!("{}\n", lines[2]), kept);
    assert!(lines[4].starts_with("bob:$6$"), "{text}");
    let pw = load(&file);
    assert!(pw.verify("alice", b"right"));
    assert!(pw.verify("kept", b"k"));
    assert!(pw.verify("bob", b"pw:with:colons"));

    // Running it again changes nothing: every line is hashed.
    ok(tern_passwd(&["-U", f]));
    assert_eq!(read(&file), text);

    // A line that cannot be a user is an error naming the line; the file is kept.
    std::fs::write(&file, "alice:right\nbroken line\n").expect("write");
    let out = tern_passwd(&["-U", f]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("line 2: expected `username:password`, found no `:`"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&file), "alice:right\nbroken line\n");
}

#[tokio::test]
async fn hash_and_iteration_flags() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", "-H", "sha512", f, "a", "pa"]));
    ok(tern_passwd(&["-b", "-H", "argon2id", f, "b", "pb"]));
    ok(tern_passwd(&[
        "-b",
        "-H",
        "sha512-pbkdf2",
        "-I",
        "5000",
        f,
        "c",
        "pc",
    ]));
    let text = read(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("a:$6$"), "{text}");
    assert!(
        lines[1].starts_with("b:$argon2id$v=19$m=47104,t=1,p=1$"),
        "{text}"
    );
    assert!(lines[2].starts_with("c:$7$5000$"), "{text}");
    let pw = load(&file);
    for (user, password) in [("a", "pa"), ("b", "pb"), ("c", "pc")] {
        assert!(pw.verify(user, password.as_bytes()), "{user}");
        assert!(!pw.verify(user, b"wrong"), "{user}");
    }

    let before = read(&file);
    for args in [
        &["-b", "-H", "sha512", "-I", "5", f, "d", "x"][..],
        &["-b", "-H", "argon2id", "-I", "5", f, "d", "x"],
    ] {
        let out = tern_passwd(args);
        assert_eq!(out.code(), Some(2), "{args:?}");
        assert!(
            out.stderr.contains("-I applies only to -H sha512-pbkdf2"),
            "{}",
            out.stderr
        );
    }
    for args in [
        &["-b", "-I", "0", f, "d", "x"][..],
        &["-b", "-H", "md5", f, "d", "x"],
    ] {
        assert_eq!(tern_passwd(args).code(), Some(2), "{args:?}");
    }
    assert_eq!(read(&file), before);
}

#[tokio::test]
async fn bad_usernames_and_flags_are_refused() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", f, "alice", "a"]));
    let before = read(&file);
    for (user, message) in [
        ("a:b", "must not contain `:`"),
        ("", "the username is empty"),
        ("a\nb", "control characters"),
        ("#x", "comment"),
    ] {
        let out = tern_passwd(&["-b", f, user, "pw"]);
        assert_eq!(out.code(), Some(1), "{user:?}");
        assert!(out.stderr.contains(message), "{user:?}: {}", out.stderr);
    }
    // Usage errors (clap): exit status 2.
    for args in [
        &["-b", f, "bob"][..],
        &[f, "bob", "pw"],
        &["-c", "-D", f, "alice"],
        &["-U", f, "alice"],
        &["-U", "--scram", f],
        &[f],
    ] {
        let out = tern_passwd(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
    }
    // A username that is not UTF-8.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"al\xffice");
        let out = run_with_stdin(
            env!("CARGO_BIN_EXE_tern"),
            &[
                "passwd".as_ref(),
                "-b".as_ref(),
                f.as_ref(),
                bad,
                "pw".as_ref(),
            ],
            None,
        );
        assert_eq!(out.code(), Some(2), "{}", out.stderr);
        assert!(out.stderr.contains("UTF-8"), "{}", out.stderr);
    }
    assert_eq!(read(&file), before);
}

#[tokio::test]
async fn password_from_standard_input() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd_stdin(
        &["-c", f, "alice"],
        Some(b"s3cret word\r\nignored\n"),
    ));
    ok(tern_passwd_stdin(&[f, "bob"], Some(b"no newline")));
    let pw = load(&file);
    assert!(pw.verify("alice", b"s3cret word"));
    assert!(pw.verify("bob", b"no newline"));
    let out = tern_passwd_stdin(&[f, "carol"], Some(b""));
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("standard input is empty"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert!(!load(&file).contains("carol"));
}

#[tokio::test]
async fn scram_entries_round_trip() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let f = path_str(&file);
    ok(tern_passwd(&["-c", "-b", "--scram", f, "alice", "pencil"]));
    let text = read(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("alice:SCRAM-SHA-256$4096:"), "{text}");
    assert!(lines[2].starts_with("alice:SCRAM-SHA-512$4096:"), "{text}");
    let pw = load(&file);
    assert!(pw.verify("alice", b"pencil"));
    for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let stored = pw
            .scram_credential("alice", mechanism)
            .unwrap_or_else(|| panic!("{mechanism:?}"));
        assert_eq!(stored.iterations, 4096);
        assert_eq!(stored.salt.len(), 16);
        let expected = ScramCredential::derive(mechanism, b"pencil", &stored.salt, 4096);
        assert_eq!(stored, &expected, "{mechanism:?}");
        let other = ScramCredential::derive(mechanism, b"pen", &stored.salt, 4096);
        assert_ne!(stored, &other);
    }
    // Different salts per mechanism and per run.
    let s256 = &pw
        .scram_credential("alice", ScramMechanism::Sha256)
        .expect("256")
        .salt;
    let s512 = &pw
        .scram_credential("alice", ScramMechanism::Sha512)
        .expect("512")
        .salt;
    assert_ne!(s256, s512);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinked_file_is_updated_through_the_link() {
    let dir = TempDir::new();
    let target = dir.path.join("real");
    let link: PathBuf = dir.path.join("link");
    ok(tern_passwd(&["-c", "-b", path_str(&target), "alice", "a"]));
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    ok(tern_passwd(&["-b", path_str(&link), "bob", "b"]));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    let pw = load(&target);
    assert!(pw.verify("alice", b"a"));
    assert!(pw.verify("bob", b"b"));
    assert_eq!(dir_entries(&dir.path), ["link", "real"]);
}

/// `tern passwd FILE USER` on a terminal (a pseudo-terminal made by util-linux's `script`):
/// asks twice, refuses a mismatch.
#[tokio::test]
async fn password_prompt_on_a_terminal_asks_twice() {
    let dir = TempDir::new();
    let file = dir.path.join("pw");
    let command = |user: &str, create: &str| {
        format!(
            "{} passwd {create} {} {user}",
            env!("CARGO_BIN_EXE_tern"),
            path_str(&file)
        )
    };
    let out = run_with_stdin(
        "script",
        &os(&["-q", "-e", "-c", &command("alice", "-c"), "/dev/null"]),
        Some(b"tty secret\ntty secret\n"),
    );
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Password: "), "{}", out.stdout);
    assert!(out.stdout.contains("Reenter password: "), "{}", out.stdout);
    assert!(load(&file).verify("alice", b"tty secret"));

    let before = read(&file);
    let out = run_with_stdin(
        "script",
        &os(&["-q", "-e", "-c", &command("bob", ""), "/dev/null"]),
        Some(b"one\ntwo\n"),
    );
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("passwords do not match"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&file), before);
}
