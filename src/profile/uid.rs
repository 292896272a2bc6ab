//! Which user ids a profile may pin with `users[].uid`. Some ids are not
//! ids at all: 4294967295 and 65535 are `(uid_t) -1` in 32 and 16 bits,
//! which `chown`, `setresuid` and friends read as "leave unchanged", and
//! 65534 is `nobody`, the id unmapped files show as. 0 is root. Below 1000
//! lie the system accounts (`SYS_UID_MAX` in login.defs), so an id there
//! needs the documented opt-in `system_uid: true`.

/// The first id of the regular users' range (`UID_MIN`).
pub const UID_MIN: u32 = 1000;

/// Why `uid` may not be pinned, or `None` when it may.
pub fn refusal(uid: u32, system_uid: bool) -> Option<String> {
    let why = match uid {
        0 => "is root's".to_owned(),
        u32::MAX | 65535 => {
            "is (uid_t) -1, which the system reads as \"no id\", not a user".to_owned()
        }
        65534 => "is nobody's, the id of files no user owns".to_owned(),
        u if u < UID_MIN && !system_uid => format!(
            "is in the system accounts' range (below {UID_MIN}); set `system_uid: true` \
             beside it if that is what you want"
        ),
        _ => return None,
    };
    Some(format!("uid {uid} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ids_are_refused_even_with_the_opt_in() {
        for uid in [0, 65534, 65535, u32::MAX] {
            assert!(refusal(uid, true).is_some(), "{uid}");
        }
    }

    #[test]
    fn system_ids_need_the_opt_in() {
        assert!(refusal(999, false).unwrap().contains("system_uid: true"));
        assert_eq!(refusal(999, true), None);
        assert_eq!(refusal(1, true), None);
        for uid in [1000, 60000, 65533, 65536, 100_000] {
            assert_eq!(refusal(uid, false), None, "{uid}");
        }
    }
}
