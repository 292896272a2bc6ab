//! How much of a file inside an image we hold in memory at once. A file's
//! size is whatever its inode or directory entry claims — a damaged or
//! hostile image can claim a terabyte — so everything we read whole has a
//! limit, checked against the claimed size before anything is allocated,
//! and everything else (`cat`) is streamed.

/// Configuration files we parse or edit: os-release, passwd, group,
/// shadow, login.defs, cmdline.txt, config.txt, cloud-init's configs, the
/// NoCloud seed, our build manifest. Real ones are a few KiB; 4 MiB leaves
/// room for a very large account database.
pub const PARSED_FILE: u64 = 4 << 20;

/// dpkg's status database (`/var/lib/dpkg/status`), which lists every
/// installed package: a few MiB on a server, more on a desktop.
pub const DPKG_STATUS: u64 = 64 << 20;
