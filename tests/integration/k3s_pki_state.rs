//! The k3s PKI's state directory (`k3s::pki`): the same state gives the
//! same bytes, peeking writes nothing, modes are private, damaged or
//! half-present files are refused by name and left as they were, and the
//! admin certificate is renewed near its end; openssl judges the results.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use homelab_image::k3s::pki::{Pki, PkiError};
use homelab_image::profile::state::SeededEntropy;

use crate::k3s_pki::{ADDR, DAY, now, openssl_ok, path, prepare, snapshot};

#[test]
fn the_same_state_dir_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let t = now();
    let first = prepare(&state, b"one", t);
    let files = snapshot(&state);
    // Other random bytes and another day: what is kept is used as it is.
    let again = prepare(&state, b"two", t + DAY);
    assert!(snapshot(&state) == files, "the kept files changed");
    assert_eq!(first.server_tls_files(), again.server_tls_files());
    assert_eq!(first.kubeconfig("c", ADDR), again.kubeconfig("c", ADDR));
    assert_eq!(first.full_token("x"), again.full_token("x"));
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    let peeked = Pki::peek_at(&state, &mut SeededEntropy::new(b"three"), t + DAY).unwrap();
    assert_eq!(peeked.kubeconfig("c", ADDR), first.kubeconfig("c", ADDR));
    // Making is deterministic too: the same seed and clock in a new
    // directory give the same bytes.
    let other = tmp.path().join("other");
    let twin = prepare(&other, b"one", t);
    assert_eq!(twin.server_tls_files(), first.server_tls_files());
    assert_eq!(twin.kubeconfig("c", ADDR), first.kubeconfig("c", ADDR));
    let other_seed = prepare(&tmp.path().join("third"), b"nine", t);
    assert_ne!(other_seed.server_tls_files(), first.server_tls_files());
}

#[test]
fn peeking_writes_nothing_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let t = now();
    let peeked = Pki::peek_at(&state, &mut SeededEntropy::new(b"p"), t).unwrap();
    assert!(!state.exists(), "peeking created {}", state.display());
    let notes = peeked.notes.join("\n");
    assert!(notes.contains("made for this run only"), "{notes}");
    assert!(
        notes.contains("k3s server-ca") && notes.contains("admin"),
        "{notes}"
    );
    // What `build` then keeps is what was shown.
    let kept = prepare(&state, b"p", t);
    assert_eq!(kept.kubeconfig("c", ADDR), peeked.kubeconfig("c", ADDR));
}

#[test]
fn state_keys_are_0600_and_dirs_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    prepare(&state, b"m", now());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let k3s = state.join("k3s");
    for dir in [
        state.clone(),
        k3s.clone(),
        k3s.join("tls"),
        k3s.join("tls/etcd"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let files = snapshot(&state);
    let keys: Vec<_> = files
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for p in files.keys() {
        let want = match p.extension().and_then(|e| e.to_str()) {
            Some("key") => 0o600,
            Some("crt") => 0o644,
            _ => continue,
        };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    // A key open to others: peeking reports it, building makes it private.
    let key = k3s.join("tls/etcd/peer-ca.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let peeked = Pki::peek_at(&state, &mut SeededEntropy::new(b"m"), now()).unwrap();
    assert!(
        peeked.notes.join("\n").contains("`build` sets it to 0600"),
        "{:?}",
        peeked.notes
    );
    assert_eq!(mode(&key), 0o644);
    let built = prepare(&state, b"m", now());
    assert!(
        built.notes.join("\n").contains("set to 0600"),
        "{:?}",
        built.notes
    );
    assert_eq!(mode(&key), 0o600);
    fs::set_permissions(k3s.join("tls"), fs::Permissions::from_mode(0o755)).unwrap();
    prepare(&state, b"m", now());
    assert_eq!(mode(&k3s.join("tls")), 0o700);
}

/// Both `prepare` and `peek` refuse the state, naming `file`, and leave
/// every file as it was.
fn assert_refused(state: &Path, file: &str, needles: &[&str]) {
    let before = snapshot(state);
    for write in [false, true] {
        let mut entropy = SeededEntropy::new(b"again");
        let err: PkiError = if write {
            Pki::prepare_at(state, &mut entropy, now()).unwrap_err()
        } else {
            Pki::peek_at(state, &mut entropy, now()).unwrap_err()
        };
        let msg = err.to_string();
        assert!(msg.contains(file), "{file} not named in: {msg}");
        for n in needles {
            assert!(msg.contains(n), "no {n:?} in: {msg}");
        }
        assert!(
            snapshot(state) == before,
            "refusing {file} changed the state"
        );
    }
}

#[test]
fn a_damaged_or_half_present_ca_is_refused_by_name_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let state = tmp.path().join(name);
        prepare(&state, b"orig", now());
        let tls = state.join("k3s/tls");
        (state, tls)
    };

    let (state, tls) = fresh("garbage");
    fs::write(tls.join("server-ca.crt"), "not a certificate\n").unwrap();
    assert_refused(
        &state,
        "server-ca.crt",
        &["not a PEM certificate", "never remade"],
    );

    let (state, tls) = fresh("half");
    fs::remove_file(tls.join("client-ca.key")).unwrap();
    assert_refused(&state, "client-ca.key", &["is missing", "client-ca.crt"]);

    let (state, tls) = fresh("keyless-cert");
    fs::remove_file(tls.join("etcd/server-ca.crt")).unwrap();
    assert_refused(&state, "etcd/server-ca.crt", &["is missing"]);

    let (state, tls) = fresh("swapped");
    fs::copy(tls.join("server-ca.crt"), tls.join("etcd/peer-ca.crt")).unwrap();
    assert_refused(
        &state,
        "etcd/peer-ca.crt",
        &["public key of the private key"],
    );

    // A certificate that matches its key but is not a CA: the admin pair.
    let (state, tls) = fresh("not-a-ca");
    let k3s = state.join("k3s");
    fs::copy(k3s.join("admin.crt"), tls.join("request-header-ca.crt")).unwrap();
    fs::copy(k3s.join("admin.key"), tls.join("request-header-ca.key")).unwrap();
    assert_refused(&state, "request-header-ca.crt", &["not a CA certificate"]);

    let (state, tls) = fresh("bad-key");
    fs::write(
        tls.join("server-ca.key"),
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    assert_refused(&state, "server-ca.key", &["not a P-256 private key"]);

    let (state, tls) = fresh("truncated");
    let crt = tls.join("client-ca.crt");
    let text = fs::read_to_string(&crt).unwrap();
    fs::write(&crt, &text[..text.len() / 2]).unwrap();
    assert_refused(&state, "client-ca.crt", &[]);
}

#[test]
fn an_admin_certificate_not_from_this_client_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    prepare(&a, b"a", now());
    prepare(&b, b"b", now());
    for f in ["admin.crt", "admin.key"] {
        fs::copy(b.join("k3s").join(f), a.join("k3s").join(f)).unwrap();
    }
    assert_refused(&a, "admin.crt", &["delete admin.crt and admin.key"]);
    fs::remove_file(a.join("k3s/admin.key")).unwrap();
    assert_refused(&a, "admin.key", &["is missing"]);
}

#[test]
fn the_admin_certificate_is_renewed_when_fewer_than_30_days_remain() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let t = now();
    prepare(&state, b"r", t);
    let k3s = state.join("k3s");
    let (crt, key) = (k3s.join("admin.crt"), k3s.join("admin.key"));
    let (old_crt, old_key) = (fs::read(&crt).unwrap(), fs::read(&key).unwrap());

    // 300 days on, 65 remain: kept.
    let kept = prepare(&state, b"r2", t + 300 * DAY);
    assert_eq!(fs::read(&crt).unwrap(), old_crt);
    assert!(kept.notes.is_empty(), "{:?}", kept.notes);

    // 336 days on, 29 remain: peek shows a renewed one and writes nothing,
    // build saves it (same key, a year from then).
    let later = t + 336 * DAY;
    let peeked = Pki::peek_at(&state, &mut SeededEntropy::new(b"r3"), later).unwrap();
    assert!(
        peeked.notes.join("\n").contains("`build` saves"),
        "{:?}",
        peeked.notes
    );
    assert_eq!(fs::read(&crt).unwrap(), old_crt);
    assert!(peeked.admin_not_after() >= later + 364 * DAY);
    let renewed = prepare(&state, b"r3", later);
    assert!(
        renewed.notes.join("\n").contains("renewed until"),
        "{:?}",
        renewed.notes
    );
    assert_ne!(fs::read(&crt).unwrap(), old_crt);
    assert_eq!(fs::read(&key).unwrap(), old_key);
    assert_eq!(renewed.admin_not_after(), peeked.admin_not_after());
    let attime = later.to_string();
    let client_ca = k3s.join("tls/client-ca.crt");
    openssl_ok(&[
        "verify",
        "-attime",
        &attime,
        "-CAfile",
        path(&client_ca),
        path(&crt),
    ]);
    let from_key = openssl_ok(&["pkey", "-in", path(&key), "-pubout"]);
    let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", path(&crt)]);
    assert_eq!(from_key, from_cert);
    // Renewed once: the next build keeps it.
    let next = prepare(&state, b"r4", later + DAY);
    assert!(next.notes.is_empty(), "{:?}", next.notes);
}

/// Near the CA's end the admin certificate cannot outlive it: renewed once
/// up to the CA's notAfter, then kept (no new bytes on every build), and a
/// note says to rotate the CAs.
#[test]
fn near_the_ca_end_the_admin_certificate_is_renewed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let t = now();
    prepare(&state, b"end", t);
    let late = t + (3650 - 20) * DAY;
    let first = prepare(&state, b"end2", late);
    let notes = first.notes.join("\n");
    assert!(
        notes.contains("rotate-ca") && notes.contains("renewed until"),
        "{notes}"
    );
    let ca_end = openssl_ok(&[
        "x509",
        "-noout",
        "-enddate",
        "-in",
        path(&state.join("k3s/tls/client-ca.crt")),
    ]);
    let admin_end = openssl_ok(&[
        "x509",
        "-noout",
        "-enddate",
        "-in",
        path(&state.join("k3s/admin.crt")),
    ]);
    assert_eq!(admin_end, ca_end);
    let files = snapshot(&state);
    let again = prepare(&state, b"end3", late + DAY);
    assert!(
        snapshot(&state) == files,
        "renewed again: {:?}",
        again.notes
    );
    assert!(
        !again.notes.join("\n").contains("renewed"),
        "{:?}",
        again.notes
    );
}

/// A CA key in PKCS #8 (`PRIVATE KEY`, what `openssl genpkey` writes) is
/// read, and goes to the image byte for byte.
#[test]
fn a_pkcs8_ca_key_is_accepted_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    prepare(&state, b"p8", now());
    let key = state.join("k3s/tls/etcd/peer-ca.key");
    let p8 = tmp.path().join("p8.key");
    openssl_ok(&["pkey", "-in", path(&key), "-out", path(&p8)]);
    let text = fs::read(&p8).unwrap();
    assert!(text.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    fs::write(&key, &text).unwrap();
    let pki = prepare(&state, b"p8", now());
    let files = pki.server_tls_files();
    let shipped = files.iter().find(|f| f.0 == "etcd/peer-ca.key").unwrap();
    assert_eq!(shipped.2, text);
}
