//! k3s, the second kind of cluster (beside MicroCloud): what a release is
//! called and which architectures it publishes. The profile section lives in
//! `profile::k3s`, the download in `source::k3s`, the certificates in
//! `k3s::pki`; this module is the vocabulary they share.

mod cert;
pub mod pki;
mod release;

pub use release::{K3sArch, K3sVersion, VersionError};
