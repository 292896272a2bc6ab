//! Writing node images to SD cards and USB disks: which disks there are
//! and what the system uses them for (`devices`, read from sysfs and
//! procfs under a root that tests replace), the safety rules a target must
//! pass (`rules`), whether we may write it (`privileges`), and opening it
//! exclusively with the rules checked again on what was opened
//! (`exclusive`).

pub mod devices;
pub mod exclusive;
pub mod mounts;
pub mod privileges;
pub mod rules;
pub mod sysfs;
