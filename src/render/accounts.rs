//! User accounts for images without cloud-init: the entries a node needs
//! and pure functions that merge them into the image's existing
//! `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow` text at
//! build time. Existing lines are kept byte for byte; a user already
//! present is updated in place; conflicts (a name with another uid, a uid
//! held by another name) are refused rather than guessed. `allocate_uids`
//! gives users without a pinned `uid` the next free one of the image, as
//! `useradd` would (for cloud-init images too, whose `useradd` at boot
//! would otherwise fail on a taken uid).

use thiserror::Error;

use crate::render::file_spec::AccountDb;

/// One account to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUser {
    pub name: String,
    pub uid: u32,
    /// The user's private group has the same id.
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// A crypt(3) hash; `None` means no password login (`*`).
    pub password_hash: Option<String>,
    /// Supplementary groups; missing ones are created as system groups.
    pub groups: Vec<String>,
}

/// The accounts of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountEntries {
    pub users: Vec<AccountUser>,
    /// Existing accounts whose password is replaced by `*` (Armbian ships
    /// root with the well-known password 1234).
    pub lock: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccountError {
    #[error("{db}: user {name} exists with {field} {found}, the profile wants {wanted}")]
    Mismatch {
        db: &'static str,
        name: String,
        field: &'static str,
        found: String,
        wanted: String,
    },
    #[error("{db}: id {id} of {name} is already used by {other}")]
    IdTaken {
        db: &'static str,
        name: String,
        id: u32,
        other: String,
    },
    #[error("{db}: no free system group id below 1000 for group {name}")]
    NoFreeGid { db: &'static str, name: String },
    #[error("{db}: line {line} has too few fields")]
    Malformed { db: &'static str, line: usize },
    #[error("user {name}: {field} {value:?} holds ':' or a control character")]
    Separator {
        name: String,
        field: &'static str,
        value: String,
    },
    #[error("no free uid from {min} to {max} (UID_MIN/UID_MAX) for user {name}")]
    NoFreeUid { name: String, min: u32, max: u32 },
}

/// The profile refuses these at load time; checked again here because a
/// ':' or a newline in any field would forge fields or whole accounts.
fn check_fields(entries: &AccountEntries) -> Result<(), AccountError> {
    for u in &entries.users {
        let hash = u.password_hash.as_deref().unwrap_or("");
        let mut fields = vec![
            ("name", u.name.as_str()),
            ("gecos", &u.gecos),
            ("home", &u.home),
            ("shell", &u.shell),
            ("password hash", hash),
        ];
        fields.extend(u.groups.iter().map(|g| ("group", g.as_str())));
        for (field, value) in fields {
            if value.contains(':') || value.chars().any(char::is_control) {
                return Err(AccountError::Separator {
                    name: u.name.clone(),
                    field,
                    value: value.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A profile user as `allocate_uids` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidRequest {
    pub name: String,
    /// The profile's `uid`, when it pins one.
    pub pinned: Option<u32>,
}

/// How a user's uid was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidReason {
    /// The profile pins it.
    Pinned,
    /// The image already has the user with this uid.
    InImage,
    /// The next free uid, as `useradd` picks it; `above` is the highest
    /// regular uid already in use and its owner, if any.
    NextFree { above: Option<(u32, String)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidChoice {
    pub name: String,
    pub uid: u32,
    pub reason: UidReason,
}

/// `UID_MIN` and `UID_MAX` of a `login.defs` text, with shadow's defaults
/// (1000 and 60000) for what it does not set.
pub fn uid_range(login_defs: Option<&str>) -> (u32, u32) {
    let get = |key: &str, default: u32| {
        login_defs
            .into_iter()
            .flat_map(str::lines)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(key)).then(|| f.next()?.parse::<u32>().ok())?
            })
            // Like shadow's getdef: a key set twice takes the later value.
            .next_back()
            .unwrap_or(default)
    };
    (get("UID_MIN", 1000), get("UID_MAX", 60000))
}

/// Decides every user's uid against the image's `passwd` and `group`:
/// pinned uids are kept (and refused when another account holds them or
/// another group holds the gid of the user's own group); a user the image
/// already has keeps its uid; the others, in order, take the next uid
/// above the highest one in use from `UID_MIN` (the image's and the
/// profile's pinned ones, so a later pinned user is never taken), or the
/// lowest free one when that would pass `UID_MAX`, as `useradd` does — a
/// uid whose number is free as a gid too, so the user's group gets it.
pub fn allocate_uids(
    users: &[UidRequest],
    passwd: &str,
    group: &str,
    login_defs: Option<&str>,
) -> Result<Vec<UidChoice>, AccountError> {
    let pw = Table::parse("/etc/passwd", passwd, 7)?;
    let gr = Table::parse("/etc/group", group, 3)?;
    let (min, max) = uid_range(login_defs);
    // uid -> owner, of the image and of the profile's pinned users.
    let mut used: std::collections::BTreeMap<u32, String> = pw
        .lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f[0].to_owned()))
        })
        .collect();
    for u in users {
        if let Some(uid) = u.pinned {
            if let Some(i) = pw.find(&u.name) {
                let found = pw.id_of(i);
                if found != Some(uid) {
                    return Err(AccountError::Mismatch {
                        db: pw.db,
                        name: u.name.clone(),
                        field: "uid",
                        found: found.map_or_else(|| "none".to_owned(), |x| x.to_string()),
                        wanted: uid.to_string(),
                    });
                }
            } else if let Some(other) = pw.owner_of_id(uid) {
                return Err(AccountError::IdTaken {
                    db: pw.db,
                    name: u.name.clone(),
                    id: uid,
                    other: other.to_owned(),
                });
            }
            if let Some(other) = gr.owner_of_id(uid).filter(|o| *o != u.name) {
                return Err(AccountError::IdTaken {
                    db: gr.db,
                    name: u.name.clone(),
                    id: uid,
                    other: other.to_owned(),
                });
            }
            used.insert(uid, u.name.clone());
        }
    }
    let gid_free = |gid: u32, name: &str| gr.owner_of_id(gid).is_none_or(|o| o == name);
    let mut out = Vec::new();
    for u in users {
        if let Some(uid) = u.pinned {
            out.push(UidChoice {
                name: u.name.clone(),
                uid,
                reason: UidReason::Pinned,
            });
            continue;
        }
        if let Some(uid) = pw.find(&u.name).and_then(|i| pw.id_of(i)) {
            out.push(UidChoice {
                name: u.name.clone(),
                uid,
                reason: UidReason::InImage,
            });
            continue;
        }
        if min > max {
            // A login.defs with UID_MIN above UID_MAX leaves no range.
            return Err(AccountError::NoFreeUid {
                name: u.name.clone(),
                min,
                max,
            });
        }
        let above = used
            .range(min..=max)
            .next_back()
            .map(|(uid, owner)| (*uid, owner.clone()));
        let free = |uid: &u32| !used.contains_key(uid) && gid_free(*uid, &u.name);
        let start = above.as_ref().map_or(min, |(uid, _)| uid.saturating_add(1));
        let uid = (start..=max)
            .find(free)
            .or_else(|| (min..=max).find(free))
            .ok_or_else(|| AccountError::NoFreeUid {
                name: u.name.clone(),
                min,
                max,
            })?;
        used.insert(uid, u.name.clone());
        out.push(UidChoice {
            name: u.name.clone(),
            uid,
            reason: UidReason::NextFree { above },
        });
    }
    Ok(out)
}

/// The lowest id of the range `groupadd -r` uses; system groups we create
/// are allocated downwards from `SYSTEM_GID_MAX`.
const SYSTEM_GID_MIN: u32 = 100;
const SYSTEM_GID_MAX: u32 = 999;

/// A colon-separated account file as lines of fields.
struct Table {
    db: &'static str,
    lines: Vec<String>,
}

impl Table {
    fn parse(db: &'static str, text: &str, min_fields: usize) -> Result<Self, AccountError> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.is_empty() && !l.starts_with('#') && l.split(':').count() < min_fields {
                return Err(AccountError::Malformed { db, line: i + 1 });
            }
        }
        Ok(Self { db, lines })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.split(':').next() == Some(name))
    }

    /// The name on the line whose third field (uid/gid) is `id`.
    fn owner_of_id(&self, id: u32) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            // split always yields a first field, so f[0] exists.
            (f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(id)).then(|| f[0])
        })
    }

    /// `index` always comes from `find`, so it is in bounds (as in
    /// `add_member`, whose field vector is padded before indexing).
    fn id_of(&self, index: usize) -> Option<u32> {
        self.lines[index]
            .split(':')
            .nth(2)
            .and_then(|x| x.parse().ok())
    }

    /// The file text; every line ends in a newline, as the tools expect.
    fn render(self) -> String {
        let mut out = self.lines.join("\n");
        if !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Adds `member` to the comma-separated list in field `field`.
    fn add_member(&mut self, index: usize, field: usize, member: &str) {
        let mut f: Vec<String> = self.lines[index].split(':').map(str::to_owned).collect();
        while f.len() <= field {
            f.push(String::new());
        }
        let mut members: Vec<&str> = f[field].split(',').filter(|m| !m.is_empty()).collect();
        if !members.contains(&member) {
            members.push(member);
        }
        f[field] = members.join(",");
        self.lines[index] = f.join(":");
    }
}

/// Checks that `name` has `id` (or is absent and `id` is free); returns the
/// line index of an existing entry.
fn claim(
    table: &Table,
    name: &str,
    id: u32,
    field: &'static str,
) -> Result<Option<usize>, AccountError> {
    if let Some(i) = table.find(name) {
        let found = table.id_of(i);
        if found != Some(id) {
            return Err(AccountError::Mismatch {
                db: table.db,
                name: name.to_owned(),
                field,
                found: found.map_or_else(|| "none".to_owned(), |x| x.to_string()),
                wanted: id.to_string(),
            });
        }
        return Ok(Some(i));
    }
    if let Some(other) = table.owner_of_id(id) {
        return Err(AccountError::IdTaken {
            db: table.db,
            name: name.to_owned(),
            id,
            other: other.to_owned(),
        });
    }
    Ok(None)
}

fn upsert(table: &mut Table, index: Option<usize>, line: String) {
    match index {
        Some(i) => table.lines[i] = line,
        None => table.lines.push(line),
    }
}

/// Merges users into `/etc/passwd`.
pub fn merge_passwd(existing: &str, entries: &AccountEntries) -> Result<String, AccountError> {
    let mut t = Table::parse("/etc/passwd", existing, 7)?;
    for u in &entries.users {
        let at = claim(&t, &u.name, u.uid, "uid")?;
        let line = format!(
            "{}:x:{}:{}:{}:{}:{}",
            u.name, u.uid, u.gid, u.gecos, u.home, u.shell
        );
        upsert(&mut t, at, line);
    }
    Ok(t.render())
}

/// Merges password hashes into `/etc/shadow` (no hash: `*`, no password
/// login but key logins work; aging fields left empty so nothing expires).
pub fn merge_shadow(existing: &str, entries: &AccountEntries) -> Result<String, AccountError> {
    let mut t = Table::parse("/etc/shadow", existing, 2)?;
    for u in &entries.users {
        let at = t.find(&u.name);
        let hash = u.password_hash.as_deref().unwrap_or("*");
        upsert(&mut t, at, format!("{}:{hash}:::::::", u.name));
    }
    for name in &entries.lock {
        if let Some(i) = t.find(name) {
            let mut f: Vec<&str> = t.lines[i].split(':').collect();
            // Table::parse checked that every shadow line has ≥ 2 fields.
            f[1] = "*";
            t.lines[i] = f.join(":");
        }
    }
    Ok(t.render())
}

/// The gids a group file uses, for allocating new system groups.
fn free_system_gid(t: &Table, name: &str) -> Result<u32, AccountError> {
    (SYSTEM_GID_MIN..=SYSTEM_GID_MAX)
        .rev()
        .find(|gid| t.owner_of_id(*gid).is_none())
        .ok_or_else(|| AccountError::NoFreeGid {
            db: t.db,
            name: name.to_owned(),
        })
}

/// Merges private groups and memberships into `/etc/group`.
pub fn merge_group(existing: &str, entries: &AccountEntries) -> Result<String, AccountError> {
    let mut t = Table::parse("/etc/group", existing, 3)?;
    for u in &entries.users {
        let at = claim(&t, &u.name, u.gid, "gid")?;
        if at.is_none() {
            t.lines.push(format!("{}:x:{}:", u.name, u.gid));
        }
    }
    for u in &entries.users {
        for g in &u.groups {
            let index = match t.find(g) {
                Some(i) => i,
                None => {
                    let gid = free_system_gid(&t, g)?;
                    t.lines.push(format!("{g}:x:{gid}:"));
                    t.lines.len() - 1
                }
            };
            t.add_member(index, 3, &u.name);
        }
    }
    Ok(t.render())
}

/// Merges private groups and memberships into `/etc/gshadow`.
pub fn merge_gshadow(existing: &str, entries: &AccountEntries) -> Result<String, AccountError> {
    let mut t = Table::parse("/etc/gshadow", existing, 4)?;
    for u in &entries.users {
        if t.find(&u.name).is_none() {
            t.lines.push(format!("{}:!::", u.name));
        }
    }
    for u in &entries.users {
        for g in &u.groups {
            let index = t.find(g).unwrap_or_else(|| {
                t.lines.push(format!("{g}:!::"));
                t.lines.len() - 1
            });
            t.add_member(index, 3, &u.name);
        }
    }
    Ok(t.render())
}

impl AccountEntries {
    /// Merges into the existing text of `db`.
    pub fn merge(&self, db: AccountDb, existing: &str) -> Result<String, AccountError> {
        check_fields(self)?;
        match db {
            AccountDb::Passwd => merge_passwd(existing, self),
            AccountDb::Shadow => merge_shadow(existing, self),
            AccountDb::Group => merge_group(existing, self),
            AccountDb::Gshadow => merge_gshadow(existing, self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_in_fields_are_refused_before_merging() {
        let mut e = alice();
        e.users[0].gecos = "x\nroot2::0:0:".into();
        for db in [AccountDb::Passwd, AccountDb::Shadow, AccountDb::Group] {
            assert!(matches!(
                e.merge(db, "root:x:0:0::/root:/bin/sh\n"),
                Err(AccountError::Separator { field: "gecos", .. })
            ));
        }
    }

    fn alice() -> AccountEntries {
        AccountEntries {
            users: vec![AccountUser {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                gecos: "Alice".into(),
                home: "/home/alice".into(),
                shell: "/bin/bash".into(),
                password_hash: None,
                groups: vec!["sudo".into(), "docker".into()],
            }],
            lock: vec!["root".into()],
        }
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nsshd:x:104:65534::/run/sshd:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:bob\nsystemd-journal:x:999:\n";

    #[test]
    fn passwd_appends_and_keeps_existing_lines() {
        let out = merge_passwd(PASSWD, &alice()).unwrap();
        assert_eq!(
            out,
            format!("{PASSWD}alice:x:1000:1000:Alice:/home/alice:/bin/bash\n")
        );
        assert_eq!(merge_passwd(&out, &alice()).unwrap(), out, "idempotent");
    }

    #[test]
    fn passwd_refuses_uid_conflicts() {
        let taken = format!("{PASSWD}armbian:x:1000:1000::/home/armbian:/bin/bash\n");
        assert!(matches!(
            merge_passwd(&taken, &alice()),
            Err(AccountError::IdTaken { .. })
        ));
        let other_uid = format!("{PASSWD}alice:x:1001:1001::/home/alice:/bin/sh\n");
        assert!(matches!(
            merge_passwd(&other_uid, &alice()),
            Err(AccountError::Mismatch { .. })
        ));
    }

    #[test]
    fn shadow_writes_star_without_a_password_and_replaces_in_place() {
        let existing = "root:$6$x$y:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n";
        let out = merge_shadow(existing, &alice()).unwrap();
        assert_eq!(out, "root:*:19000:0:99999:7:::\nalice:*:::::::\n");
    }

    #[test]
    fn group_adds_private_group_memberships_and_missing_system_groups() {
        let out = merge_group(GROUP, &alice()).unwrap();
        assert_eq!(
            out,
            "root:x:0:\nsudo:x:27:bob,alice\nsystemd-journal:x:999:\nalice:x:1000:\ndocker:x:998:alice\n"
        );
        assert_eq!(merge_group(&out, &alice()).unwrap(), out, "idempotent");
    }

    #[test]
    fn gshadow_mirrors_group() {
        let out = merge_gshadow("root:*::\nsudo:*::bob\n", &alice()).unwrap();
        assert_eq!(
            out,
            "root:*::\nsudo:*::bob,alice\nalice:!::\ndocker:!::alice\n"
        );
    }

    #[test]
    fn malformed_lines_are_reported_by_number() {
        assert_eq!(
            merge_passwd("root:x:0:0:root:/root:/bin/bash\nbroken\n", &alice()),
            Err(AccountError::Malformed {
                db: "/etc/passwd",
                line: 2
            })
        );
    }

    fn req(name: &str, pinned: Option<u32>) -> UidRequest {
        UidRequest {
            name: name.into(),
            pinned,
        }
    }

    fn uids(choices: &[UidChoice]) -> Vec<u32> {
        choices.iter().map(|c| c.uid).collect()
    }

    #[test]
    fn unpinned_users_take_the_next_uid_after_the_images_own() {
        let passwd = format!("{PASSWD}armbian:x:1000:1000::/home/armbian:/bin/bash\n");
        let group = format!("{GROUP}armbian:x:1000:\n");
        let got = allocate_uids(
            &[req("alice", None), req("bob", None)],
            &passwd,
            &group,
            None,
        )
        .unwrap();
        assert_eq!(uids(&got), [1001, 1002]);
        assert_eq!(
            got[0].reason,
            UidReason::NextFree {
                above: Some((1000, "armbian".into()))
            }
        );
        // Nothing regular in the image: 1000, 1001, as before.
        let got =
            allocate_uids(&[req("alice", None), req("bob", None)], PASSWD, GROUP, None).unwrap();
        assert_eq!(uids(&got), [1000, 1001]);
        assert_eq!(got[0].reason, UidReason::NextFree { above: None });
    }

    #[test]
    fn login_defs_sets_the_range_and_system_and_nobody_ids_do_not_count() {
        let defs = "# comment\nUID_MIN\t\t\t 2000\nUID_MAX 60000\n";
        assert_eq!(uid_range(Some(defs)), (2000, 60000));
        assert_eq!(uid_range(None), (1000, 60000));
        // nobody (65534) and systemd-network (998) are outside the range.
        let got = allocate_uids(&[req("alice", None)], PASSWD, GROUP, Some(defs)).unwrap();
        assert_eq!(uids(&got), [2000]);
        let bad = "UID_MIN 5000\nUID_MAX 10\n";
        assert!(matches!(
            allocate_uids(&[req("alice", None)], PASSWD, GROUP, Some(bad)),
            Err(AccountError::NoFreeUid { .. })
        ));
    }

    #[test]
    fn pinned_uids_are_reserved_first_and_collisions_refused() {
        // bob (unpinned) comes first but never takes alice's pinned 1000.
        let got = allocate_uids(
            &[req("bob", None), req("alice", Some(1000))],
            PASSWD,
            GROUP,
            None,
        )
        .unwrap();
        assert_eq!(uids(&got), [1001, 1000]);
        assert_eq!(got[1].reason, UidReason::Pinned);
        let passwd = format!("{PASSWD}armbian:x:1000:1000::/home/armbian:/bin/bash\n");
        assert_eq!(
            allocate_uids(&[req("alice", Some(1000))], &passwd, GROUP, None),
            Err(AccountError::IdTaken {
                db: "/etc/passwd",
                name: "alice".into(),
                id: 1000,
                other: "armbian".into()
            })
        );
        let group = format!("{GROUP}media:x:1000:\n");
        assert!(matches!(
            allocate_uids(&[req("alice", Some(1000))], PASSWD, &group, None),
            Err(AccountError::IdTaken {
                db: "/etc/group",
                ..
            })
        ));
    }

    #[test]
    fn a_uid_whose_gid_is_taken_is_skipped_and_existing_users_keep_theirs() {
        let group = format!("{GROUP}media:x:1000:\n");
        let got = allocate_uids(&[req("alice", None)], PASSWD, &group, None).unwrap();
        assert_eq!(uids(&got), [1001]);
        let passwd = format!("{PASSWD}alice:x:1234:1234::/home/alice:/bin/bash\n");
        let got = allocate_uids(&[req("alice", None)], &passwd, GROUP, None).unwrap();
        assert_eq!((got[0].uid, &got[0].reason), (1234, &UidReason::InImage));
    }

    #[test]
    fn past_uid_max_the_lowest_free_uid_is_taken() {
        let passwd = format!("{PASSWD}last:x:1002:1002::/:/bin/sh\n");
        let defs = "UID_MIN 1000\nUID_MAX 1002\n";
        let got = allocate_uids(
            &[req("a", None), req("b", None)],
            &passwd,
            GROUP,
            Some(defs),
        )
        .unwrap();
        assert_eq!(uids(&got), [1000, 1001]);
        assert!(matches!(
            allocate_uids(
                &[req("a", None), req("b", None), req("c", None)],
                &passwd,
                GROUP,
                Some(defs)
            ),
            Err(AccountError::NoFreeUid { .. })
        ));
    }

    #[test]
    fn empty_files_work() {
        assert_eq!(merge_shadow("", &alice()).unwrap(), "alice:*:::::::\n");
    }
}
