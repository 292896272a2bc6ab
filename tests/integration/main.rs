//! The one integration-test binary (ripgrep style): every module runs the
//! real `homelab-image` binary and judges its output with tools we did not
//! write (sfdisk, blkid, debugfs, mtools, fsck.fat, e2fsck).

mod bad_input;
mod cli;
mod fat_write;
mod inspect;
mod ls_cat;
mod util;
