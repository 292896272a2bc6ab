//! Configuration written straight into the root file system, for images
//! without cloud-init (Armbian): hostname, hosts, netplan, accounts, home
//! directories with `authorized_keys`, sudo rules, time zone, locale,
//! keyboard, NTP and extra files — what cloud-init's seed does on Ubuntu.

use crate::profile::resolved::ResolvedNode;
use crate::profile::state::State;
use crate::render::RenderError;
use crate::render::accounts::{AccountEntries, AccountUser};
use crate::render::cloud_init::{password_hash, sudo_rule};
use crate::render::file_spec::{AccountDb, FileKind, FileSpec, Target};
use crate::render::netplan;
use crate::render::quirks::{NtpClient, NtpFound, Quirks};
use crate::render::yaml::to_yaml;

pub fn files(
    node: &ResolvedNode,
    state: &State,
    quirks: &Quirks,
) -> Result<Vec<FileSpec>, RenderError> {
    let mut out = Vec::new();
    for path in quirks.files_to_remove() {
        out.push(FileSpec::root_absent(path));
    }
    let host = node.hostname.as_str();
    out.push(FileSpec::root_file(
        "/etc/hostname",
        0o644,
        format!("{host}\n"),
    ));
    out.push(FileSpec::root_file("/etc/hosts", 0o644, hosts(node)));
    let net = to_yaml("netplan", &netplan::document(node, quirks))?;
    // netplan warns about (and future versions refuse) readable files.
    out.push(FileSpec::root_file(quirks.netplan_path(), 0o600, net));
    out.extend(accounts(node, state, quirks)?);
    if let Some(tz) = &node.timezone {
        out.push(FileSpec::root_file(
            "/etc/timezone",
            0o644,
            format!("{tz}\n"),
        ));
        out.push(FileSpec::root_symlink(
            "/etc/localtime",
            &format!("/usr/share/zoneinfo/{tz}"),
        ));
    }
    if let Some(locale) = &node.locale {
        out.push(FileSpec::root_file(
            "/etc/default/locale",
            0o644,
            format!("LANG={locale}\n"),
        ));
    }
    if let Some(k) = &node.keyboard {
        let opt = |v: &Option<crate::profile::ident::XkbName>| {
            v.as_ref().map_or(String::new(), ToString::to_string)
        };
        let text = format!(
            "XKBMODEL=\"{}\"\nXKBLAYOUT=\"{}\"\nXKBVARIANT=\"{}\"\nXKBOPTIONS=\"{}\"\nBACKSPACE=\"guess\"\n",
            k.model
                .as_ref()
                .map_or_else(|| "pc105".to_owned(), ToString::to_string),
            k.layout,
            opt(&k.variant),
            opt(&k.options),
        );
        out.push(FileSpec::root_file("/etc/default/keyboard", 0o644, text));
    }
    out.extend(ntp(node, quirks));
    for f in &node.files {
        let id_of = |name: Option<&str>| {
            node.users
                .iter()
                .find(|u| Some(u.name.as_str()) == name)
                .map_or(0, |u| u.uid)
        };
        let uid = id_of(f.owner.as_ref().map(|o| o.as_str()));
        let gid = f.group.as_ref().map_or(uid, |g| id_of(Some(g.as_str())));
        out.push(
            FileSpec::root_file(f.path.as_str(), f.mode.bits(), f.content.clone())
                .owned_by(uid, gid),
        );
    }
    Ok(out)
}

/// The profile's NTP servers in the configuration of the image's client:
/// a timesyncd drop-in (also when the image was not looked at), a chrony
/// sources file (Debian's chrony.conf reads `sources.d`); nothing for ntpd
/// or an image without a client (the build warns about both).
fn ntp(node: &ResolvedNode, quirks: &Quirks) -> Vec<FileSpec> {
    if node.ntp.is_empty() {
        return Vec::new();
    }
    let servers: Vec<String> = node.ntp.iter().map(ToString::to_string).collect();
    match quirks.ntp() {
        NtpFound::Unknown | NtpFound::Client(NtpClient::SystemdTimesyncd) => vec![
            FileSpec::root_dir("/etc/systemd/timesyncd.conf.d", 0o755),
            FileSpec::root_file(
                "/etc/systemd/timesyncd.conf.d/10-homelab.conf",
                0o644,
                format!("[Time]\nNTP={}\n", servers.join(" ")),
            ),
        ],
        NtpFound::Client(NtpClient::Chrony) => {
            let lines: String = servers
                .iter()
                .map(|s| format!("server {s} iburst\n"))
                .collect();
            vec![
                FileSpec::root_dir("/etc/chrony/sources.d", 0o755),
                FileSpec::root_file("/etc/chrony/sources.d/homelab.sources", 0o644, lines),
            ]
        }
        NtpFound::Client(NtpClient::Ntp) | NtpFound::Nothing => Vec::new(),
    }
}

fn hosts(node: &ResolvedNode) -> String {
    let host = node.hostname.as_str();
    let fqdn = node.fqdn();
    let names = if fqdn == host {
        host.to_owned()
    } else {
        format!("{fqdn} {host}")
    };
    format!(
        "127.0.0.1 localhost\n127.0.1.1 {names}\n\n\
         ::1 localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
    )
}

/// Account entries (merged into the image's files at build time), home
/// directories, `authorized_keys` and sudo rules.
fn accounts(
    node: &ResolvedNode,
    state: &State,
    quirks: &Quirks,
) -> Result<Vec<FileSpec>, RenderError> {
    let mut entries = AccountEntries {
        users: Vec::new(),
        lock: quirks
            .accounts_to_lock()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let mut out = Vec::new();
    for u in &node.users {
        let home = format!("/home/{}", u.name);
        entries.users.push(AccountUser {
            name: u.name.to_string(),
            uid: u.uid,
            gid: u.uid,
            gecos: u.gecos.clone().unwrap_or_default(),
            home: home.clone(),
            shell: u.shell.to_string(),
            password_hash: password_hash(node, u, state)?,
            groups: u.groups.iter().map(ToString::to_string).collect(),
        });
        out.push(FileSpec::root_dir(&home, quirks.home_mode()).owned_by(u.uid, u.uid));
        if !u.ssh_keys.is_empty() {
            let keys: String = u.ssh_keys.iter().map(|k| format!("{k}\n")).collect();
            out.push(FileSpec::root_dir(&format!("{home}/.ssh"), 0o700).owned_by(u.uid, u.uid));
            out.push(
                FileSpec::root_file(&format!("{home}/.ssh/authorized_keys"), 0o600, keys)
                    .owned_by(u.uid, u.uid),
            );
        }
        if let Some(rule) = sudo_rule(u.sudo) {
            out.push(FileSpec::root_file(
                &format!("/etc/sudoers.d/90-homelab-{}", u.name),
                0o440,
                format!("{} {rule}\n", u.name),
            ));
        }
    }
    // Modes/owners here apply only if the image lacks the file; an existing
    // file keeps its own (shadow files are root:shadow 0640 on Debian).
    let specs = [
        (AccountDb::Passwd, "/etc/passwd", 0o644),
        (AccountDb::Shadow, "/etc/shadow", 0o640),
        (AccountDb::Group, "/etc/group", 0o644),
        (AccountDb::Gshadow, "/etc/gshadow", 0o640),
    ];
    let mut db_specs: Vec<FileSpec> = specs
        .into_iter()
        .map(|(db, path, mode)| FileSpec {
            target: Target::Root,
            path: path.to_owned(),
            kind: FileKind::AccountEntries {
                db,
                entries: entries.clone(),
            },
            mode,
            uid: 0,
            gid: 0,
        })
        .collect();
    db_specs.extend(out);
    Ok(db_specs)
}
