//! Hiding secrets from a person looking at rendered files (`render`
//! without `--show-secrets`): SSH host private keys, the MicroCloud
//! passphrase, the k3s token and CA keys, Wi-Fi passwords, status tokens and users'
//! password hashes.
//!
//! The node is rendered a second time with every secret swapped for a
//! unique stand-in token, and wherever a token shows up the real file is
//! shown as that second rendering with the token replaced by
//! `<secret: N bytes, hidden; --show-secrets to print>`. This finds a
//! secret however a format quotes or escapes it (a Wi-Fi password in
//! YAML), and what is shown is otherwise the real file. As a last guard,
//! any shown file that still holds a secret's text is hidden whole.

use crate::profile::resolved::{Cluster, Passphrase, ResolvedNode};
use crate::profile::state::State;
use crate::render::file_spec::FileSpec;
use crate::render::tree::{TreeError, shown_bytes};
use crate::render::{BaseInfo, RenderError, node_on};

/// What a person is shown for each spec of a rendering, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The bytes shown (`None` for directories, links, edits).
    pub bodies: Vec<Option<Vec<u8>>>,
    /// Whether the spec's real bytes hold a secret.
    pub secret: Vec<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// The marker shown instead of a secret of `len` bytes.
pub fn marker(len: usize) -> String {
    format!("<secret: {len} bytes, hidden; --show-secrets to print>")
}

/// Secrets and their stand-ins, collected while masking.
#[derive(Default)]
struct Tokens {
    /// (token, the real secret)
    pairs: Vec<(String, String)>,
}

impl Tokens {
    /// Replaces `secret` by a fresh token and remembers both. The trailing
    /// `X` keeps one token from being the prefix of another.
    fn mask(&mut self, secret: &mut String) {
        let token = format!("HOMELABSECRET{}X", self.pairs.len());
        let real = std::mem::replace(secret, token.clone());
        self.pairs.push((token, real));
    }
}

/// Copies of the cluster and state with every secret a token.
fn masked(cluster: &Cluster, state: &State) -> (Cluster, State, Tokens) {
    let mut tokens = Tokens::default();
    let mut c = cluster.clone();
    let mut s = state.clone();
    for key in s.host_keys.values_mut() {
        tokens.mask(&mut key.private_openssh);
    }
    for token in s.status_tokens.values_mut() {
        tokens.mask(token);
    }
    if let Some(p) = &mut s.passphrase {
        tokens.mask(p);
    }
    if let Some(k) = &mut s.k3s {
        tokens.mask(&mut k.full_token);
        tokens.mask(&mut k.secret);
        for (_, mode, pem) in &mut k.tls_files {
            // The CA keys; certificates are public.
            if *mode & 0o077 == 0 {
                tokens.mask(pem);
            }
        }
    }
    if let Some(crate::profile::k3s::K3sToken::Known(t)) = c.k3s.as_mut().map(|k| &mut k.token) {
        tokens.mask(t);
    }
    if let Some(Passphrase::Known(p)) = c.microcloud.as_mut().and_then(|m| m.passphrase.as_mut()) {
        tokens.mask(p);
    }
    for n in &mut c.nodes {
        if let Some(p) = n.wifi.as_mut().and_then(|w| w.password.as_mut()) {
            tokens.mask(p);
        }
    }
    (c, s, tokens)
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// What to show for each of `real` (the rendering of `node` with
/// `cluster` and `state`) with the secrets hidden.
pub fn redact(
    node_: &ResolvedNode,
    cluster: &Cluster,
    state: &State,
    base: &BaseInfo,
    real: &[FileSpec],
) -> Result<Redacted, RedactError> {
    let (mc, ms, tokens) = masked(cluster, state);
    // `node_` may carry what the base image decided (uids): render it, with
    // its secrets the masked cluster's tokens, on the same base.
    let stand_in = match mc.node(node_.hostname.as_str()) {
        Some(m) => {
            let mut n = node_.clone();
            n.wifi.clone_from(&m.wifi);
            node_on(&n, &mc, &ms, base)?
        }
        None => Vec::new(),
    };
    // The two renderings line up spec for spec unless a renderer changed
    // its output's shape on a secret's value; then only the guard hides.
    let aligned = stand_in.len() == real.len()
        && stand_in
            .iter()
            .zip(real)
            .all(|(a, b)| a.target == b.target && a.path == b.path);
    // Password hashes are written as they are (a YAML scalar, a shadow
    // field): their text is what is looked for. They are not secrets a
    // token can stand in for (a plaintext is hashed with its salt), but
    // one shown is one an attacker can try to crack offline.
    let hashes: Vec<String> = node_
        .users
        .iter()
        .filter_map(|u| {
            crate::render::cloud_init::password_hash(node_, u, state)
                .ok()
                .flatten()
        })
        .filter(|h| !h.is_empty())
        .collect();
    let mut out = Redacted {
        bodies: Vec::with_capacity(real.len()),
        secret: Vec::with_capacity(real.len()),
    };
    for (i, spec) in real.iter().enumerate() {
        let Some(bytes) = shown_bytes(spec)? else {
            out.bodies.push(None);
            out.secret.push(false);
            continue;
        };
        let masked_bytes = match aligned.then(|| shown_bytes(&stand_in[i])) {
            Some(b) => b?,
            None => None,
        };
        let mut shown = match masked_bytes {
            Some(m) if tokens.pairs.iter().any(|(t, _)| find(&m, t.as_bytes())) => {
                let mut text = String::from_utf8_lossy(&m).into_owned();
                for (token, real) in &tokens.pairs {
                    text = text.replace(token, &marker(real.len()));
                }
                text.into_bytes()
            }
            _ => bytes.clone(),
        };
        if hashes.iter().any(|h| find(&shown, h.as_bytes())) {
            let mut text = String::from_utf8_lossy(&shown).into_owned();
            for h in &hashes {
                text = text.replace(h.as_str(), &marker(h.len()));
            }
            shown = text.into_bytes();
        }
        let holds_secret = tokens
            .pairs
            .iter()
            .any(|(_, real)| find(&bytes, real.as_bytes()))
            || hashes.iter().any(|h| find(&bytes, h.as_bytes()));
        if tokens
            .pairs
            .iter()
            .any(|(_, real)| find(&shown, real.as_bytes()))
        {
            shown = marker(bytes.len()).into_bytes();
            shown.push(b'\n');
        }
        out.secret.push(holds_secret || shown != bytes);
        out.bodies.push(Some(shown));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::resolve::{Context, resolve};
    use crate::profile::state::SeededEntropy;
    use crate::render::node;

    const PROFILE: &str = "
defaults:
  image: {os: armbian}
  board: rock-5b
  network: {gateway: 192.168.1.1}
  wifi: {ssid: lab, password: {value: 'p\"ass: wo#rd'}}
  users:
    - name: alice
      ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs']
      password_hash: $y$j9T$CtIvPx0NL1ALzHlGtupaN0$vuQeLm9qXKbJjm0nHMZ8N5PqgKrzFgl3/oY9LK0JEq8
nodes:
  - hostname: rock1
    network: {address: 192.168.1.21/24}
microcloud:
  initiator: rock1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {generate: true}
";

    fn rendered() -> (Cluster, State, Vec<FileSpec>) {
        let path = std::path::Path::new("/nonexistent/h.yaml");
        let profile = crate::profile::load::parse(path, PROFILE).unwrap();
        let ctx = Context {
            profile_path: path.to_owned(),
            home: None,
            env: Box::new(|_| None),
        };
        let mut cluster = resolve(&profile, &ctx).unwrap().cluster;
        let dir = tempfile::tempdir().unwrap();
        cluster.state_dir = dir.path().join("state");
        let state = State::peek(&cluster, &mut SeededEntropy::new(b"r")).unwrap();
        let specs = node(&cluster.nodes[0], &cluster, &state).unwrap();
        (cluster, state, specs)
    }

    #[test]
    fn secrets_are_hidden_wherever_and_however_they_are_written() {
        let (cluster, state, specs) = rendered();
        let r = redact(
            &cluster.nodes[0],
            &cluster,
            &state,
            &BaseInfo::default(),
            &specs,
        )
        .unwrap();
        let hash = "$y$j9T$CtIvPx0NL1ALzHlGtupaN0$vuQeLm9qXKbJjm0nHMZ8N5PqgKrzFgl3/oY9LK0JEq8";
        assert!(
            specs.iter().any(|s| shown_bytes(s)
                .unwrap()
                .is_some_and(|b| find(&b, hash.as_bytes()))),
            "the hash is not in the rendering: nothing to hide"
        );
        let secrets = [
            state.host_keys["rock1"].private_openssh.clone(),
            state.passphrase.clone().unwrap(),
            "wo#rd".to_owned(),
            hash.to_owned(),
        ];
        let mut hidden = 0;
        for ((spec, body), secret) in specs.iter().zip(&r.bodies).zip(&r.secret) {
            let Some(body) = body else { continue };
            let text = String::from_utf8_lossy(body);
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{}: {text}", spec.path);
            }
            if *secret {
                hidden += 1;
                assert!(text.contains("hidden; --show-secrets to print>"), "{text}");
            } else {
                assert_eq!(Some(body.as_slice()), shown_bytes(spec).unwrap().as_deref());
            }
        }
        // The private key, the preseed, the netplan file and the shadow
        // entries (Armbian: the hash goes into /etc/shadow).
        assert_eq!(hidden, 4, "{:?}", r.secret);
        let key = specs
            .iter()
            .position(|s| s.path == crate::render::ssh_host::KEY_PATH)
            .unwrap();
        let len = state.host_keys["rock1"].private_openssh.len();
        assert_eq!(r.bodies[key].as_deref(), Some(marker(len).as_bytes()));
    }
}
