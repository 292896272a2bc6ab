//! The state directory (default `.homelab-state/` next to the profile):
//! the only randomness in the whole pipeline. Secrets that must not change
//! between builds (SSH host keys, password salts, a generated MicroCloud
//! passphrase) are created here once and reused, so the same profile and
//! state render the same bytes. Layout (documented in docs/PROFILE.md):
//!
//! ```text
//! .homelab-state/                      0700
//!   .gitignore                         `*`: state is never committed
//!   microcloud-passphrase              0600  (only with `generate: true`)
//!   k3s-token                          0600  (only with k3s's generated token)
//!   nodes/<host>/ssh_host_ed25519_key  0600  OpenSSH private key
//!   nodes/<host>/ssh_host_ed25519_key.pub
//!   nodes/<host>/password-salt.<user>  0600  24 hex digits (12 bytes)
//!   nodes/<host>/status-token          0600  64 hex digits (32 bytes; only
//!                                            with `status_url`)
//!   k3s/                               0700  the k3s CAs and the kubeconfig's
//!                                            admin certificate: `k3s::pki`
//!                                            (its own prepare/peek)
//! ```
//!
//! `State::prepare` (build) saves what it makes, keeps the `.pub` the
//! public half of the private key and makes readable secrets private again;
//! `State::peek` (render, `build --dry-run`) writes nothing and makes
//! missing secrets in memory for that run only. Each says what it did in
//! `State::notes`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};
use thiserror::Error;

use crate::digest::hex;
use crate::io::path_error::{PathIoError, at};
use crate::profile::named_file::{self, Kind, NamedFileError};
use crate::profile::password::Salt;
use crate::profile::resolved::{Cluster, Passphrase, UserPassword};

pub const PASSPHRASE_FILE: &str = "microcloud-passphrase";
/// The k3s cluster's generated join secret (`k3s.token`, by default).
pub const K3S_TOKEN_FILE: &str = "k3s-token";
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// The node's bearer token for the status server (`status_url`).
pub const STATUS_TOKEN_FILE: &str = "status-token";
/// A status token's random bytes (hex-encoded in the file).
pub const STATUS_TOKEN_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Read(#[from] NamedFileError),
    #[error("getting random bytes from the operating system: {0}")]
    Entropy(String),
    /// The k3s certificates (`k3s::pki`), boxed: they are the rare case.
    #[error(transparent)]
    Pki(Box<crate::k3s::pki::PkiError>),
}

/// Where random bytes come from: the OS, or a fixed seed in tests.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StateError>;
}

/// A state file or directory readable by others: on the writing pass its
/// mode is set to `private`, else it is only reported. Returns the note to
/// show (`leaked` says what a reader of it could have taken), or `None` when
/// the mode was already private. Shared by the host-key state and the k3s
/// certificates.
pub(crate) fn keep_private(
    path: &Path,
    meta: &fs::Metadata,
    private: u32,
    write: bool,
    leaked: &str,
) -> Result<Option<String>, PathIoError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    if write {
        fs::set_permissions(path, fs::Permissions::from_mode(private))
            .map_err(at("setting the mode of", path))?;
        Ok(Some(format!(
            "{} was open to other users (mode {mode:04o}); set to {private:04o}. \
             If anyone else could read it, {leaked}",
            path.display()
        )))
    } else {
        Ok(Some(format!(
            "{} is open to other users (mode {mode:04o}); `build` sets it to {private:04o}",
            path.display()
        )))
    }
}

/// The operating system's random source.
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StateError> {
        getrandom::fill(buf).map_err(|e| StateError::Entropy(e.to_string()))
    }
}

/// Deterministic bytes (SHA-256 of seed and counter), for golden tests.
#[derive(Debug)]
pub struct SeededEntropy {
    seed: Vec<u8>,
    counter: u64,
}

impl SeededEntropy {
    pub fn new(seed: &[u8]) -> Self {
        Self {
            seed: seed.to_vec(),
            counter: 0,
        }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StateError> {
        for chunk in buf.chunks_mut(32) {
            let block = Sha256::new()
                .chain_update(&self.seed)
                .chain_update(self.counter.to_le_bytes())
                .finalize();
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

/// A node's SSH host key pair in OpenSSH formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----…`
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… root@host`
    pub public_openssh: String,
}

/// Everything rendering needs from the state directory.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub host_keys: BTreeMap<String, HostKey>,
    /// Keyed by (hostname, user name).
    pub salts: BTreeMap<(String, String), Salt>,
    pub passphrase: Option<String>,
    /// Keyed by hostname: each reporting node's status token (64 hex
    /// digits), for nodes with `status_url` only.
    pub status_tokens: BTreeMap<String, String>,
    /// With a `k3s:` section: its token and certificates.
    pub k3s: Option<K3sState>,
    /// What the user should know about the state directory: modes that
    /// were fixed, a `.pub` rewritten, secrets made for this run only.
    pub notes: Vec<String>,
}

/// What a k3s cluster takes from the state directory: the token's secret
/// (the profile's, or the generated `k3s-token`) and, from `k3s::pki`, the
/// full token joiners pin the server CA with, the first server's CA files
/// and the admin kubeconfig.
#[derive(Debug, Clone, Default)]
pub struct K3sState {
    /// The bare secret (what the first server is given).
    pub secret: String,
    /// `K10<sha256 of server-ca.crt>::server:<secret>` (every other node).
    pub full_token: String,
    /// (path under /var/lib/rancher/k3s/server/tls/, mode, PEM text).
    pub tls_files: Vec<(String, u32, String)>,
    /// `out/kubeconfig`: the first server's address and the admin
    /// certificate.
    pub kubeconfig: String,
}

/// The name of the cluster, its context and user in `out/kubeconfig`.
pub const KUBECONFIG_NAME: &str = "homelab";

/// The `.gitignore` written into every state directory we create: state is
/// never committed (a published host key is everybody's host key).
pub const GITIGNORE: &str =
    "# Secrets (SSH host keys, salts, passphrases): never commit them.\n*\n";

impl State {
    pub fn host_key(&self, node: &str) -> Option<&HostKey> {
        self.host_keys.get(node)
    }

    pub fn salt(&self, node: &str, user: &str) -> Option<&Salt> {
        self.salts.get(&(node.to_owned(), user.to_owned()))
    }

    pub fn status_token(&self, node: &str) -> Option<&str> {
        self.status_tokens.get(node).map(String::as_str)
    }

    /// Loads what the cluster needs from `cluster.state_dir`, creating and
    /// saving whatever is missing (what `build` does).
    pub fn prepare(cluster: &Cluster, entropy: &mut dyn Entropy) -> Result<Self, StateError> {
        Self::prepare_at(cluster, entropy, crate::time::now())
    }

    /// [`State::prepare`] with the clock given (seconds since 1970): the
    /// k3s certificates it makes are dated by it (reproducible tests).
    pub fn prepare_at(
        cluster: &Cluster,
        entropy: &mut dyn Entropy,
        now: i64,
    ) -> Result<Self, StateError> {
        Self::gather(cluster, Store::new(&cluster.state_dir, true, entropy), now)
    }

    /// Loads what exists without writing anything: missing secrets are made
    /// in memory for this run only and a note says so (what `render` and
    /// `build --dry-run` do).
    pub fn peek(cluster: &Cluster, entropy: &mut dyn Entropy) -> Result<Self, StateError> {
        Self::gather(
            cluster,
            Store::new(&cluster.state_dir, false, entropy),
            crate::time::now(),
        )
    }

    fn gather(cluster: &Cluster, mut store: Store<'_>, now: i64) -> Result<Self, StateError> {
        store.root()?;
        let mut state = State::default();
        if cluster
            .microcloud
            .as_ref()
            .and_then(|m| m.passphrase.as_ref())
            == Some(&Passphrase::Generated)
        {
            state.passphrase = Some(store.passphrase()?);
        }
        for node in &cluster.nodes {
            let host = node.hostname.as_str();
            let node_dir = store.dir.join("nodes").join(host);
            store.private_dir(&node_dir)?;
            let key = store.host_key(&node_dir, host)?;
            state.host_keys.insert(host.to_owned(), key);
            for user in &node.users {
                if let Some(UserPassword::Plain(_)) = user.password {
                    let path = node_dir.join(format!("password-salt.{}", user.name));
                    let salt = store.salt(&path)?;
                    state
                        .salts
                        .insert((host.to_owned(), user.name.to_string()), salt);
                }
            }
            // Made after everything else of the node, and only for nodes
            // that report: a profile without `status_url` draws the same
            // random bytes as before tokens existed.
            if node.status_url.is_some() {
                let token = store.status_token(&node_dir, host)?;
                state.status_tokens.insert(host.to_owned(), token);
            }
        }
        // Last, so a profile without k3s draws the same random bytes as
        // before k3s existed.
        if let Some(k3s) = &cluster.k3s {
            let secret = match &k3s.token {
                crate::profile::k3s::K3sToken::Known(t) => t.clone(),
                crate::profile::k3s::K3sToken::Generated => store.k3s_token()?,
            };
            state.k3s = Some(store.k3s_pki(cluster, secret, now)?);
        }
        state.notes = store.finish();
        Ok(state)
    }
}

/// Reads `microcloud-passphrase` in `dir`, or creates it (128 random bits
/// as hex), creating the state directory with its `.gitignore` if needed.
pub fn ensure_passphrase(dir: &Path, entropy: &mut dyn Entropy) -> Result<String, StateError> {
    let mut store = Store::new(dir, true, entropy);
    store.root()?;
    store.passphrase()
}

/// Creates the state directory (0700, with its `.gitignore`) if needed, or
/// makes an existing one private again.
pub fn ensure_state_dir(dir: &Path) -> Result<(), StateError> {
    Store::new(dir, true, &mut OsEntropy).root()
}

/// One pass over the state directory: reads what exists, makes what is
/// missing and, when `write` is set, saves it and repairs modes.
struct Store<'a> {
    dir: PathBuf,
    write: bool,
    entropy: &'a mut dyn Entropy,
    notes: Vec<String>,
    /// Secrets made in memory only (read-only pass).
    made_up: Vec<String>,
}

impl<'a> Store<'a> {
    fn new(dir: &Path, write: bool, entropy: &'a mut dyn Entropy) -> Self {
        Self {
            dir: dir.to_owned(),
            write,
            entropy,
            notes: Vec::new(),
            made_up: Vec::new(),
        }
    }

    fn finish(mut self) -> Vec<String> {
        if !self.made_up.is_empty() {
            self.notes.push(format!(
                "{} holds no {} yet: shown here are secrets made for this run \
                 only; `build` creates the ones it keeps",
                self.dir.display(),
                self.made_up.join(", ")
            ));
        }
        self.notes
    }

    /// The state directory itself, 0700, with its `.gitignore`.
    fn root(&mut self) -> Result<(), StateError> {
        let dir = self.dir.clone();
        self.private_dir(&dir)?;
        let ignore = dir.join(".gitignore");
        if self.write && fs::symlink_metadata(&ignore).is_err() {
            write_file(&ignore, GITIGNORE.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// Creates `dir` 0700 (writing pass), or makes an existing one private.
    fn private_dir(&mut self, dir: &Path) -> Result<(), StateError> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => self.keep_private(dir, &meta, 0o700),
            Ok(_) => Err(StateError::Corrupt {
                path: dir.to_owned(),
                reason: "is not a directory".to_owned(),
            }),
            Err(_) if !self.write => Ok(()),
            Err(_) => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(at("creating", dir))?;
                Ok(())
            }
        }
    }

    /// A secret readable by others is made private (writing pass) or
    /// reported (read-only pass).
    fn keep_private(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        private: u32,
    ) -> Result<(), StateError> {
        let leaked = "treat its secrets as leaked: delete it and build again to make new ones";
        if let Some(note) = keep_private(path, meta, private, self.write, leaked)? {
            self.notes.push(note);
        }
        Ok(())
    }

    /// The text of an existing secret file (mode checked), or `None`.
    fn read_secret(&mut self, path: &Path) -> Result<Option<String>, StateError> {
        let Ok(meta) = fs::metadata(path) else {
            if fs::symlink_metadata(path).is_ok() {
                // A dangling symlink: say so rather than overwrite it.
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    reason: "is a symbolic link to nothing".to_owned(),
                });
            }
            return Ok(None);
        };
        let text = named_file::read_text(path, Kind::State)?;
        self.keep_private(path, &meta, 0o600)?;
        Ok(Some(text))
    }

    /// Saves a new secret (writing pass) or notes it was made up.
    fn save_secret(&mut self, path: &Path, bytes: &[u8], what: &str) -> Result<(), StateError> {
        if self.write {
            write_file(path, bytes, 0o600)
        } else {
            self.made_up.push(what.to_owned());
            Ok(())
        }
    }

    fn passphrase(&mut self) -> Result<String, StateError> {
        self.secret_hex(PASSPHRASE_FILE, "MicroCloud passphrase")
    }

    fn k3s_token(&mut self) -> Result<String, StateError> {
        self.secret_hex(K3S_TOKEN_FILE, "k3s token")
    }

    /// The k3s certificates under `k3s/`, made by `k3s::pki` (saved on a
    /// writing pass), and what the nodes and the kubeconfig take of them.
    fn k3s_pki(
        &mut self,
        cluster: &Cluster,
        secret: String,
        now: i64,
    ) -> Result<K3sState, StateError> {
        use crate::k3s::pki::Pki;
        let pki = if self.write {
            Pki::prepare_at(&self.dir, &mut *self.entropy, now)
        } else {
            Pki::peek_at(&self.dir, &mut *self.entropy, now)
        }
        .map_err(|e| StateError::Pki(Box::new(e)))?;
        self.notes.extend(pki.notes.iter().cloned());
        let first = cluster
            .k3s
            .as_ref()
            .and_then(|k| k.servers.first())
            .and_then(|h| cluster.node(h.as_str()))
            .map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| {
                n.network.address.addr()
            });
        Ok(K3sState {
            full_token: pki.full_token(&secret),
            secret,
            tls_files: pki
                .server_tls_files()
                .into_iter()
                // PEM is ASCII text.
                .map(|(path, mode, bytes)| {
                    (path, mode, String::from_utf8_lossy(&bytes).into_owned())
                })
                .collect(),
            kubeconfig: pki.kubeconfig(KUBECONFIG_NAME, first),
        })
    }

    /// Reads the secret file `name`, or creates it (128 random bits as
    /// hex); `what` names it in notes.
    fn secret_hex(&mut self, name: &str, what: &str) -> Result<String, StateError> {
        let path = self.dir.join(name);
        if let Some(text) = self.read_secret(&path)? {
            let text = text.trim().to_owned();
            if text.is_empty() {
                return Err(StateError::Corrupt {
                    path,
                    reason: format!("the {what} file is empty"),
                });
            }
            return Ok(text);
        }
        let mut bytes = [0u8; 16];
        self.entropy.fill(&mut bytes)?;
        let phrase = hex(&bytes);
        self.save_secret(&path, format!("{phrase}\n").as_bytes(), what)?;
        Ok(phrase)
    }

    fn host_key(&mut self, node_dir: &Path, host: &str) -> Result<HostKey, StateError> {
        let path = node_dir.join(HOST_KEY_FILE);
        let key = match self.read_secret(&path)? {
            Some(text) => parse_host_key(&path, &text)?,
            None => {
                let mut seed = [0u8; 32];
                self.entropy.fill(&mut seed)?;
                let pair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
                let key =
                    PrivateKey::new(pair, format!("root@{host}")).map_err(|e| corrupt(&path, e))?;
                let text = key
                    .to_openssh(LineEnding::LF)
                    .map_err(|e| corrupt(&path, e))?;
                self.save_secret(&path, text.as_bytes(), &format!("SSH host key for {host}"))?;
                key
            }
        };
        let private_openssh = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| corrupt(&path, e))?
            .to_string();
        let public_openssh = key
            .public_key()
            .to_openssh()
            .map_err(|e| corrupt(&path, e))?;
        self.public_key_file(node_dir, &public_openssh)?;
        Ok(HostKey {
            private_openssh,
            public_openssh,
        })
    }

    /// Keeps `ssh_host_ed25519_key.pub` the public half of the private key
    /// beside it: written when missing, rewritten (with a note) when it is
    /// another key's, as after the private key was deleted and remade.
    fn public_key_file(&mut self, node_dir: &Path, public: &str) -> Result<(), StateError> {
        if !self.write {
            return Ok(());
        }
        let path = node_dir.join(format!("{HOST_KEY_FILE}.pub"));
        let line = format!("{public}\n");
        let existing = match fs::metadata(&path) {
            Ok(_) => Some(named_file::read_text(&path, Kind::State)?),
            Err(_) => None,
        };
        match existing {
            Some(text) if key_part(&text) == key_part(public) => return Ok(()),
            Some(_) => self.notes.push(format!(
                "{} held another key than the private key beside it; rewritten \
                 from the private key",
                path.display()
            )),
            None => {}
        }
        write_file(&path, line.as_bytes(), 0o644)
    }

    fn status_token(&mut self, node_dir: &Path, host: &str) -> Result<String, StateError> {
        let path = node_dir.join(STATUS_TOKEN_FILE);
        if let Some(text) = self.read_secret(&path)? {
            return parse_status_token(&path, &text);
        }
        let mut bytes = [0u8; STATUS_TOKEN_BYTES];
        self.entropy.fill(&mut bytes)?;
        let token = hex(&bytes);
        self.save_secret(
            &path,
            format!("{token}\n").as_bytes(),
            &format!("status token for {host}"),
        )?;
        Ok(token)
    }

    fn salt(&mut self, path: &Path) -> Result<Salt, StateError> {
        if let Some(text) = self.read_secret(path)? {
            return unhex(text.trim()).ok_or_else(|| StateError::Corrupt {
                path: path.to_owned(),
                reason: "a salt file holds 24 hexadecimal digits".to_owned(),
            });
        }
        let mut salt = Salt::default();
        self.entropy.fill(&mut salt)?;
        let what = format!(
            "password salt {}",
            path.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        );
        self.save_secret(path, format!("{}\n", hex(&salt)).as_bytes(), &what)?;
        Ok(salt)
    }
}

/// Reads the status token of node `host` from the state directory `dir`
/// without writing anything: `None` when the node has none (it was never
/// built with `status_url`). What `serve` uses to check reports.
pub fn read_status_token(dir: &Path, host: &str) -> Result<Option<String>, StateError> {
    let mut entropy = OsEntropy;
    let mut store = Store::new(dir, false, &mut entropy);
    let path = dir.join("nodes").join(host).join(STATUS_TOKEN_FILE);
    match store.read_secret(&path)? {
        Some(text) => parse_status_token(&path, &text).map(Some),
        None => Ok(None),
    }
}

fn parse_status_token(path: &Path, text: &str) -> Result<String, StateError> {
    let token = text.trim();
    if token.len() != 2 * STATUS_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "a status token file holds {} hexadecimal digits; delete it and \
                 build again to make a new one",
                2 * STATUS_TOKEN_BYTES
            ),
        });
    }
    Ok(token.to_ascii_lowercase())
}

/// The type and base64 of a public key line (the comment may differ).
fn key_part(line: &str) -> Vec<&str> {
    line.split_whitespace().take(2).collect()
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Parses a stored host key; the messages say what the file should be
/// rather than what the PEM decoder tripped on.
fn parse_host_key(path: &Path, text: &str) -> Result<PrivateKey, StateError> {
    let fix = "delete it to make a new one (the node's host key then changes)";
    if !text
        .trim_start()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    {
        let what = if text.trim_start().starts_with("ssh-") {
            "it holds a public key"
        } else {
            "it does not start with -----BEGIN OPENSSH PRIVATE KEY-----"
        };
        return Err(corrupt(
            path,
            format!("is not an OpenSSH private key ({what}); {fix}"),
        ));
    }
    let key = PrivateKey::from_openssh(text).map_err(|e| {
        corrupt(
            path,
            format!("is a damaged OpenSSH private key ({e}); {fix}"),
        )
    })?;
    if key.is_encrypted() {
        return Err(corrupt(
            path,
            "is encrypted with a passphrase, which sshd cannot use for a host key; \
             decrypt it with `ssh-keygen -p` or delete it",
        ));
    }
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(corrupt(
            path,
            format!(
                "is an {} key; this file holds an ed25519 key; {fix}",
                key.algorithm()
            ),
        ));
    }
    Ok(key)
}

/// Writes a file through a temporary name (created with `mode`), so a
/// crash never leaves a half-written key that a later build would trust.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at("creating", &tmp))?;
    f.write_all(bytes).map_err(at("writing", &tmp))?;
    f.sync_all().map_err(at("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(at("renaming", &tmp))?;
    Ok(())
}

fn unhex(text: &str) -> Option<Salt> {
    let mut out = Salt::default();
    if text.len() != out.len() * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_is_repeatable() {
        let (mut a, mut b) = (SeededEntropy::new(b"x"), SeededEntropy::new(b"x"));
        let (mut x, mut y) = ([0u8; 40], [0u8; 40]);
        a.fill(&mut x).unwrap();
        b.fill(&mut y).unwrap();
        assert_eq!(x, y);
        assert_ne!(x[..8], x[32..]);
    }

    #[test]
    fn salts_round_trip_as_hex() {
        let salt: Salt = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfe, 0xff];
        assert_eq!(unhex(&hex(&salt)), Some(salt));
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn a_new_state_dir_gets_a_gitignore_and_peeking_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut entropy = SeededEntropy::new(b"p");
        let mut store = Store::new(&state, false, &mut entropy);
        store.root().unwrap();
        let phrase = store.passphrase().unwrap();
        assert_eq!(phrase.len(), 32);
        let notes = store.finish();
        assert!(!state.exists(), "peeking created {}", state.display());
        assert!(notes[0].contains("MicroCloud passphrase"), "{notes:?}");
        assert_eq!(
            ensure_passphrase(&state, &mut SeededEntropy::new(b"p")).unwrap(),
            phrase
        );
        assert_eq!(
            fs::read_to_string(state.join(".gitignore")).unwrap(),
            GITIGNORE
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(PASSPHRASE_FILE)), 0o600);
    }

    #[test]
    fn readable_secrets_are_reported_when_peeking_and_fixed_when_writing() {
        let dir = tempfile::tempdir().unwrap();
        ensure_passphrase(dir.path(), &mut SeededEntropy::new(b"p")).unwrap();
        let file = dir.path().join(PASSPHRASE_FILE);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let mut entropy = SeededEntropy::new(b"p");
        let mut peek = Store::new(dir.path(), false, &mut entropy);
        peek.passphrase().unwrap();
        assert!(peek.finish()[0].contains("`build` sets it to 0600"));
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let mut entropy = SeededEntropy::new(b"p");
        let mut write = Store::new(dir.path(), true, &mut entropy);
        write.passphrase().unwrap();
        assert!(write.finish()[0].contains("(mode 0640); set to 0600"));
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn stored_keys_of_the_wrong_kind_are_named() {
        let p = Path::new("k");
        let why = |text: &str| parse_host_key(p, text).unwrap_err().to_string();
        let public =
            why("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs");
        assert!(
            public.contains("not an OpenSSH private key (it holds a public key)"),
            "{public}"
        );
        assert!(!public.contains("NUL"), "{public}");
        let damaged =
            why("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n");
        assert!(damaged.contains("damaged OpenSSH private key"), "{damaged}");
    }

    #[test]
    fn status_tokens_are_created_once_private_and_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let node_dir = dir.path().join("nodes").join("pi1");
        fs::create_dir_all(&node_dir).unwrap();
        let first = Store::new(dir.path(), true, &mut SeededEntropy::new(b"a"))
            .status_token(&node_dir, "pi1")
            .unwrap();
        let again = Store::new(dir.path(), true, &mut SeededEntropy::new(b"other"))
            .status_token(&node_dir, "pi1")
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.len(), 64);
        let file = node_dir.join(STATUS_TOKEN_FILE);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            read_status_token(dir.path(), "pi1").unwrap().as_deref(),
            Some(first.as_str())
        );
        assert_eq!(read_status_token(dir.path(), "pi2").unwrap(), None);
        fs::write(&file, "not a token\n").unwrap();
        let e = read_status_token(dir.path(), "pi1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("status-token") && e.contains("64 hexadecimal digits"),
            "{e}"
        );
    }

    #[test]
    fn host_keys_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::new(dir.path(), true, &mut SeededEntropy::new(b"a"))
            .host_key(dir.path(), "pi1")
            .unwrap();
        let again = Store::new(dir.path(), true, &mut SeededEntropy::new(b"other"))
            .host_key(dir.path(), "pi1")
            .unwrap();
        assert_eq!(first, again);
        assert!(first.public_openssh.starts_with("ssh-ed25519 "));
        assert!(first.public_openssh.ends_with(" root@pi1"));
    }
}
