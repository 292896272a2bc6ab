//! The state directory (default `.homelab-state/` next to the profile):
//! the only randomness in the whole pipeline. Secrets that must not change
//! between builds (SSH host keys, password salts, a generated MicroCloud
//! passphrase) are created here once and reused, so the same profile and
//! state render the same bytes. Layout (documented in docs/PROFILE.md):
//!
//! ```text
//! .homelab-state/                      0700
//!   microcloud-passphrase              0600  (only with `generate: true`)
//!   nodes/<host>/ssh_host_ed25519_key  0600  OpenSSH private key
//!   nodes/<host>/ssh_host_ed25519_key.pub
//!   nodes/<host>/password-salt.<user>  0600  24 hex digits (12 bytes)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};
use thiserror::Error;

use crate::profile::password::Salt;
use crate::profile::path_io::{PathIoError, at};
use crate::profile::resolved::{Cluster, Passphrase, UserPassword};

pub const PASSPHRASE_FILE: &str = "microcloud-passphrase";
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("getting random bytes from the operating system: {0}")]
    Entropy(String),
}

/// Where random bytes come from: the OS, or a fixed seed in tests.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StateError>;
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
}

impl State {
    pub fn host_key(&self, node: &str) -> Option<&HostKey> {
        self.host_keys.get(node)
    }

    pub fn salt(&self, node: &str, user: &str) -> Option<&Salt> {
        self.salts.get(&(node.to_owned(), user.to_owned()))
    }

    /// Loads what the cluster needs from `cluster.state_dir`, creating and
    /// saving whatever is missing.
    pub fn prepare(cluster: &Cluster, entropy: &mut dyn Entropy) -> Result<Self, StateError> {
        let dir = &cluster.state_dir;
        make_private_dir(dir)?;
        let mut state = State::default();
        if cluster
            .microcloud
            .as_ref()
            .and_then(|m| m.passphrase.as_ref())
            == Some(&Passphrase::Generated)
        {
            state.passphrase = Some(ensure_passphrase(dir, entropy)?);
        }
        for node in &cluster.nodes {
            let host = node.hostname.as_str();
            let node_dir = dir.join("nodes").join(host);
            make_private_dir(&node_dir)?;
            let key = ensure_host_key(&node_dir, host, entropy)?;
            state.host_keys.insert(host.to_owned(), key);
            for user in &node.users {
                if let Some(UserPassword::Plain(_)) = user.password {
                    let path = node_dir.join(format!("password-salt.{}", user.name));
                    let salt = ensure_salt(&path, entropy)?;
                    state
                        .salts
                        .insert((host.to_owned(), user.name.to_string()), salt);
                }
            }
        }
        Ok(state)
    }
}

/// Reads `microcloud-passphrase`, or creates it (128 random bits as hex).
pub fn ensure_passphrase(dir: &Path, entropy: &mut dyn Entropy) -> Result<String, StateError> {
    make_private_dir(dir)?;
    let path = dir.join(PASSPHRASE_FILE);
    if path.exists() {
        let text = fs::read_to_string(&path).map_err(at("reading", &path))?;
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(StateError::Corrupt {
                path,
                reason: "the passphrase file is empty".to_owned(),
            });
        }
        return Ok(text);
    }
    let mut bytes = [0u8; 16];
    entropy.fill(&mut bytes)?;
    let phrase = hex(&bytes);
    write_private(&path, format!("{phrase}\n").as_bytes())?;
    Ok(phrase)
}

fn ensure_host_key(
    node_dir: &Path,
    host: &str,
    entropy: &mut dyn Entropy,
) -> Result<HostKey, StateError> {
    let path = node_dir.join(HOST_KEY_FILE);
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.clone(),
        reason,
    };
    let key = if path.exists() {
        let text = fs::read_to_string(&path).map_err(at("reading", &path))?;
        PrivateKey::from_openssh(&text).map_err(|e| corrupt(e.to_string()))?
    } else {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed)?;
        let pair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
        let key =
            PrivateKey::new(pair, format!("root@{host}")).map_err(|e| corrupt(e.to_string()))?;
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| corrupt(e.to_string()))?;
        write_private(&path, text.as_bytes())?;
        key
    };
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| corrupt(e.to_string()))?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| corrupt(e.to_string()))?;
    let pub_path = node_dir.join(format!("{HOST_KEY_FILE}.pub"));
    if !pub_path.exists() {
        fs::write(&pub_path, format!("{public_openssh}\n")).map_err(at("writing", &pub_path))?;
    }
    Ok(HostKey {
        private_openssh,
        public_openssh,
    })
}

fn ensure_salt(path: &Path, entropy: &mut dyn Entropy) -> Result<Salt, StateError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(at("reading", path))?;
        return unhex(text.trim()).ok_or_else(|| StateError::Corrupt {
            path: path.to_owned(),
            reason: "a salt file holds 24 hexadecimal digits".to_owned(),
        });
    }
    let mut salt = Salt::default();
    entropy.fill(&mut salt)?;
    write_private(path, format!("{}\n", hex(&salt)).as_bytes())?;
    Ok(salt)
}

fn make_private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at("creating", dir))?;
    Ok(())
}

/// Writes a 0600 file through a temporary name, so a crash never leaves a
/// half-written key that a later build would trust.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(at("creating", &tmp))?;
    f.write_all(bytes).map_err(at("writing", &tmp))?;
    f.sync_all().map_err(at("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(at("renaming", &tmp))?;
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn host_keys_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_host_key(dir.path(), "pi1", &mut SeededEntropy::new(b"a")).unwrap();
        let again = ensure_host_key(dir.path(), "pi1", &mut SeededEntropy::new(b"other")).unwrap();
        assert_eq!(first, again);
        assert!(first.public_openssh.starts_with("ssh-ed25519 "));
        assert!(first.public_openssh.ends_with(" root@pi1"));
    }
}
