//! Feature bits (kernel names) and the writer's gate: which features and
//! states it understands, checked before anything is written.

pub mod compat {
    pub const HAS_JOURNAL: u32 = 0x4;
    pub const DIR_INDEX: u32 = 0x20;
    pub const SPARSE_SUPER2: u32 = 0x200;
}

pub mod incompat {
    pub const COMPRESSION: u32 = 0x1;
    pub const FILETYPE: u32 = 0x2;
    pub const RECOVER: u32 = 0x4;
    pub const JOURNAL_DEV: u32 = 0x8;
    pub const META_BG: u32 = 0x10;
    pub const EXTENTS: u32 = 0x40;
    pub const BIT64: u32 = 0x80;
    pub const MMP: u32 = 0x100;
    pub const FLEX_BG: u32 = 0x200;
    pub const EA_INODE: u32 = 0x400;
    pub const DIRDATA: u32 = 0x1000;
    pub const CSUM_SEED: u32 = 0x2000;
    pub const LARGEDIR: u32 = 0x4000;
    pub const INLINE_DATA: u32 = 0x8000;
    pub const ENCRYPT: u32 = 0x10000;
    pub const CASEFOLD: u32 = 0x20000;
}

pub mod ro_compat {
    pub const SPARSE_SUPER: u32 = 0x1;
    pub const LARGE_FILE: u32 = 0x2;
    pub const BTREE_DIR: u32 = 0x4;
    pub const HUGE_FILE: u32 = 0x8;
    pub const GDT_CSUM: u32 = 0x10;
    pub const DIR_NLINK: u32 = 0x20;
    pub const EXTRA_ISIZE: u32 = 0x40;
    pub const HAS_SNAPSHOT: u32 = 0x80;
    pub const QUOTA: u32 = 0x100;
    pub const BIGALLOC: u32 = 0x200;
    pub const METADATA_CSUM: u32 = 0x400;
    pub const REPLICA: u32 = 0x800;
    pub const READONLY: u32 = 0x1000;
    pub const PROJECT: u32 = 0x2000;
    pub const SHARED_BLOCKS: u32 = 0x4000;
    pub const VERITY: u32 = 0x8000;
    pub const ORPHAN_PRESENT: u32 = 0x10000;
}

/// Incompat features we write correctly; any other bit is refused.
const INCOMPAT_WRITABLE: u32 = incompat::FILETYPE
    | incompat::EXTENTS
    | incompat::BIT64
    | incompat::FLEX_BG
    | incompat::CSUM_SEED;

/// Ro-compat features we keep consistent; any other bit is refused.
const RO_COMPAT_WRITABLE: u32 = ro_compat::SPARSE_SUPER
    | ro_compat::LARGE_FILE
    | ro_compat::BTREE_DIR
    | ro_compat::HUGE_FILE
    | ro_compat::GDT_CSUM
    | ro_compat::DIR_NLINK
    | ro_compat::EXTRA_ISIZE
    | ro_compat::METADATA_CSUM;

/// Why each refused incompat feature is refused, by kernel name.
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (incompat::COMPRESSION, "compression"),
    (incompat::RECOVER, "needs_recovery"),
    (incompat::JOURNAL_DEV, "journal_dev"),
    (incompat::META_BG, "meta_bg"),
    (incompat::MMP, "mmp"),
    (incompat::EA_INODE, "ea_inode"),
    (incompat::DIRDATA, "dirdata"),
    (incompat::LARGEDIR, "large_dir"),
    (incompat::INLINE_DATA, "inline_data"),
    (incompat::ENCRYPT, "encrypt"),
    (incompat::CASEFOLD, "casefold"),
];

const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (ro_compat::HAS_SNAPSHOT, "snapshot"),
    (ro_compat::QUOTA, "quota"),
    (ro_compat::BIGALLOC, "bigalloc"),
    (ro_compat::REPLICA, "replica"),
    (ro_compat::READONLY, "read-only"),
    (ro_compat::PROJECT, "project"),
    (ro_compat::SHARED_BLOCKS, "shared_blocks"),
    (ro_compat::VERITY, "verity"),
    (ro_compat::ORPHAN_PRESENT, "orphan_present"),
];

/// Incompat features the reader (ext4-view 1.0) understands; with any
/// other bit it fails naming only a bit mask (`IncompatibleFeatures(0x20000)`).
const INCOMPAT_READABLE: u32 = incompat::FILETYPE
    | incompat::RECOVER
    | incompat::EXTENTS
    | incompat::BIT64
    | incompat::FLEX_BG
    | incompat::CSUM_SEED
    | incompat::ENCRYPT;

/// jbd2 `s_feature_incompat` bits by e2fsprogs' names.
const JOURNAL_INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "journal_incompat_revoke"),
    (0x2, "journal_64bit"),
    (0x4, "journal_async_commit"),
    (0x8, "journal_checksum_v2"),
    (0x10, "journal_checksum_v3"),
    (0x20, "journal_fast_commit"),
];

/// The names of `bits` from `table`, then any bits it does not know.
fn names(bits: u32, table: &[(u32, &str)], unknown: &str) -> Vec<String> {
    let mut out: Vec<String> = table
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect();
    let known: u32 = table.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if bits & !known != 0 {
        out.push(format!("unknown {unknown} bits {:#x}", bits & !known));
    }
    out
}

/// `Err(reason)` when the reader cannot read a filesystem with these
/// incompat features, each named.
pub fn check_readable(incompat: u32) -> Result<(), String> {
    if incompat & incompat::FILETYPE == 0 {
        return Err(
            "it lacks the filetype feature (file types in directory entries), which \
             the reader needs"
                .into(),
        );
    }
    let bad = incompat & !INCOMPAT_READABLE;
    if bad == 0 {
        return Ok(());
    }
    Err(format!(
        "it uses features the reader does not support: {}",
        names(bad, INCOMPAT_NAMES, "incompat").join(", ")
    ))
}

/// The names of jbd2 incompat feature `bits`, comma-separated.
pub fn journal_feature_names(bits: u32) -> String {
    names(bits, JOURNAL_INCOMPAT_NAMES, "journal incompat").join(", ")
}

/// `Err(reason)` when the feature set contains anything the writer does not
/// keep consistent. `needs_recovery` gets its own, more useful message.
pub fn check_writable(incompat: u32, ro_compat: u32) -> Result<(), String> {
    if incompat & incompat::RECOVER != 0 {
        return Err(
            "its journal needs recovery (the filesystem was not cleanly \
                    unmounted); run `e2fsck -fy` on it, or mount and unmount it"
                .into(),
        );
    }
    if ro_compat & ro_compat::GDT_CSUM != 0 && ro_compat & ro_compat::METADATA_CSUM != 0 {
        return Err("both gdt_csum and metadata_csum are set".into());
    }
    let bad_incompat = incompat & !INCOMPAT_WRITABLE;
    let bad_ro = ro_compat & !RO_COMPAT_WRITABLE;
    if bad_incompat == 0 && bad_ro == 0 {
        return Ok(());
    }
    let mut all = names(bad_incompat, INCOMPAT_NAMES, "incompat");
    all.extend(names(bad_ro, RO_COMPAT_NAMES, "ro_compat"));
    Err(format!(
        "it uses features the writer does not support: {}",
        all.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubuntu_feature_set_is_writable() {
        let inc = incompat::FILETYPE | incompat::EXTENTS | incompat::BIT64 | incompat::FLEX_BG;
        let ro = ro_compat::SPARSE_SUPER
            | ro_compat::LARGE_FILE
            | ro_compat::HUGE_FILE
            | ro_compat::DIR_NLINK
            | ro_compat::EXTRA_ISIZE
            | ro_compat::METADATA_CSUM;
        assert_eq!(check_writable(inc, ro), Ok(()));
    }

    #[test]
    fn the_reader_gate_names_casefold_and_unknown_bits() {
        let ubuntu = incompat::FILETYPE | incompat::EXTENTS | incompat::BIT64 | incompat::FLEX_BG;
        assert_eq!(check_readable(ubuntu | incompat::RECOVER), Ok(()));
        let e = check_readable(ubuntu | incompat::CASEFOLD | 0x100_0000).unwrap_err();
        assert!(e.contains("casefold"), "{e}");
        assert!(e.contains("unknown incompat bits 0x1000000"), "{e}");
        assert!(!e.contains("0x20000"), "{e}");
        let e = check_readable(incompat::EXTENTS).unwrap_err();
        assert!(e.contains("filetype"), "{e}");
        assert_eq!(
            journal_feature_names(0x12),
            "journal_64bit, journal_checksum_v3"
        );
    }

    #[test]
    fn refusals_name_the_feature() {
        let e =
            check_writable(incompat::INLINE_DATA | 0x8000_0000, ro_compat::BIGALLOC).unwrap_err();
        assert!(e.contains("inline_data"), "{e}");
        assert!(e.contains("unknown incompat bits 0x80000000"), "{e}");
        assert!(e.contains("bigalloc"), "{e}");
        let e = check_writable(incompat::RECOVER, 0).unwrap_err();
        assert!(e.contains("needs recovery"), "{e}");
    }
}
