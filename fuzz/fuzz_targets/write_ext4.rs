//! Runs the ext4 writer on mutated filesystem images: a batch that makes a
//! directory, writes files (one large enough for an extent tree), makes
//! both kinds of symlink, fills an existing directory and removes a file.
//! Any panic is a bug: damage must come back as a typed error. Seed the
//! corpus with `fuzz/make-corpus` (small mke2fs images of every shape).
#![no_main]

use std::io::Write;
use std::sync::Arc;

use homelab_image::fs::ext4::{Content, Meta, Op, apply};
use homelab_image::io::{ByteLen, ByteOffset, ByteRange, PartitionWindow};
use libfuzzer_sys::fuzz_target;

fn meta() -> Meta {
    Meta { mode: 0o644, uid: 1, gid: 2, mtime: 1_700_000_000 }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2048 || data.len() > 8 << 20 {
        return;
    }
    let path = std::env::temp_dir().join(format!("write_ext4-{}.img", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(data).unwrap();
    drop(f);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let window = PartitionWindow::new(
        Arc::new(file),
        ByteRange::new(ByteOffset(0), ByteLen(data.len() as u64)).unwrap(),
    );
    let mut ops = vec![
        Op::Mkdir { path: "/etc/new/deeper".into(), meta: meta(), parents: true },
        Op::WriteFile { path: "/etc/hostname".into(), content: Content::Bytes(b"fuzz\n".to_vec()), meta: meta() },
        Op::WriteFile { path: "/big".into(), content: Content::Bytes(vec![0xAB; 300_000]), meta: meta() },
        Op::Symlink { path: "/etc/new/s".into(), target: b"short".to_vec(), meta: meta() },
        Op::Symlink { path: "/etc/new/l".into(), target: vec![b'x'; 120], meta: meta() },
        Op::Remove { path: "/etc/os-release".into(), missing_ok: true },
    ];
    for i in 0..40 {
        ops.push(Op::WriteFile {
            path: format!("/d/added-{i:03}"),
            content: Content::Bytes(vec![]),
            meta: meta(),
        });
    }
    let _ = apply(&window, &ops, 1_700_000_000);
});
