//! The NoCloud seed for Ubuntu images: `user-data` (`#cloud-config`) and
//! `meta-data`. Only keys cloud-init 22.1 (Ubuntu 22.04's GA version)
//! already knows are used, so the seed works on every 22.04/24.04 image.
//! `network-config` comes from `netplan`.

use serde::Serialize;

use crate::profile::inventory::SudoRule;
use crate::profile::resolved::{ResolvedNode, User, UserPassword};
use crate::profile::state::State;
use crate::render::RenderError;
use crate::render::quirks::{NtpFound, Quirks};
use crate::render::yaml::base64;

#[derive(Debug, Clone, Serialize)]
pub struct UserData {
    pub hostname: String,
    pub fqdn: String,
    pub prefer_fqdn_over_hostname: bool,
    pub preserve_hostname: bool,
    pub manage_etc_hosts: bool,
    pub users: Vec<CloudUser>,
    pub ssh_pwauth: bool,
    pub disable_root: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<CloudKeyboard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp: Option<CloudNtp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_files: Vec<WriteFile>,
    /// Commands cloud-init runs at the end of the first boot (only a
    /// `--seed-only` seed has any: see `render::seed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runcmd: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudUser {
    pub name: String,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gecos: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub shell: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo: Option<String>,
    pub lock_passwd: bool,
    /// `passwd` (not `hashed_passwd`, which 22.1 lacks): applied when the
    /// user is created, which on a fresh image is always.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passwd: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudKeyboard {
    pub layout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudNtp {
    pub enabled: bool,
    /// The client the image has, so that cloud-init configures it rather
    /// than installing its own preference at boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp_client: Option<&'static str>,
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    pub owner: String,
    pub permissions: String,
    /// Files owned by a user the seed creates must wait for the user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub defer: bool,
}

impl WriteFile {
    /// `bytes` as `write_files` content: the text itself, or base64 with
    /// `encoding: b64` when it is not UTF-8.
    pub fn content_of(bytes: &[u8]) -> (String, Option<&'static str>) {
        match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (base64(bytes), Some("b64")),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetaData {
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    #[serde(rename = "local-hostname")]
    pub local_hostname: String,
}

/// The sudoers rule text for a `SudoRule`.
pub fn sudo_rule(rule: SudoRule) -> Option<&'static str> {
    match rule {
        SudoRule::None => None,
        SudoRule::Password => Some("ALL=(ALL:ALL) ALL"),
        SudoRule::Nopasswd => Some("ALL=(ALL) NOPASSWD:ALL"),
    }
}

/// The crypt(3) hash of a user's password, hashing an opted-in plaintext
/// with the salt kept in the state directory.
pub fn password_hash(
    node: &ResolvedNode,
    user: &User,
    state: &State,
) -> Result<Option<String>, RenderError> {
    match &user.password {
        None => Ok(None),
        Some(UserPassword::Hash(h)) => Ok(Some(h.to_string())),
        Some(UserPassword::Plain(plain)) => {
            let salt = state
                .salt(node.hostname.as_str(), user.name.as_str())
                .ok_or_else(|| {
                    RenderError::MissingState(format!(
                        "password salt of {} on {}",
                        user.name, node.hostname
                    ))
                })?;
            let hash = crate::profile::password::hash_sha512(plain, salt)?;
            Ok(Some(hash.to_string()))
        }
    }
}

/// The `ntp` section: the profile's servers for the image's own client.
/// Without a client in the image there is none, so that cloud-init does
/// not install one at boot (the build warns; the first-boot unit's wait
/// for a synchronised clock decides); an image not looked at gets no
/// `ntp_client`, cloud-init's own choice.
fn ntp(node: &ResolvedNode, quirks: &Quirks) -> Option<CloudNtp> {
    if node.ntp.is_empty() {
        return None;
    }
    let ntp_client = match quirks.ntp() {
        NtpFound::Nothing => return None,
        NtpFound::Unknown => None,
        NtpFound::Client(c) => Some(c.name()),
    };
    Some(CloudNtp {
        enabled: true,
        ntp_client,
        servers: node.ntp.iter().map(ToString::to_string).collect(),
    })
}

pub fn user_data(
    node: &ResolvedNode,
    state: &State,
    quirks: &Quirks,
) -> Result<UserData, RenderError> {
    let users = node
        .users
        .iter()
        .map(|u| {
            let passwd = password_hash(node, u, state)?;
            Ok(CloudUser {
                name: u.name.to_string(),
                uid: u.uid,
                gecos: u.gecos.clone(),
                groups: u.groups.iter().map(ToString::to_string).collect(),
                shell: u.shell.to_string(),
                sudo: sudo_rule(u.sudo).map(str::to_owned),
                lock_passwd: passwd.is_none(),
                passwd,
                ssh_authorized_keys: u.ssh_keys.iter().map(ToString::to_string).collect(),
            })
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    let write_files = node
        .files
        .iter()
        .map(|f| {
            let owner = f.owner.as_ref().map_or("root", |o| o.as_str());
            let group = f.group.as_ref().map_or(owner, |g| g.as_str());
            let (content, encoding) = WriteFile::content_of(&f.content);
            WriteFile {
                path: f.path.to_string(),
                content,
                encoding,
                owner: format!("{owner}:{group}"),
                permissions: f.mode.to_string(),
                defer: owner != "root" || group != "root",
            }
        })
        .collect();
    Ok(UserData {
        hostname: node.hostname.to_string(),
        fqdn: node.fqdn(),
        prefer_fqdn_over_hostname: false,
        preserve_hostname: false,
        manage_etc_hosts: true,
        users,
        ssh_pwauth: node.ssh_password_auth,
        disable_root: true,
        timezone: node.timezone.as_ref().map(ToString::to_string),
        locale: node.locale.as_ref().map(ToString::to_string),
        keyboard: node.keyboard.as_ref().map(|k| CloudKeyboard {
            layout: k.layout.to_string(),
            model: k.model.as_ref().map(ToString::to_string),
            variant: k.variant.as_ref().map(ToString::to_string),
            options: k.options.as_ref().map(ToString::to_string),
        }),
        ntp: ntp(node, quirks),
        packages: node.packages.iter().map(ToString::to_string).collect(),
        write_files,
        runcmd: Vec::new(),
    })
}

/// `meta-data`; `digest` is the hash of everything else rendered for the
/// node, so a changed profile is a new instance and cloud-init runs again.
pub fn meta_data(node: &ResolvedNode, digest: &str) -> MetaData {
    MetaData {
        instance_id: format!("homelab-{}-{digest}", node.hostname),
        local_hostname: node.hostname.to_string(),
    }
}
