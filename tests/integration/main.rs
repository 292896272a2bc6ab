//! The one integration-test binary (ripgrep's habit: one binary, many
//! modules). Every module runs the real `homelab-image` binary or library and
//! judges the output with tools we did not write (sfdisk, blkid, debugfs,
//! mtools, fsck.fat, cloud-init, netplan, systemd-analyze, PyYAML, crypt).

mod bad_input;
mod bmap_dirty;
mod bmap_usage;
mod build;
mod build_safety;
mod build_sums;
mod check_teaches;
mod cli;
mod cp_rm;
mod cp_rm_atomic;
mod ext4_hostile;
mod ext4_support;
mod ext4_write;
mod fat_hostile;
mod fat_write;
mod flash_cmd;
mod flash_devices;
mod flash_fake_sys;
mod flash_rules;
mod flash_write;
mod http_server;
mod image_check;
mod inspect;
mod ls_cat;
mod netboot_dhcp;
mod netboot_http;
mod netboot_http_report;
mod netboot_initramfs;
mod netboot_lower;
mod netboot_nbd;
mod netboot_serve;
mod netboot_tftp;
mod profile_bad;
mod profile_cli;
mod profile_hostile;
mod profile_netboot;
mod profile_rules;
mod profile_support;
mod pull;
mod pull_cache;
mod pull_hostile;
mod pull_local;
mod pull_support;
mod render_golden;
mod render_oracles;
mod secrets_kept;
mod util;
