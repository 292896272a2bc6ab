//! Running one command on a node with the system's `ssh` client: strict
//! host-key checking against `build`'s `known_hosts` only, no prompts, a
//! connect timeout and a deadline for the whole run, and output read up
//! to a bound. Arguments go to `ssh` as a vector (no local shell); the
//! remote command is [`super::remote::command`], a fixed string.

use std::ffi::OsString;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most bytes of standard output kept; more is read and dropped.
pub const MAX_STDOUT: usize = 256 << 10;
/// The most bytes of standard error kept.
pub const MAX_STDERR: usize = 16 << 10;

/// How to reach the nodes.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The `ssh` program (`ssh` on `PATH` unless told otherwise).
    pub program: PathBuf,
    /// `build`'s `OUT/known_hosts`: the only host keys trusted.
    pub known_hosts: PathBuf,
    /// A private key to offer (and only it), else ssh's own choice.
    pub identity: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The longest a whole run may take; ssh is killed after it.
    pub deadline: Duration,
}

/// Why a run gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshFailure {
    /// `ssh` could not be started.
    Spawn(String),
    /// The deadline passed; ssh was killed.
    Timeout(Duration),
    /// ssh itself failed (exit 255): its last words, cleaned.
    Ssh(String),
}

/// What a run printed (bounded) and how it ended.
#[derive(Debug, Clone)]
pub struct SshOutput {
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A path as an ssh option value: double-quoted (ssh splits `-o` values at
/// spaces otherwise) with `%` doubled (ssh expands `%d`, `%u` … in file
/// options). Paths ssh cannot take so are refused by name.
pub fn option_path(path: &Path) -> Result<String, String> {
    let Some(s) = path.to_str() else {
        return Err(format!(
            "{}: not UTF-8, which ssh cannot take",
            path.display()
        ));
    };
    if s.contains(['"', '\n', '\r']) {
        return Err(format!(
            "{s:?}: a path with a double quote or a line break, which ssh cannot take"
        ));
    }
    Ok(format!("\"{}\"", s.replace('%', "%%")))
}

impl SshSettings {
    /// The arguments of `ssh` for `command` on `address`.
    pub fn args(
        &self,
        user: &str,
        address: Ipv4Addr,
        command: &str,
    ) -> Result<Vec<OsString>, String> {
        let secs = self.connect_timeout.as_secs().max(1);
        let mut opts = vec![
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            format!("UserKnownHostsFile={}", option_path(&self.known_hosts)?),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            // The file is build's: ssh must not add to it or rewrite it.
            "UpdateHostKeys=no".to_owned(),
            "CheckHostIP=no".to_owned(),
            format!("ConnectTimeout={secs}"),
            "ConnectionAttempts=1".to_owned(),
            "ServerAliveInterval=5".to_owned(),
            "ServerAliveCountMax=2".to_owned(),
            "ControlMaster=no".to_owned(),
            "ControlPath=none".to_owned(),
            "ForwardAgent=no".to_owned(),
            "ForwardX11=no".to_owned(),
            "ClearAllForwardings=yes".to_owned(),
            "RequestTTY=no".to_owned(),
            "LogLevel=ERROR".to_owned(),
        ];
        if let Some(id) = &self.identity {
            opts.push(format!("IdentityFile={}", option_path(id)?));
            opts.push("IdentitiesOnly=yes".to_owned());
        }
        let mut args: Vec<OsString> = vec!["-n".into(), "-T".into()];
        for o in opts {
            args.push("-o".into());
            args.push(o.into());
        }
        args.push("-l".into());
        args.push(user.into());
        args.push("--".into());
        args.push(address.to_string().into());
        args.push(command.into());
        Ok(args)
    }

    /// Runs `command` on `address` as `user`: its output when ssh got as
    /// far as running it, else why not.
    pub fn run(
        &self,
        user: &str,
        address: Ipv4Addr,
        command: &str,
    ) -> Result<SshOutput, SshFailure> {
        let args = self
            .args(user, address, command)
            .map_err(SshFailure::Spawn)?;
        let mut child = Command::new(&self.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                SshFailure::Spawn(if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "{} not found: install an OpenSSH client (Debian/Ubuntu: openssh-client)",
                        self.program.display()
                    )
                } else {
                    format!("starting {}: {e}", self.program.display())
                })
            })?;
        let out = bounded_reader(child.stdout.take(), MAX_STDOUT);
        let err = bounded_reader(child.stderr.take(), MAX_STDERR);
        let status = wait_until(&mut child, Instant::now() + self.deadline);
        // The pipes close when ssh is gone; a process it left holding them
        // (a ProxyCommand) does not hold us past a short grace.
        let grace = Duration::from_secs(2);
        let stdout = out.recv_timeout(grace).unwrap_or_default();
        let stderr = err.recv_timeout(grace).unwrap_or_default();
        let Some(status) = status else {
            return Err(SshFailure::Timeout(self.deadline));
        };
        let exit = status.code();
        if exit == Some(255) {
            return Err(SshFailure::Ssh(last_words(&stderr)));
        }
        Ok(SshOutput {
            exit,
            stdout,
            stderr,
        })
    }
}

/// Reads a pipe on a thread: the first `limit` bytes are kept (as text),
/// the rest read and dropped so the writer never blocks on a full pipe.
fn bounded_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    limit: usize,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = limit.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
    });
    rx
}

/// Waits for the child until `deadline`; kills it then (None).
fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// ssh's reason for failing, in one line: the host-key refusal named as
/// such, else its last non-empty line of stderr (`ssh: connect to host
/// … port 22: Connection timed out`), cleaned of control characters.
fn last_words(stderr: &str) -> String {
    if stderr.contains("Host key verification failed")
        || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    {
        let what = if stderr.contains("has changed") || stderr.contains("HAS CHANGED") {
            "the node's host key is not the one in known_hosts"
        } else {
            "known_hosts has no host key for this address"
        };
        return format!("{what}: host key verification failed (strict checking)");
    }
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("failed without a message");
    let last = super::remote::clean(last);
    if last.starts_with("ssh:") {
        last
    } else {
        format!("ssh: {last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SshSettings {
        SshSettings {
            program: "ssh".into(),
            known_hosts: "/tmp/my out/known_hosts%d".into(),
            identity: Some("/k/id".into()),
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
        }
    }

    #[test]
    fn arguments_are_strict_and_paths_quoted() {
        let args: Vec<String> = settings()
            .args("alice", Ipv4Addr::new(10, 0, 0, 11), "true")
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        for want in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=\"/tmp/my out/known_hosts%%d\"",
            "GlobalKnownHostsFile=/dev/null",
            "ConnectTimeout=5",
            "IdentityFile=\"/k/id\"",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        }
        assert_eq!(
            &args[args.len() - 5..],
            ["-l", "alice", "--", "10.0.0.11", "true"]
        );
    }

    #[test]
    fn a_path_with_a_double_quote_is_refused_by_name() {
        let e = option_path(Path::new("/a\"b")).unwrap_err();
        assert!(e.contains("double quote"), "{e}");
    }

    #[test]
    fn ssh_failures_are_named() {
        let changed = "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                       Host key for 10.0.0.11 has changed and you have requested strict checking.\n\
                       Host key verification failed.\n";
        assert!(last_words(changed).starts_with("the node's host key is not the one"));
        let unknown = "No ED25519 host key is known for 10.0.0.11 and you have requested \
                       strict checking.\nHost key verification failed.\n";
        assert!(last_words(unknown).starts_with("known_hosts has no host key"));
        assert_eq!(
            last_words("ssh: connect to host 10.0.0.13 port 22: Connection timed out\n\n"),
            "ssh: connect to host 10.0.0.13 port 22: Connection timed out"
        );
    }
}
