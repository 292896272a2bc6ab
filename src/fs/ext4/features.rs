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
    let mut names = Vec::new();
    for (bit, name) in INCOMPAT_NAMES {
        if bad_incompat & bit != 0 {
            names.push((*name).to_string());
        }
    }
    let known: u32 = INCOMPAT_NAMES.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if bad_incompat & !known != 0 {
        names.push(format!(
            "unknown incompat bits {:#x}",
            bad_incompat & !known
        ));
    }
    for (bit, name) in RO_COMPAT_NAMES {
        if bad_ro & bit != 0 {
            names.push((*name).to_string());
        }
    }
    let known: u32 = RO_COMPAT_NAMES.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if bad_ro & !known != 0 {
        names.push(format!("unknown ro_compat bits {:#x}", bad_ro & !known));
    }
    Err(format!(
        "it uses features the writer does not support: {}",
        names.join(", ")
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
