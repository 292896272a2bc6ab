//! Feeds arbitrary bytes to every parser that reads untrusted image data:
//! the MBR/GPT readers, the FAT boot sector and the ext4 superblock. Any
//! panic is a bug: bad input must come back as an error.
#![no_main]

use homelab_image::disk::read_table;
use homelab_image::fs::ext4::Superblock;
use homelab_image::fs::fat::Bpb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let _ = read_table(data, len);
    if data.len() >= 512 {
        let _ = Bpb::parse(&data[..512], len);
    }
    if data.len() >= 2048 {
        let _ = Superblock::parse(&data[1024..2048], len);
    }
});
