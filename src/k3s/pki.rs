//! The k3s cluster's certificate authorities, made at build time and kept
//! in the state directory, and `out/kubeconfig`'s admin client certificate.
//!
//! # What k3s expects (k3s-io/k3s at 09ac65a68f11d6cf0a9b17fb8d53e61ca72791a9)
//!
//! - `pkg/daemons/control/deps/deps.go`, `createSigningCertKey`: a CA whose
//!   `.crt` and `.key` both exist under `/var/lib/rancher/k3s/server/tls/` is
//!   used as it is; only a missing pair is generated (a self-signed
//!   `<prefix>-ca@<unix time>` certificate over a P-256 key, 10 years). The
//!   five CAs are `server-ca`, `client-ca`, `request-header-ca`,
//!   `etcd/server-ca` and `etcd/peer-ca` (`CreateRuntimeCertFiles`); every
//!   leaf certificate (apiserver serving, kubelet, controller, etcd) is then
//!   signed by them on the node. `contrib/util/generate-custom-ca-certs.sh`
//!   (same commit) writes exactly these ten files, and docs.k3s.io ("k3s
//!   certificate", "Using Custom CA Certificates") says they must be present
//!   before k3s first starts and not change afterwards.
//! - `service.key` is not needed: `genServiceAccount` makes it when missing
//!   (rancher/dynamiclistener `cert/cert.go` at 445046c72c919849593d2388fb36954768b68c86,
//!   `NewPrivateKey`: RSA 2048). The script passes an
//!   existing one through only so that old service-account tokens stay valid
//!   across a CA rotation; kube-apiserver accepts RSA and ECDSA keys for it.
//!   We leave it to k3s.
//! - Only the first server (`cluster-init`) gets the files. Joining servers
//!   fetch the CAs from it with the token (`/v1-k3s/server-bootstrap`, the
//!   bootstrap data kept in the datastore) and agents need no CA key at all;
//!   writing keys to every node would only spread them.
//! - `pkg/clientaccess/token.go` (commit 0566d4571ef8e44fdc87aee1ddf42667256f5e84),
//!   `hashCA`: for a bundle of one certificate the token's CA hash is the
//!   SHA-256 of the literal bytes of the file `/cacerts` serves, which is
//!   `server-ca.crt` read from disk (`pkg/server/router.go`, `cacerts`). So
//!   [`Pki::full_token`] is `K10<hex sha256 of server-ca.crt>::server:<secret>`,
//!   and joining nodes that use it refuse a server with another CA.
//!
//! # Our certificates
//!
//! CAs as k3s makes them (P-256, CN `<prefix>-ca@<unix time>`, 10 years,
//! basicConstraints CA:TRUE and keyUsage keyCertSign + digitalSignature,
//! both critical), and an admin client certificate signed by the client CA:
//! CN `homelab-image-admin` (so the API server's audit log tells it from
//! k3s's own `system:admin`), O `system:masters` (cluster-admin through the
//! default RBAC binding), extKeyUsage clientAuth, valid a year (as k3s's own
//! client certificates) and never past the client CA; `build` renews it from
//! the same key when fewer than 30 days remain. Every certificate's
//! notBefore is a day before it was made: a board without a real-time clock
//! may boot with its clock behind the build machine's.
//!
//! # Reproducibility
//!
//! The PEM files are kept in the state directory and used byte for byte, so
//! the same state directory gives the same files and kubeconfig. Making them
//! is deterministic too (keys and serials from the state directory's
//! `Entropy`, dates from the clock given, RFC 6979 signatures).
//!
//! # State layout (under the state directory, beside `profile::state`'s)
//!
//! ```text
//! k3s/                          0700
//!   tls/                        0700  the same names as on the first server
//!     server-ca.crt             0644
//!     server-ca.key             0600  (and the same for client-ca,
//!     ...                              request-header-ca)
//!     etcd/                     0700
//!       server-ca.crt/.key, peer-ca.crt/.key
//!   admin.crt                   0644  the kubeconfig's client certificate
//!   admin.key                   0600
//! ```
//!
//! A CA is never remade over a half-present or damaged pair: the running
//! cluster would stop trusting its own nodes. Such state is refused, naming
//! the file.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p256::SecretKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::digest::hex;
use crate::io::path_error::{PathIoError, at};
use crate::k3s::cert::{self, Issued, Request, Role, SERIAL_BYTES};
use crate::profile::named_file::{self, Kind, NamedFileError};
use crate::profile::state::{Entropy, StateError, ensure_state_dir};
use crate::render::yaml::{base64, to_yaml};

/// The k3s directory inside the state directory.
pub const STATE_SUBDIR: &str = "k3s";
/// The admin client certificate's common name.
pub const ADMIN_CN: &str = "homelab-image-admin";
/// The group that makes the admin a cluster admin.
pub const ADMIN_GROUP: &str = "system:masters";
const DAY: i64 = 86_400;
/// A CA's lifetime, as k3s's own (3650 days).
pub const CA_DAYS: i64 = 3650;
/// The admin certificate's lifetime, as k3s's own client certificates.
pub const ADMIN_DAYS: i64 = 365;
/// `build` renews the admin certificate when fewer days than this remain.
pub const RENEW_DAYS: i64 = 30;
/// The port of the Kubernetes API on a k3s server.
pub const API_PORT: u16 = 6443;

/// The five CAs: the path under `tls/` without `.crt`/`.key`, and the
/// prefix of the common name (k3s's own names).
const CAS: [(&str, &str); 5] = [
    ("server-ca", "k3s-server"),
    ("client-ca", "k3s-client"),
    ("request-header-ca", "k3s-request-header"),
    ("etcd/server-ca", "etcd-server"),
    ("etcd/peer-ca", "etcd-peer"),
];
const CLIENT_CA: usize = 1;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error(transparent)]
    Read(#[from] NamedFileError),
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("making {what}: {reason}")]
    Make { what: String, reason: String },
}

/// A private key and its certificate, as the state directory holds them.
struct Pair {
    key: SecretKey,
    key_pem: String,
    cert: Issued,
}

/// The cluster's CAs and the admin certificate.
pub struct Pki {
    cas: Vec<Pair>,
    admin: Pair,
    /// What the user should know: files made for this run only, modes
    /// fixed, the admin certificate renewed.
    pub notes: Vec<String>,
}

impl fmt::Debug for Pki {
    // Never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("server_ca", &self.cas[0].cert.subject().to_string())
            .field("admin_not_after", &self.admin.cert.not_after())
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CAs and the admin certificate from `state_dir/k3s/`,
    /// making and saving whatever is missing and renewing an admin
    /// certificate near its end (what `build` does).
    pub fn prepare(state_dir: &Path, entropy: &mut dyn Entropy) -> Result<Pki, PkiError> {
        Self::prepare_at(state_dir, entropy, crate::time::now())
    }

    /// Loads what exists without writing anything; what is missing is made
    /// in memory for this run only and a note says so (`render`,
    /// `build --dry-run`).
    pub fn peek(state_dir: &Path, entropy: &mut dyn Entropy) -> Result<Pki, PkiError> {
        Self::peek_at(state_dir, entropy, crate::time::now())
    }

    /// [`Pki::prepare`] with the clock given (seconds since 1970), for
    /// reproducible tests.
    pub fn prepare_at(
        state_dir: &Path,
        entropy: &mut dyn Entropy,
        now: i64,
    ) -> Result<Pki, PkiError> {
        ensure_state_dir(state_dir)?;
        Store::new(state_dir, true, entropy, now).gather()
    }

    /// [`Pki::peek`] with the clock given.
    pub fn peek_at(state_dir: &Path, entropy: &mut dyn Entropy, now: i64) -> Result<Pki, PkiError> {
        Store::new(state_dir, false, entropy, now).gather()
    }

    /// (path under /var/lib/rancher/k3s/server/tls/, mode, bytes) for the
    /// first server's image: each CA's `.crt` (0644) and `.key` (0600).
    pub fn server_tls_files(&self) -> Vec<(String, u32, Vec<u8>)> {
        let mut files = Vec::with_capacity(2 * CAS.len());
        for ((name, _), pair) in CAS.iter().zip(&self.cas) {
            files.push((
                format!("{name}.crt"),
                0o644,
                pair.cert.pem.clone().into_bytes(),
            ));
            files.push((
                format!("{name}.key"),
                0o600,
                pair.key_pem.clone().into_bytes(),
            ));
        }
        files
    }

    /// The kubeconfig: cluster `name`, server https://ADDR:6443, CA = server
    /// CA, user = admin cert+key.
    pub fn kubeconfig(&self, name: &str, server: Ipv4Addr) -> String {
        let user = format!("{name}-admin");
        let config = KubeConfig {
            api_version: "v1",
            kind: "Config",
            clusters: vec![Named {
                name,
                cluster: Some(ClusterEntry {
                    server: format!("https://{server}:{API_PORT}"),
                    certificate_authority_data: base64(self.cas[0].cert.pem.as_bytes()),
                }),
                user: None,
                context: None,
            }],
            users: vec![Named {
                name: &user,
                cluster: None,
                user: Some(UserEntry {
                    client_certificate_data: base64(self.admin.cert.pem.as_bytes()),
                    client_key_data: base64(self.admin.key_pem.as_bytes()),
                }),
                context: None,
            }],
            contexts: vec![Named {
                name,
                cluster: None,
                user: None,
                context: Some(ContextEntry {
                    cluster: name,
                    user: &user,
                }),
            }],
            current_context: name,
        };
        // Only strings, sequences and maps with string keys: nothing
        // serde-saphyr cannot serialise, and it writes to a String.
        to_yaml("kubeconfig", &config).expect("a kubeconfig of plain strings serialises")
    }

    /// What agents and joining servers put in `token` to pin the server CA:
    /// `K10<sha256 of server-ca.crt>::server:<secret>` (see the module doc).
    /// The first server (`cluster-init`) is given the bare secret, as
    /// upstream's installer does; whether k3s also checks a full token's
    /// hash there was not verified.
    pub fn full_token(&self, secret: &str) -> String {
        let digest = Sha256::digest(self.cas[0].cert.pem.as_bytes());
        format!("K10{}::server:{secret}", hex(&digest))
    }

    /// The admin certificate's notAfter (seconds since 1970).
    pub fn admin_not_after(&self) -> i64 {
        self.admin.cert.not_after()
    }
}

#[derive(Serialize)]
struct KubeConfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a>>,
    users: Vec<Named<'a>>,
    contexts: Vec<Named<'a>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

/// One entry of `clusters`, `users` or `contexts`: a name and one body.
#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ContextEntry<'a>>,
}

#[derive(Serialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct UserEntry {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    client_key_data: String,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// One pass over `state_dir/k3s/`.
struct Store<'a> {
    dir: PathBuf,
    write: bool,
    entropy: &'a mut dyn Entropy,
    now: i64,
    notes: Vec<String>,
    made_up: Vec<String>,
}

impl<'a> Store<'a> {
    fn new(state_dir: &Path, write: bool, entropy: &'a mut dyn Entropy, now: i64) -> Self {
        Self {
            dir: state_dir.join(STATE_SUBDIR),
            write,
            entropy,
            now,
            notes: Vec::new(),
            made_up: Vec::new(),
        }
    }

    fn gather(mut self) -> Result<Pki, PkiError> {
        let tls = self.dir.join("tls");
        for dir in [self.dir.clone(), tls.clone(), tls.join("etcd")] {
            self.private_dir(&dir)?;
        }
        let mut cas = Vec::with_capacity(CAS.len());
        for (name, prefix) in CAS {
            let (crt, key) = (
                tls.join(format!("{name}.crt")),
                tls.join(format!("{name}.key")),
            );
            cas.push(self.ca(&crt, &key, name, prefix)?);
        }
        let admin = self.admin(&cas[CLIENT_CA])?;
        if !self.made_up.is_empty() {
            self.notes.push(format!(
                "{} holds no {} yet: shown here are ones made for this run only; \
                 `build` creates the ones it keeps",
                self.dir.display(),
                self.made_up.join(", ")
            ));
        }
        Ok(Pki {
            cas,
            admin,
            notes: self.notes,
        })
    }

    fn ca(&mut self, crt: &Path, key: &Path, name: &str, prefix: &str) -> Result<Pair, PkiError> {
        let Some((key_pem, cert_pem)) = self.load_pair(crt, key, CA_FIX)? else {
            let secret = self.new_key(name)?;
            let cert = self.issue(
                &secret,
                &format!("CN={prefix}-ca@{}", self.now),
                self.now + CA_DAYS * DAY,
                Role::Ca,
                name,
            )?;
            let pair = self.pair(secret, cert, name)?;
            self.save_pair(crt, key, &pair, &format!("k3s {name}"))?;
            return Ok(pair);
        };
        let secret = cert::parse_key(&key_pem).map_err(|r| corrupt(key, r, CA_FIX))?;
        let issued = cert::parse_cert(&cert_pem).map_err(|r| corrupt(crt, r, CA_FIX))?;
        cert::check_ca(&issued, &secret).map_err(|r| corrupt(crt, r, CA_FIX))?;
        if issued.not_after() - self.now < RENEW_DAYS * DAY {
            self.notes.push(format!(
                "{} expires on {} UTC; rotate the cluster's CAs with `k3s certificate \
                 rotate-ca` (docs.k3s.io) before then",
                crt.display(),
                crate::time::format_utc(issued.not_after())
            ));
        }
        Ok(Pair {
            key: secret,
            key_pem,
            cert: issued,
        })
    }

    fn admin(&mut self, ca: &Pair) -> Result<Pair, PkiError> {
        let (crt, key) = (self.dir.join("admin.crt"), self.dir.join("admin.key"));
        let subject = format!("CN={ADMIN_CN},O={ADMIN_GROUP}");
        let not_after = (self.now + ADMIN_DAYS * DAY).min(ca.cert.not_after());
        let Some((key_pem, cert_pem)) = self.load_pair(&crt, &key, ADMIN_FIX)? else {
            let secret = self.new_key("admin")?;
            let cert = self.issue(&secret, &subject, not_after, client(ca), "admin")?;
            let pair = self.pair(secret, cert, "admin")?;
            self.save_pair(&crt, &key, &pair, "kubeconfig admin certificate")?;
            return Ok(pair);
        };
        let secret = cert::parse_key(&key_pem).map_err(|r| corrupt(&key, r, ADMIN_FIX))?;
        let issued = cert::parse_cert(&cert_pem).map_err(|r| corrupt(&crt, r, ADMIN_FIX))?;
        cert::check_signed_by(&issued, &secret, &ca.cert, &ca.key)
            .map_err(|r| corrupt(&crt, r, ADMIN_FIX))?;
        // Kept while 30 days remain, and also when a new one could not end
        // later (the client CA ends first): renewing then would only change
        // the bytes on every build.
        if issued.not_after() - self.now >= RENEW_DAYS * DAY || not_after <= issued.not_after() {
            return Ok(Pair {
                key: secret,
                key_pem,
                cert: issued,
            });
        }
        let renewed = self.issue(&secret, &subject, not_after, client(ca), "admin")?;
        let when = crate::time::format_utc(issued.not_after());
        if self.write {
            write_file(&crt, renewed.pem.as_bytes(), 0o644)?;
            self.notes.push(format!(
                "{} was valid until {when} UTC; renewed until {} UTC (out/kubeconfig \
                 changes)",
                crt.display(),
                crate::time::format_utc(renewed.not_after())
            ));
        } else {
            self.notes.push(format!(
                "{} is valid until {when} UTC; shown here is a renewed one, which \
                 `build` saves",
                crt.display()
            ));
        }
        Ok(Pair {
            key: secret,
            key_pem,
            cert: renewed,
        })
    }

    /// Both texts of a stored pair, `None` when neither exists; half a pair
    /// is refused, naming the missing file.
    fn load_pair(
        &mut self,
        crt: &Path,
        key: &Path,
        fix: &str,
    ) -> Result<Option<(String, String)>, PkiError> {
        let key_text = self.read(key, true)?;
        let cert_text = self.read(crt, false)?;
        match (key_text, cert_text) {
            (None, None) => Ok(None),
            (Some(k), Some(c)) => Ok(Some((k, c))),
            (Some(_), None) => Err(corrupt(
                crt,
                format!("is missing while {} is there", key.display()),
                fix,
            )),
            (None, Some(_)) => Err(corrupt(
                key,
                format!("is missing while {} is there", crt.display()),
                fix,
            )),
        }
    }

    fn read(&mut self, path: &Path, secret: bool) -> Result<Option<String>, PkiError> {
        let Ok(meta) = fs::metadata(path) else {
            if fs::symlink_metadata(path).is_ok() {
                return Err(corrupt(
                    path,
                    "is a symbolic link to nothing".to_owned(),
                    "",
                ));
            }
            return Ok(None);
        };
        let text = named_file::read_text(path, Kind::State)?;
        if secret {
            self.keep_private(path, &meta, 0o600)?;
        }
        Ok(Some(text))
    }

    /// Creates `dir` 0700 (writing pass), or makes an existing one private.
    fn private_dir(&mut self, dir: &Path) -> Result<(), PkiError> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => self.keep_private(dir, &meta, 0o700),
            Ok(_) => Err(corrupt(dir, "is not a directory".to_owned(), "")),
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

    fn keep_private(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        private: u32,
    ) -> Result<(), PkiError> {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        if self.write {
            fs::set_permissions(path, fs::Permissions::from_mode(private))
                .map_err(at("setting the mode of", path))?;
            self.notes.push(format!(
                "{} was open to other users (mode {mode:04o}); set to {private:04o}. \
                 If anyone else could read it, treat the cluster's keys as leaked",
                path.display()
            ));
        } else {
            self.notes.push(format!(
                "{} is open to other users (mode {mode:04o}); `build` sets it to {private:04o}",
                path.display()
            ));
        }
        Ok(())
    }

    fn new_key(&mut self, what: &str) -> Result<SecretKey, PkiError> {
        // A random 256-bit string is a valid P-256 scalar unless it is 0 or
        // at least the group order (odds about 2^-32); draw again then.
        for _ in 0..8 {
            let mut bytes = [0u8; 32];
            self.entropy.fill(&mut bytes)?;
            if let Some(key) = cert::key_from_bytes(&bytes) {
                return Ok(key);
            }
        }
        Err(PkiError::Make {
            what: format!("the {what} key"),
            reason: "the random source gave no valid P-256 key in 8 draws".to_owned(),
        })
    }

    fn issue(
        &mut self,
        key: &SecretKey,
        subject: &str,
        not_after: i64,
        role: Role<'_>,
        what: &str,
    ) -> Result<Issued, PkiError> {
        let mut serial = [0u8; SERIAL_BYTES];
        self.entropy.fill(&mut serial)?;
        cert::issue(
            key,
            &Request {
                subject,
                serial,
                not_before: self.now - DAY,
                not_after,
                role,
            },
        )
        .map_err(|reason| PkiError::Make {
            what: format!("the {what} certificate"),
            reason,
        })
    }

    fn pair(&self, key: SecretKey, cert: Issued, what: &str) -> Result<Pair, PkiError> {
        let key_pem = cert::key_pem(&key).map_err(|reason| PkiError::Make {
            what: format!("the {what} key"),
            reason,
        })?;
        Ok(Pair { key, key_pem, cert })
    }

    /// Saves a new pair (writing pass) or notes it was made up. Both files
    /// are written under temporary names first and renamed key first, so
    /// a failure leaves no half pair unless it strikes between two renames.
    fn save_pair(
        &mut self,
        crt: &Path,
        key: &Path,
        pair: &Pair,
        what: &str,
    ) -> Result<(), PkiError> {
        if !self.write {
            self.made_up.push(what.to_owned());
            return Ok(());
        }
        let key_tmp = write_tmp(key, pair.key_pem.as_bytes(), 0o600)?;
        let crt_tmp = write_tmp(crt, pair.cert.pem.as_bytes(), 0o644)?;
        fs::rename(&key_tmp, key).map_err(at("renaming", &key_tmp))?;
        fs::rename(&crt_tmp, crt).map_err(at("renaming", &crt_tmp))?;
        Ok(())
    }
}

/// What to do about a damaged or half CA.
const CA_FIX: &str = "a CA is never remade over a damaged or half-present pair (the \
    cluster would stop trusting its own nodes): restore both files from a backup \
    of the state directory, or, for a cluster not yet running, delete both to \
    make a new CA and rebuild every node";
/// What to do about a damaged or half admin certificate.
const ADMIN_FIX: &str = "delete admin.crt and admin.key to issue a new admin \
    certificate (the CAs stay; out/kubeconfig changes)";

fn client(ca: &Pair) -> Role<'_> {
    Role::Client {
        issuer: &ca.cert,
        issuer_key: &ca.key,
    }
}

fn corrupt(path: &Path, reason: String, fix: &str) -> PkiError {
    let reason = if fix.is_empty() {
        reason
    } else {
        format!("{reason}; {fix}")
    };
    PkiError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

/// Writes `bytes` to `<path>.tmp` (created with `mode`, synced).
fn write_tmp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, PkiError> {
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
    Ok(tmp)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = write_tmp(path, bytes, mode)?;
    fs::rename(&tmp, path).map_err(at("renaming", &tmp))?;
    Ok(())
}
