//! The k3s certificate authorities and the kubeconfig (`k3s::pki`), judged
//! by openssl (x509, verify, pkey, a real TLS handshake with s_server and
//! s_client), PyYAML and kubectl. The state directory's side (reuse,
//! modes, refusals, renewal) is in `k3s_pki_state`.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homelab_image::k3s::pki::Pki;
use homelab_image::profile::state::SeededEntropy;

use crate::util::run_ok;

pub(crate) const DAY: i64 = 86_400;
pub(crate) const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

pub(crate) fn now() -> i64 {
    homelab_image::time::now()
}

pub(crate) fn prepare(state: &Path, seed: &[u8], at: i64) -> Pki {
    Pki::prepare_at(state, &mut SeededEntropy::new(seed), at).unwrap()
}

/// Every file under `dir` with its bytes.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Writes the first server's TLS files under `dir` as the image would hold them.
fn write_tls(pki: &Pki, dir: &Path) {
    for (path, mode, bytes) in pki.server_tls_files() {
        let p = dir.join(&path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

pub(crate) fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().unwrap()
}

pub(crate) fn openssl_ok(args: &[&str]) -> String {
    String::from_utf8(run_ok(Command::new("openssl").args(args)).stdout).unwrap()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The kubeconfig read by PyYAML: its fields as JSON, and its three base64
/// fields decoded into `dir` (ca.pem, admin.crt, admin.key).
fn read_kubeconfig(kubeconfig: &Path, dir: &Path) -> serde_json::Value {
    let script = r#"
import base64, json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
out = sys.argv[2]
cluster = doc["clusters"][0]["cluster"]
user = doc["users"][0]["user"]
for name, data in [("ca.pem", cluster["certificate-authority-data"]),
                   ("admin.crt", user["client-certificate-data"]),
                   ("admin.key", user["client-key-data"])]:
    open(out + "/" + name, "wb").write(base64.b64decode(data, validate=True))
print(json.dumps(doc))
"#;
    let out = run_ok(
        Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(kubeconfig)
            .arg(dir),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn each_ca_is_a_self_signed_p256_ca_whose_key_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = prepare(&tmp.path().join("state"), b"cas", now());
    let tls = tmp.path().join("tls");
    write_tls(&pki, &tls);
    let names: Vec<String> = pki.server_tls_files().into_iter().map(|f| f.0).collect();
    assert_eq!(
        names,
        [
            "server-ca.crt",
            "server-ca.key",
            "client-ca.crt",
            "client-ca.key",
            "request-header-ca.crt",
            "request-header-ca.key",
            "etcd/server-ca.crt",
            "etcd/server-ca.key",
            "etcd/peer-ca.crt",
            "etcd/peer-ca.key",
        ]
    );
    for (ca, cn) in [
        ("server-ca", "k3s-server-ca@"),
        ("client-ca", "k3s-client-ca@"),
        ("request-header-ca", "k3s-request-header-ca@"),
        ("etcd/server-ca", "etcd-server-ca@"),
        ("etcd/peer-ca", "etcd-peer-ca@"),
    ] {
        let crt = tls.join(format!("{ca}.crt"));
        let key = tls.join(format!("{ca}.key"));
        let text = openssl_ok(&["x509", "-noout", "-text", "-in", path(&crt)]);
        for needle in [
            "CA:TRUE",
            "Certificate Sign",
            "Digital Signature",
            "ecdsa-with-SHA256",
            "prime256v1",
        ] {
            assert!(text.contains(needle), "{ca}: no {needle} in\n{text}");
        }
        assert!(
            text.contains(&format!("Subject: CN = {cn}")),
            "{ca}: subject in\n{text}"
        );
        // Self-signed and valid now; 10 years, not 11.
        openssl_ok(&["verify", "-CAfile", path(&crt), path(&crt)]);
        openssl_ok(&[
            "x509",
            "-noout",
            "-in",
            path(&crt),
            "-checkend",
            &(3640 * DAY).to_string(),
        ]);
        assert!(
            !openssl(&[
                "x509",
                "-noout",
                "-in",
                path(&crt),
                "-checkend",
                &(3660 * DAY).to_string()
            ])
            .status
            .success(),
            "{ca} is valid for more than 10 years"
        );
        let from_key = openssl_ok(&["pkey", "-in", path(&key), "-pubout"]);
        let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", path(&crt)]);
        assert_eq!(
            from_key, from_cert,
            "{ca}: the key is not the certificate's"
        );
    }
    // Five distinct keys.
    let keys: std::collections::BTreeSet<Vec<u8>> = pki
        .server_tls_files()
        .into_iter()
        .filter(|f| f.0.ends_with(".key"))
        .map(|f| f.2)
        .collect();
    assert_eq!(keys.len(), 5);
}

#[test]
fn the_kubeconfig_holds_a_system_masters_client_of_the_client_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let pki = prepare(&state, b"admin", now());
    let tls = tmp.path().join("tls");
    write_tls(&pki, &tls);
    let kubeconfig = tmp.path().join("kubeconfig");
    fs::write(&kubeconfig, pki.kubeconfig("homelab", ADDR)).unwrap();
    let doc = read_kubeconfig(&kubeconfig, tmp.path());
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["kind"], "Config");
    assert_eq!(doc["current-context"], "homelab");
    assert_eq!(doc["contexts"][0]["name"], "homelab");
    assert_eq!(doc["contexts"][0]["context"]["cluster"], "homelab");
    assert_eq!(
        doc["contexts"][0]["context"]["user"],
        doc["users"][0]["name"]
    );
    assert_eq!(doc["clusters"][0]["name"], "homelab");
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"],
        "https://10.0.0.5:6443"
    );
    // The base64 fields decode to the PEMs the state directory keeps.
    let k3s = state.join("k3s");
    assert_eq!(
        fs::read(tmp.path().join("ca.pem")).unwrap(),
        fs::read(k3s.join("tls/server-ca.crt")).unwrap()
    );
    assert_eq!(
        fs::read(tmp.path().join("admin.crt")).unwrap(),
        fs::read(k3s.join("admin.crt")).unwrap()
    );
    assert_eq!(
        fs::read(tmp.path().join("admin.key")).unwrap(),
        fs::read(k3s.join("admin.key")).unwrap()
    );
    let admin = tmp.path().join("admin.crt");
    let client_ca = tls.join("client-ca.crt");
    openssl_ok(&["verify", "-CAfile", path(&client_ca), path(&admin)]);
    for other in ["server-ca.crt", "request-header-ca.crt", "etcd/peer-ca.crt"] {
        let out = openssl(&["verify", "-CAfile", path(&tls.join(other)), path(&admin)]);
        assert!(
            !out.status.success(),
            "the admin cert verifies against {other}"
        );
    }
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", path(&admin)]);
    for needle in [
        "Subject: O = system:masters, CN = homelab-image-admin",
        "TLS Web Client Authentication",
        "CA:FALSE",
        "Digital Signature",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    assert!(!text.contains("Certificate Sign"), "{text}");
    let from_key = openssl_ok(&[
        "pkey",
        "-in",
        path(&tmp.path().join("admin.key")),
        "-pubout",
    ]);
    let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", path(&admin)]);
    assert_eq!(from_key, from_cert);
    // A year, not more: valid in 300 days, not in 366.
    openssl_ok(&[
        "x509",
        "-noout",
        "-in",
        path(&admin),
        "-checkend",
        &(300 * DAY).to_string(),
    ]);
    assert!(
        !openssl(&[
            "x509",
            "-noout",
            "-in",
            path(&admin),
            "-checkend",
            &(366 * DAY).to_string()
        ])
        .status
        .success()
    );
    // The full token pins the server CA file's SHA-256, as k3s's hashCA does
    // for a bundle of one certificate.
    let sum =
        String::from_utf8(run_ok(Command::new("sha256sum").arg(tls.join("server-ca.crt"))).stdout)
            .unwrap();
    let digest = sum.split_whitespace().next().unwrap();
    assert_eq!(
        pki.full_token("s3cret"),
        format!("K10{digest}::server:s3cret")
    );
}

/// A running `openssl s_server`, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `s_server -www` with a certificate for 127.0.0.1 signed by our server CA,
/// asking for a client certificate that `client_ca` must verify.
fn serve(dir: &Path, tls: &Path, client_ca: &Path) -> (Server, u16) {
    let (key, csr, crt, ext) = (
        dir.join("srv.key"),
        dir.join("srv.csr"),
        dir.join("srv.crt"),
        dir.join("srv.ext"),
    );
    if !crt.exists() {
        openssl_ok(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            path(&key),
        ]);
        openssl_ok(&[
            "req",
            "-new",
            "-key",
            path(&key),
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            path(&csr),
        ]);
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl_ok(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&tls.join("server-ca.crt")),
            "-CAkey",
            path(&tls.join("server-ca.key")),
            "-set_serial",
            "7",
            "-days",
            "2",
            "-extfile",
            path(&ext),
            "-out",
            path(&crt),
        ]);
    }
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", path(&crt), "-key", path(&key)])
        .args([
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            path(client_ca),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "s_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

/// `s_client` to 127.0.0.1:`port` trusting `ca`, presenting the admin
/// certificate, sending a GET; whether an HTTP response came back.
fn fetch(port: u16, ca: &Path, dir: &Path) -> (bool, String) {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-CAfile",
            path(ca),
        ])
        .args([
            "-cert",
            path(&dir.join("admin.crt")),
            "-key",
            path(&dir.join("admin.key")),
        ])
        .arg("-ign_eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("HTTP/1.0 200 ok"), text)
}

#[test]
fn a_tls_handshake_trusts_the_server_ca_and_the_client_ca_accepts_the_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = prepare(&tmp.path().join("state"), b"tls", now());
    let tls = tmp.path().join("tls");
    write_tls(&pki, &tls);
    let kubeconfig = tmp.path().join("kubeconfig");
    fs::write(&kubeconfig, pki.kubeconfig("lab", Ipv4Addr::LOCALHOST)).unwrap();
    read_kubeconfig(&kubeconfig, tmp.path());
    let ca = tmp.path().join("ca.pem");

    let (server, port) = serve(tmp.path(), &tls, &tls.join("client-ca.crt"));
    let (ok, text) = fetch(port, &ca, tmp.path());
    assert!(
        ok,
        "the handshake with the kubeconfig's CA and admin failed:\n{text}"
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    // The client refuses the server when it trusts another of our CAs.
    let (ok, text) = fetch(port, &tls.join("client-ca.crt"), tmp.path());
    assert!(!ok, "the server verified against the client CA:\n{text}");
    drop(server);

    // The server refuses the admin when it trusts another CA for clients.
    let (_server, port) = serve(tmp.path(), &tls, &tls.join("request-header-ca.crt"));
    let (ok, text) = fetch(port, &ca, tmp.path());
    assert!(
        !ok,
        "a server trusting the request-header CA accepted the admin:\n{text}"
    );
}

/// kubectl (client-go: Go's TLS stack and key parser, what users run)
/// reads the kubeconfig, trusts the server CA and presents the admin
/// certificate, which a server trusting only the client CA accepts.
#[test]
fn kubectl_reaches_a_server_with_the_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = prepare(&tmp.path().join("state"), b"kubectl", now());
    let tls = tmp.path().join("tls");
    write_tls(&pki, &tls);
    let kubeconfig = tmp.path().join("kubeconfig");
    fs::write(&kubeconfig, pki.kubeconfig("lab", ADDR)).unwrap();
    let kubectl = |port: u16| {
        Command::new("timeout")
            .args(["30", "kubectl", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg(format!("--server=https://127.0.0.1:{port}"))
            .args(["--request-timeout=10s", "get", "--raw", "/"])
            .output()
            .unwrap()
    };
    let view = run_ok(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["config", "view", "-o", "json"]),
    );
    let view: serde_json::Value = serde_json::from_slice(&view.stdout).unwrap();
    assert_eq!(view["current-context"], "lab");
    assert_eq!(
        view["clusters"][0]["cluster"]["server"],
        "https://10.0.0.5:6443"
    );

    let (_server, port) = serve(tmp.path(), &tls, &tls.join("client-ca.crt"));
    let out = kubectl(port);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl failed:\n{text}");
    assert!(text.contains("s_server"), "not s_server's page:\n{text}");

    let (_other, port) = serve(tmp.path(), &tls, &tls.join("etcd/server-ca.crt"));
    let out = kubectl(port);
    assert!(
        !out.status.success(),
        "a server trusting another CA for clients accepted kubectl:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
