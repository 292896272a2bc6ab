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

mod store;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use p256::SecretKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::digest::hex;
use crate::io::path_error::PathIoError;
use crate::k3s::cert::Issued;
use crate::profile::named_file::NamedFileError;
use crate::profile::state::{Entropy, StateError, ensure_state_dir};
use crate::render::yaml::{base64, to_yaml};
use store::Store;

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
