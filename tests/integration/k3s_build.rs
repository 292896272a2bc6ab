//! `pull` and `build` with a k3s profile (issue 17): `pull --mirror` fetches
//! the release's binary with its checksum file from a loopback server and
//! caches it; `build` then works with the server gone, and each image holds
//! the served bytes (read back with debugfs) on file systems e2fsck and
//! fsck.fat find clean, with the build manifest recording the binary by
//! its SHA-256; `flash`'s stale check sees the image as current.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ext4_support::assert_fsck_clean;
use crate::http_server::Server;
use crate::util::{bin, extract_partition, fixture, garbage, our_partition, run_ok};

const DIR: &str = "/v1.31.4%2Bk3s1";

fn fake_k3s() -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01\x00".to_vec();
    b.extend(garbage((5 << 20) + 777, 0x3b5));
    b
}

fn sha256sum(dir: &Path, name: &str, bytes: &[u8]) -> Vec<u8> {
    let work = dir.join("sums");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join(name), bytes).unwrap();
    let out = Command::new("sha256sum")
        .arg(name)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A k3s server on the Ubuntu fixture and an agent on the Armbian Pi one.
fn profile(dir: &Path) -> PathBuf {
    let text = format!(
        "defaults:
  board: rpi4
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
nodes:
  - hostname: pi1
    image: {{os: ubuntu-24.04, path: {ubuntu}}}
    network: {{address: 192.168.1.11/24}}
  - hostname: pi2
    image: {{os: armbian, path: {armbian}}}
    network: {{address: 192.168.1.12/24}}
k3s:
  version: v1.31.4+k3s1
  servers: [pi1]
",
        ubuntu = fixture("ubuntu-raspi.img").display(),
        armbian = fixture("armbian-rpi.img").display(),
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn hi(profile: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--profile")
        .arg(profile)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}

fn dump(img: &Path, n: u64, path: &str, tmp: &Path) -> Vec<u8> {
    let (start, len) = our_partition(img, n);
    let part = tmp.join("part.ext4");
    extract_partition(img, start, len, &part);
    let out = tmp.join("dumped");
    let _ = std::fs::remove_file(&out);
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump {path} {}", out.display()))
            .arg(&part),
    );
    std::fs::read(&out).unwrap_or_default()
}

#[test]
fn pull_caches_the_binary_and_build_then_works_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path());
    let cache = tmp.path().join("cache");
    let binary = fake_k3s();
    let server = Server::start();
    server.file(&format!("{DIR}/k3s-arm64"), binary.clone());
    server.file(
        &format!("{DIR}/sha256sum-arm64.txt"),
        sha256sum(tmp.path(), "k3s-arm64", &binary),
    );
    let base = server.base.clone();
    let out = hi(&p, &cache, &["pull", "--mirror", &base]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.served(&format!("{DIR}/k3s-arm64")),
        binary.len() as u64
    );
    drop(server);

    let out_dir = tmp.path().join("out");
    let out = hi(
        &p,
        &cache,
        &["build", "--all", "--out", out_dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = homelab_image::digest::Sha256::of(&binary).to_string();
    for node in ["pi1", "pi2"] {
        let img = out_dir.join(format!("{node}.img"));
        for n in [1u64, 2] {
            let (start, len) = our_partition(&img, n);
            let part = tmp.path().join(format!("{node}-p{n}"));
            extract_partition(&img, start, len, &part);
            if n == 1 {
                run_ok(Command::new("fsck.fat").arg("-n").arg(&part));
            } else {
                assert_fsck_clean(&part, &format!("{node} root"));
            }
        }
        assert!(
            dump(&img, 2, "/usr/local/bin/k3s", tmp.path()) == binary,
            "{node}: the binary read back differs from the served one"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&dump(
            &img,
            2,
            "/var/lib/homelab-image/manifest.json",
            tmp.path(),
        ))
        .unwrap();
        let row = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == "/usr/local/bin/k3s")
            .expect("the binary's row");
        assert_eq!(row["kind"], "from-cache");
        assert_eq!(row["sha256"], sha.as_str());
        assert_eq!(row["size"], binary.len());
        assert_eq!(row["mode"], "0755");
    }
    // out/kubeconfig: private, pointing at the first server, trusting the
    // very CA certificate the first server's image holds; the agent's
    // token pins that certificate's SHA-256.
    let kubeconfig = out_dir.join("kubeconfig");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kubeconfig)
        .expect("out/kubeconfig")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let code = "import base64,json,sys,yaml; k=yaml.safe_load(open(sys.argv[1])); \
                c=k['clusters'][0]['cluster']; \
                print(json.dumps([c['server'], base64.b64decode(c['certificate-authority-data']).decode()]))";
    let o = run_ok(
        Command::new("/usr/bin/python3")
            .args(["-c", code])
            .arg(&kubeconfig),
    );
    let (server, ca): (String, String) = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(server, "https://192.168.1.11:6443");
    let on_server = dump(
        &out_dir.join("pi1.img"),
        2,
        "/var/lib/rancher/k3s/server/tls/server-ca.crt",
        tmp.path(),
    );
    assert!(!on_server.is_empty() && on_server == ca.as_bytes());
    server_sans_cover_the_kubeconfig(&out_dir.join("pi1.img"), &kubeconfig, tmp.path());
    let agent_config = String::from_utf8(dump(
        &out_dir.join("pi2.img"),
        2,
        "/etc/rancher/k3s/config.yaml",
        tmp.path(),
    ))
    .unwrap();
    let pin = homelab_image::digest::Sha256::of(&on_server).to_string();
    assert!(
        agent_config.contains(&format!("token: K10{pin}::server:")),
        "{agent_config}"
    );
    assert!(
        dump(
            &out_dir.join("pi2.img"),
            2,
            "/var/lib/rancher/k3s/server/tls/server-ca.key",
            tmp.path()
        )
        .is_empty(),
        "the agent got a CA key"
    );
    // flash's stale check renders the node again with the cached binary
    // and finds the manifest's row the same.
    let profile_ = homelab_image::profile::load(&p).unwrap();
    let ctx = homelab_image::profile::resolve::Context {
        profile_path: p.clone(),
        home: None,
        env: Box::new(|_| None),
    };
    let cluster = homelab_image::profile::resolve(&profile_, &ctx)
        .unwrap()
        .cluster;
    let verdict = homelab_image::flash::current::judge(
        &cluster,
        "pi1",
        &out_dir.join("pi1.img"),
        &out_dir,
        Some(&cache),
    )
    .unwrap();
    assert_eq!(verdict, homelab_image::flash::current::Currency::Current);
    // Without the binary in the cache it cannot tell, and says why.
    let verdict = homelab_image::flash::current::judge(
        &cluster,
        "pi1",
        &out_dir.join("pi1.img"),
        &out_dir,
        Some(&tmp.path().join("empty-cache")),
    )
    .unwrap();
    assert!(
        matches!(&verdict, homelab_image::flash::current::Currency::Unknown(why)
            if why.contains("k3s v1.31.4+k3s1 arm64 binary is not in the cache")),
        "{verdict:?}"
    );
}

#[test]
fn build_without_the_binary_at_hand_or_a_server_fails_and_names_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path());
    let cache = tmp.path().join("cache");
    let out_dir = tmp.path().join("out");
    // A mirror nobody listens on: the port of a server already gone.
    let base = {
        let s = Server::start();
        s.base.clone()
    };
    let out = hi(
        &p,
        &cache,
        &[
            "build",
            "--all",
            "--out",
            out_dir.to_str().unwrap(),
            "--mirror",
            &base,
            "--retries",
            "0",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("getting k3s v1.31.4+k3s1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !out_dir.join("pi1.img").exists() && !out_dir.join("pi2.img").exists(),
        "a refused build left an image"
    );
}

/// The serving certificate k3s makes at the first server's first start
/// carries `node-ip` and every `tls-san` of its config.yaml as SANs and is
/// signed by the server CA in its TLS directory. Made here the same way
/// with openssl from what the image holds, it must verify against the
/// kubeconfig's CA for the kubeconfig's server address (`-verify_ip`), and
/// the kubeconfig's client certificate against the image's client CA as a
/// TLS client.
fn server_sans_cover_the_kubeconfig(img: &Path, kubeconfig: &Path, tmp: &Path) {
    let dir = tmp.join("sans");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = "/var/lib/rancher/k3s/server/tls";
    for name in ["server-ca.crt", "server-ca.key", "client-ca.crt"] {
        std::fs::write(dir.join(name), dump(img, 2, &format!("{tls}/{name}"), tmp)).unwrap();
    }
    std::fs::write(
        dir.join("config.yaml"),
        dump(img, 2, "/etc/rancher/k3s/config.yaml", tmp),
    )
    .unwrap();
    let code = "import base64,ipaddress,sys,yaml; c=yaml.safe_load(open(sys.argv[1])); \
                k=yaml.safe_load(open(sys.argv[2])); u=k['users'][0]['user']; \
                open(sys.argv[3]+'/admin.crt','wb').write(base64.b64decode(u['client-certificate-data'])); \
                open(sys.argv[3]+'/kube-ca.crt','wb').write(base64.b64decode(k['clusters'][0]['cluster']['certificate-authority-data'])); \
                n=[c['node-ip']]+c.get('tls-san',[]); \
                f=lambda s: ('IP:' if all(p.isdigit() for p in s.split('.')) else 'DNS:')+s; \
                print('subjectAltName='+','.join(f(x) for x in n)); \
                print(k['clusters'][0]['cluster']['server'].split('//')[1].split(':')[0], file=sys.stderr)";
    let o = run_ok(
        Command::new("/usr/bin/python3")
            .args(["-c", code])
            .arg(dir.join("config.yaml"))
            .arg(kubeconfig)
            .arg(&dir),
    );
    let san = String::from_utf8(o.stdout).unwrap();
    let host = String::from_utf8(o.stderr).unwrap().trim().to_owned();
    assert!(san.contains(&format!("IP:{host}")), "{san} lacks {host}");
    std::fs::write(
        dir.join("ext"),
        format!("{san}extendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let openssl = |args: &[&str]| run_ok(Command::new("openssl").args(args));
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &p("srv.key"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("srv.key"),
        "-subj",
        "/CN=k3s",
        "-out",
        &p("srv.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("srv.csr"),
        "-CA",
        &p("server-ca.crt"),
        "-CAkey",
        &p("server-ca.key"),
        "-set_serial",
        "9",
        "-days",
        "2",
        "-extfile",
        &p("ext"),
        "-out",
        &p("srv.crt"),
    ]);
    let ok = |args: &[&str]| Command::new("openssl").args(args).output().unwrap();
    let v = ok(&[
        "verify",
        "-CAfile",
        &p("kube-ca.crt"),
        "-verify_ip",
        &host,
        "-purpose",
        "sslserver",
        &p("srv.crt"),
    ]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // The check can fail: an address not among the SANs is refused.
    let v = ok(&[
        "verify",
        "-CAfile",
        &p("kube-ca.crt"),
        "-verify_ip",
        "192.0.2.77",
        &p("srv.crt"),
    ]);
    assert!(!v.status.success());
    let v = ok(&[
        "verify",
        "-CAfile",
        &p("client-ca.crt"),
        "-purpose",
        "sslclient",
        &p("admin.crt"),
    ]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
