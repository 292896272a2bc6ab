//! One pass over `state_dir/k3s/` for [`super::Pki`]: reads the stored CAs
//! and admin certificate, checks them, and makes (and, when writing, saves)
//! what is missing; the same prepare/peek split as `profile::state`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use p256::SecretKey;

use super::{
    ADMIN_CN, ADMIN_DAYS, ADMIN_GROUP, CA_DAYS, CAS, CLIENT_CA, DAY, Pair, Pki, PkiError,
    RENEW_DAYS, STATE_SUBDIR,
};
use crate::io::path_error::at;
use crate::k3s::cert::{self, Issued, Request, Role, SERIAL_BYTES};
use crate::profile::named_file::{self, Kind};
use crate::profile::state::Entropy;

/// One pass over `state_dir/k3s/`.
pub(super) struct Store<'a> {
    dir: PathBuf,
    write: bool,
    entropy: &'a mut dyn Entropy,
    now: i64,
    notes: Vec<String>,
    made_up: Vec<String>,
}

impl<'a> Store<'a> {
    pub(super) fn new(
        state_dir: &Path,
        write: bool,
        entropy: &'a mut dyn Entropy,
        now: i64,
    ) -> Self {
        Self {
            dir: state_dir.join(STATE_SUBDIR),
            write,
            entropy,
            now,
            notes: Vec::new(),
            made_up: Vec::new(),
        }
    }

    pub(super) fn gather(mut self) -> Result<Pki, PkiError> {
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
        let leaked = "treat the cluster's keys as leaked";
        let note = crate::profile::state::keep_private(path, meta, private, self.write, leaked)?;
        self.notes.extend(note);
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
