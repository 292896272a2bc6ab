//! The ext4 writer against the mke2fs feature matrix: fixed trees, large
//! files, a 20,000-entry directory and random trees (proptest), each judged
//! by e2fsck, ext4-view, debugfs and the kernel; refusals and corruptions
//! that must fail cleanly and leave the image untouched.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use homelab_image::fs::ext4::{Content, Meta, Op, Structure, WriteError};
use proptest::prelude::*;

use crate::ext4_support::*;
use crate::util::run_ok;

fn dir(mode: u16, uid: u32, gid: u32) -> Node {
    Node::Dir { mode, uid, gid }
}
fn file(len: usize, seed: u64, mode: u16, uid: u32, gid: u32) -> Node {
    Node::File {
        data: Arc::new(bytes(len, seed)),
        mode,
        uid,
        gid,
    }
}
fn link(target: &str) -> Node {
    Node::Symlink {
        target: target.as_bytes().to_vec(),
        uid: 0,
        gid: 0,
    }
}

fn sha(img: &Path) -> Vec<u8> {
    run_ok(Command::new("sha256sum").arg(img)).stdout
}

/// A tree touching every kind of object and size boundary.
fn fixed_tree(bs: usize) -> Model {
    let mut m = Model::default();
    let n = &mut m.nodes;
    n.insert("/t".into(), dir(0o755, 0, 0));
    n.insert("/t/etc".into(), dir(0o755, 0, 0));
    n.insert("/t/etc/deep".into(), dir(0o700, 1000, 1000));
    n.insert("/t/etc/deep/er".into(), dir(0o750, 1000, 100));
    n.insert("/t/etc/deep/er/est".into(), dir(0o2775, 0, 50));
    for (i, len) in [0, 1, bs - 1, bs, bs + 1, 100_000, 5 << 20]
        .into_iter()
        .enumerate()
    {
        n.insert(format!("/t/etc/f{i}"), file(len, i as u64, 0o644, 0, 0));
    }
    n.insert(
        "/t/etc/deep/er/est/secret".into(),
        file(600, 9, 0o600, 1000, 1000),
    );
    n.insert("/t/etc/deep/suid".into(), file(3000, 10, 0o4755, 0, 0));
    n.insert("/t/big".into(), file(64 << 20, 11, 0o644, 0, 0));
    n.insert("/t/etc/short".into(), link("f1"));
    n.insert("/t/etc/fifty-nine".into(), link(&"s".repeat(59)));
    n.insert("/t/etc/sixty".into(), link(&"l".repeat(60)));
    n.insert(
        "/t/etc/long".into(),
        link(&format!("/{}", "d/".repeat(200))),
    );
    m
}

#[test]
fn matrix_fixed_tree_then_replacements_and_removals() {
    let tmp = tempfile::tempdir().unwrap();
    for cfg in CONFIGS {
        let img = mkfs(tmp.path(), cfg);
        let bs = block_size(&img);
        let mut model = fixed_tree(bs);
        write(&img, &model.ops()).unwrap_or_else(|e| panic!("{}: {e}", cfg.name));
        assert_matches(&img, &model, "/t", tmp.path(), cfg.name);

        // Second batch: replace files shorter and longer, swap a symlink
        // for a file and a file for a symlink, remove some, add more.
        let mut ops = Vec::new();
        let mut put = |m: &mut Model, path: &str, node: Node| {
            ops.push(op_for(path, &node));
            m.nodes.insert(path.into(), node);
        };
        put(&mut model, "/t/etc/f6", file(10, 60, 0o640, 7, 8));
        put(&mut model, "/t/etc/f1", file(3 << 20, 61, 0o644, 0, 0));
        put(&mut model, "/t/etc/short", file(5, 62, 0o644, 0, 0));
        put(&mut model, "/t/etc/f0", link("/etc/hostname"));
        put(&mut model, "/t/new", dir(0o755, 0, 0));
        put(&mut model, "/t/new/x", file(bs * 3, 63, 0o644, 0, 0));
        for p in ["/t/etc/f2", "/t/etc/long", "/t/big"] {
            ops.push(Op::Remove {
                path: p.into(),
                missing_ok: false,
            });
            model.nodes.remove(p);
        }
        write(&img, &ops).unwrap_or_else(|e| panic!("{} (second batch): {e}", cfg.name));
        assert_matches(
            &img,
            &model,
            "/t",
            tmp.path(),
            &format!("{} second batch", cfg.name),
        );
        let _ = std::fs::remove_file(&img);
    }
}

fn block_size(img: &Path) -> usize {
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Block size:")).unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// 20,000 entries in one directory, in two batches so the second grows the
/// index the first built: htree leaf splits and, with 1 KiB blocks, a
/// second index level; with ^dir_index a long linear directory.
#[test]
fn twenty_thousand_entries_in_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["ubuntu-24.04", "1k-blocks", "no-dir-index", "32bit"] {
        let cfg = config(name);
        let img = tmp.path().join("big-dir.ext4");
        let _ = std::fs::remove_file(&img);
        run_ok(
            Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-N", "24000"])
                .args(cfg.mkfs)
                .arg(&img)
                .arg("160M"),
        );
        let mut model = Model::default();
        model.nodes.insert("/t".into(), dir(0o755, 0, 0));
        write(&img, &model.ops()).unwrap();
        for half in 0..2 {
            let mut ops = Vec::new();
            for i in half * 10_000..(half + 1) * 10_000 {
                let path = format!("/t/entry-{i:05}-{}", "n".repeat(i % 40));
                let node = if i % 1000 == 7 {
                    file(i, i as u64, 0o644, 0, 0)
                } else {
                    file(0, 0, 0o644, 0, 0)
                };
                ops.push(op_for(&path, &node));
                model.nodes.insert(path, node);
            }
            write(&img, &ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_fsck_clean(
                &img,
                &format!("{name}: after {} entries", (half + 1) * 10_000),
            );
        }
        if name != "no-dir-index" {
            let out = run_ok(
                Command::new("debugfs")
                    .arg("-R")
                    .arg("htree_dump /t")
                    .arg(&img),
            );
            let dump = String::from_utf8_lossy(&out.stdout);
            let levels = dump
                .lines()
                .find(|l| l.contains("Indirect levels:"))
                .unwrap_or_default()
                .to_string();
            if name == "1k-blocks" {
                assert!(levels.contains("Indirect levels: 1"), "{name}: {levels}");
            } else {
                assert!(levels.contains("Indirect levels: 0"), "{name}: {levels}");
            }
        }
        assert_matches(&img, &model, "/t", tmp.path(), name);
    }
}

/// Random trees: nested directories, files of random sizes, both kinds of
/// symlink, replaced files, removals — over two batches.
#[derive(Debug, Clone)]
enum Action {
    Mkdir(Vec<u8>),
    Write(Vec<u8>, usize, u64, u16, u32),
    Symlink(Vec<u8>, usize),
    Remove(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let path = prop::collection::vec(0u8..5, 1..4);
    let size = prop_oneof![
        4 => 0usize..64,
        4 => 0usize..9000,
        2 => 0usize..300_000,
        1 => 0usize..3_000_000,
    ];
    prop_oneof![
        2 => path.clone().prop_map(Action::Mkdir),
        5 => (path.clone(), size, any::<u64>(), prop_oneof![Just(0o644u16), Just(0o600), Just(0o755)], 0u32..3)
            .prop_map(|(p, s, seed, m, o)| Action::Write(p, s, seed, m, o)),
        2 => (path, prop_oneof![1usize..60, 60usize..400]).prop_map(|(p, l)| Action::Symlink(p, l)),
        1 => any::<usize>().prop_map(Action::Remove),
    ]
}

const NAMES: [&str; 5] = ["a", "bb", "config.d", "a-rather-longer-name-for-slack", "z"];

fn path_of(p: &[u8]) -> String {
    let mut s = "/t".to_string();
    for c in p {
        s.push('/');
        s.push_str(NAMES[*c as usize]);
    }
    s
}

/// Interprets `actions` against the model, emitting ops only for what is
/// valid (parents are directories, no file over a directory).
fn interpret(model: &mut Model, actions: &[Action]) -> Vec<Op> {
    let mut ops = Vec::new();
    for a in actions {
        let (path, node) = match a {
            Action::Mkdir(p) => (path_of(p), dir(0o755, 0, 0)),
            Action::Write(p, len, seed, mode, owner) => (
                path_of(p),
                file(*len, *seed, *mode, 1000 * owner, 1000 * owner),
            ),
            // Components stay under 255 bytes, as ext4-view (and POSIX) want.
            Action::Symlink(p, len) => {
                let target: String = (0..*len)
                    .map(|i| if i % 50 == 49 { '/' } else { 't' })
                    .collect();
                (path_of(p), link(&target))
            }
            Action::Remove(i) => {
                let files: Vec<String> = model
                    .nodes
                    .iter()
                    .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
                    .map(|(p, _)| p.clone())
                    .collect();
                if files.is_empty() {
                    continue;
                }
                let p = files[i % files.len()].clone();
                model.nodes.remove(&p);
                ops.push(Op::Remove {
                    path: p,
                    missing_ok: false,
                });
                continue;
            }
        };
        // Every ancestor must be (or become) a directory.
        let mut anc = Vec::new();
        let mut cur = parent(&path).to_string();
        while cur != "/t" && cur != "/" {
            anc.push(cur.clone());
            cur = parent(&cur).to_string();
        }
        if anc.iter().any(|a| {
            model
                .nodes
                .get(a)
                .is_some_and(|n| !matches!(n, Node::Dir { .. }))
        }) {
            continue;
        }
        match (model.nodes.get(&path), &node) {
            (Some(Node::Dir { .. }), Node::Dir { .. }) => {}
            (Some(Node::Dir { .. }), _) => continue,
            (Some(_), Node::Dir { .. }) => continue,
            _ => {}
        }
        for a in anc.into_iter().rev() {
            if let std::collections::btree_map::Entry::Vacant(slot) = model.nodes.entry(a) {
                let d = dir(0o755, 0, 0);
                ops.push(op_for(slot.key(), &d));
                slot.insert(d);
            }
        }
        ops.push(op_for(&path, &node));
        model.nodes.insert(path, node);
    }
    ops
}

fn random_trees(cfg_name: &str, cases: u32) {
    let cfg = config(cfg_name);
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(action(), 1..40),
        prop::collection::vec(action(), 1..25),
    );
    runner
        .run(&strategy, |(first, second)| {
            let img = mkfs(tmp.path(), cfg);
            let mut model = Model::default();
            model.nodes.insert("/t".into(), dir(0o755, 0, 0));
            let mut ops = vec![op_for("/t", &dir(0o755, 0, 0))];
            ops.extend(interpret(&mut model, &first));
            write(&img, &ops).map_err(|e| TestCaseError::fail(format!("{cfg_name}: {e}")))?;
            assert_fsck_clean(&img, cfg_name);
            let ops = interpret(&mut model, &second);
            write(&img, &ops)
                .map_err(|e| TestCaseError::fail(format!("{cfg_name} second batch: {e}")))?;
            assert_matches(&img, &model, "/t", tmp.path(), cfg_name);
            Ok(())
        })
        .unwrap();
}

macro_rules! random_tree_tests {
    ($($fn:ident => $cfg:expr),* $(,)?) => {$(
        #[test]
        fn $fn() {
            random_trees($cfg, 6);
        }
    )*};
}

random_tree_tests! {
    random_trees_ubuntu_2404 => "ubuntu-24.04",
    random_trees_ubuntu_2510 => "ubuntu-25.10",
    random_trees_no_metadata_csum => "no-metadata-csum",
    random_trees_no_checksums => "no-checksums",
    random_trees_32bit => "32bit",
    random_trees_1k_blocks => "1k-blocks",
    random_trees_2k_blocks => "2k-blocks",
    random_trees_no_flex_bg => "no-flex-bg",
    random_trees_inode_128 => "inode-128",
    random_trees_few_inodes => "few-inodes",
    random_trees_no_dir_index => "no-dir-index",
}

fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: NOW,
    }
}

fn put(path: &str, data: &[u8]) -> Op {
    Op::WriteFile {
        path: path.into(),
        content: Content::Bytes(data.to_vec()),
        meta: meta(),
    }
}

/// A refused or failed batch changes no byte of the image.
fn assert_refused(img: &Path, ops: &[Op], want: &str) {
    let before = sha(img);
    let err = write(img, ops).expect_err("the batch must fail");
    let msg = err.to_string();
    assert!(msg.contains(want), "expected {want:?} in: {msg}");
    assert_eq!(sha(img), before, "a failed batch changed the image ({msg})");
}

#[test]
fn unsupported_features_and_states_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["-O", "inline_data"], "inline_data"),
        (&["-O", "encrypt"], "encrypt"),
        (&["-O", "casefold"], "casefold"),
        (&["-O", "bigalloc", "-C", "16384"], "bigalloc"),
        (&["-O", "meta_bg,^resize_inode"], "meta_bg"),
        (&["-O", "quota"], "quota"),
    ];
    for (args, want) in cases {
        let img = tmp.path().join("f.ext4");
        let _ = std::fs::remove_file(&img);
        run_ok(
            Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4"])
                .args(*args)
                .arg(&img)
                .arg("32M"),
        );
        assert_refused(&img, &[put("/x", b"x")], want);
    }
    // A journal that needs recovery.
    let img = mkfs(tmp.path(), config("ubuntu-24.04"));
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R", "feature needs_recovery"])
            .arg(&img),
    );
    assert_refused(&img, &[put("/x", b"x")], "needs recovery");
}

#[test]
fn running_out_of_space_or_inodes_says_how_much() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(tmp.path(), config("ubuntu-24.04"));
    let big = Op::WriteFile {
        path: "/big".into(),
        content: Content::Bytes(vec![7; 200 << 20]),
        meta: meta(),
    };
    assert_refused(
        &img,
        &[big],
        "not enough free blocks in the ext4 filesystem: 51",
    );
    let img = mkfs(tmp.path(), config("few-inodes"));
    let many: Vec<Op> = (0..400).map(|i| put(&format!("/f{i}"), b"")).collect();
    assert_refused(
        &img,
        &many,
        "not enough free inodes in the ext4 filesystem: 400 needed, 181 free",
    );
}

#[test]
fn a_failing_operation_late_in_a_batch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(tmp.path(), config("ubuntu-24.04"));
    write(&img, &[put("/file", b"x")]).unwrap();
    let ops = vec![
        put("/a", &bytes(100_000, 1)),
        Op::Mkdir {
            path: "/d/e".into(),
            meta: meta(),
            parents: true,
        },
        put("/file/under-a-file", b"no"),
    ];
    assert_refused(&img, &ops, "is not a directory");
    assert_refused(&img, &[put("/missing/dir/f", b"")], "does not exist");
    assert_refused(
        &img,
        &[Op::Remove {
            path: "/nope".into(),
            missing_ok: false,
        }],
        "no such file",
    );
    assert_refused(&img, &[put("/lost+found", b"")], "is a directory");
    assert_fsck_clean(&img, "after refusals");
}

/// Corrupts one field and expects a typed error naming the structure.
fn corrupt_and_expect(
    cfg: &str,
    setup: &[Op],
    patch: impl Fn(&Path),
    want: fn(&Structure) -> bool,
    label: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(tmp.path(), config(cfg));
    write(&img, setup).unwrap();
    patch(&img);
    let before = sha(&img);
    match write(&img, &[put("/t/new", b"x")]) {
        Err(WriteError::Corrupt { structure, why }) => {
            assert!(
                want(&structure),
                "{label} on {cfg}: wrong structure {structure} ({why})"
            );
            let msg = WriteError::Corrupt { structure, why }.to_string();
            assert!(msg.contains("is corrupt"), "{msg}");
        }
        Err(WriteError::Superblock(e)) => assert!(label == "superblock", "{label} on {cfg}: {e}"),
        other => panic!("{label} on {cfg}: expected a corruption error, got {other:?}"),
    }
    assert_eq!(sha(&img), before);
}

fn debugfs_num(img: &Path, req: &str) -> u64 {
    let out = run_ok(Command::new("debugfs").arg("-R").arg(req).arg(img));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

fn poke(img: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn single_field_corruptions_name_the_structure() {
    let setup: Vec<Op> = std::iter::once(Op::Mkdir {
        path: "/t".into(),
        meta: meta(),
        parents: false,
    })
    .chain((0..300).map(|i| put(&format!("/t/file-with-a-long-name-{i:04}"), b"")))
    .collect();
    for cfg in ["ubuntu-24.04", "no-checksums"] {
        // Superblock: s_inodes_per_group no longer matches s_inodes_count.
        corrupt_and_expect(
            cfg,
            &setup,
            |img| poke(img, 1024 + 0x28, &[0x08, 0, 0, 0]),
            |_| true,
            "superblock",
        );
        // Group descriptor 0: its inode table pointer past the end.
        corrupt_and_expect(
            cfg,
            &setup,
            |img| {
                let bs = block_size(img) as u64;
                let gdt = if bs == 1024 { 2048 } else { bs };
                poke(img, gdt + 8, &[0xFF, 0xFF, 0xFF, 0x0F]);
            },
            |s| matches!(s, Structure::GroupDescriptor { group: 0 }),
            "descriptor",
        );
        // The root inode's extent header magic.
        corrupt_and_expect(
            cfg,
            &setup,
            |img| {
                let bs = block_size(img) as u64;
                let out = run_ok(Command::new("debugfs").arg("-R").arg("imap <2>").arg(img));
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                // "Inode 2 is part of block group 0\n\tlocated at block N, offset 0xOFF"
                let block: u64 = text
                    .split("located at block ")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                let off = u64::from_str_radix(text.split("offset 0x").nth(1).unwrap().trim(), 16)
                    .unwrap();
                poke(img, block * bs + off + 0x28, &[0, 0]);
            },
            |s| {
                matches!(
                    s,
                    Structure::Inode { ino: 2 } | Structure::ExtentHeader { ino: 2, .. }
                )
            },
            "inode",
        );
        // A directory block of /t: a record length that runs off the block.
        corrupt_and_expect(
            cfg,
            &setup,
            |img| {
                let bs = block_size(img) as u64;
                let blk = debugfs_num(img, "bmap /t 1");
                poke(img, blk * bs + 4, &[0xF0, 0xFF]);
            },
            |s| {
                matches!(
                    s,
                    Structure::DirectoryBlock { .. } | Structure::HtreeNode { .. }
                )
            },
            "directory block",
        );
        // The htree root of /t: its limit.
        corrupt_and_expect(
            cfg,
            &setup,
            |img| {
                let bs = block_size(img) as u64;
                let blk = debugfs_num(img, "bmap /t 0");
                poke(img, blk * bs + 0x20, &[0x01, 0x00]);
            },
            |s| matches!(s, Structure::HtreeNode { lblk: 0, .. }),
            "htree node",
        );
    }
}

/// Directories indexed by other writers — e2fsck's `-D` rebuild and the
/// kernel — accept our inserts and removals (their dx blocks and checksums
/// are read as the kernel wrote them, not as we would).
#[test]
fn inserting_into_htrees_built_by_e2fsck_and_the_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(seed_dir.join("d")).unwrap();
    for i in 0..600 {
        std::fs::write(
            seed_dir.join(format!("d/existing-file-{i:04}")),
            format!("{i}"),
        )
        .unwrap();
    }
    for (name, cfg) in [
        ("e2fsck -D", "ubuntu-24.04"),
        ("e2fsck -D 1k", "1k-blocks"),
        ("kernel", "ubuntu-25.10"),
    ] {
        let img = tmp.path().join("pre.ext4");
        let _ = std::fs::remove_file(&img);
        let c = config(cfg);
        // The kernel only indexes directories it grows itself.
        let mut mk = Command::new("mke2fs");
        mk.args(["-q", "-F", "-t", "ext4"]);
        if name != "kernel" {
            mk.arg("-d").arg(&seed_dir);
        }
        run_ok(mk.args(c.mkfs).arg(&img).arg("64M"));
        if !c.tune.is_empty() {
            run_ok(Command::new("tune2fs").args(c.tune).arg(&img));
        }
        let mut model = Model::default();
        model.nodes.insert("/d".into(), dir(0o755, 0, 0));
        for i in 0..600 {
            model.nodes.insert(
                format!("/d/existing-file-{i:04}"),
                Node::File {
                    data: Arc::new(format!("{i}").into_bytes()),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            );
        }
        if name == "kernel" {
            if let Err(why) = can_loop_mount() {
                eprintln!("skipping the kernel-built htree: {why}");
                continue;
            }
            let mnt = tmp.path().join("mnt");
            std::fs::create_dir_all(&mnt).unwrap();
            run_ok(
                Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&img)
                    .arg(&mnt),
            );
            std::fs::create_dir(mnt.join("d")).unwrap();
            for i in 0..600 {
                std::fs::write(mnt.join(format!("d/existing-file-{i:04}")), format!("{i}"))
                    .unwrap();
                std::fs::write(mnt.join(format!("d/kernel-made-{i:04}")), "k").unwrap();
                model.nodes.insert(
                    format!("/d/kernel-made-{i:04}"),
                    Node::File {
                        data: Arc::new(b"k".to_vec()),
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                    },
                );
            }
            run_ok(Command::new("umount").arg(&mnt));
        } else {
            let out = Command::new("e2fsck")
                .arg("-fyD")
                .arg(&img)
                .output()
                .unwrap();
            assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fyD failed");
        }
        let dump = String::from_utf8_lossy(
            &run_ok(
                Command::new("debugfs")
                    .arg("-R")
                    .arg("htree_dump /d")
                    .arg(&img),
            )
            .stdout,
        )
        .to_string();
        assert!(
            dump.contains("Root node dump"),
            "{name}: /d is not indexed:\n{dump}"
        );
        // Our batch: 1500 inserts and 100 removals in the foreign htree.
        let mut ops = Vec::new();
        for i in 0..1500 {
            let path = format!("/d/ours-{i:05}");
            let node = file(i % 50, i as u64, 0o644, 0, 0);
            ops.push(op_for(&path, &node));
            model.nodes.insert(path, node);
        }
        for i in (0..600).step_by(6) {
            let path = format!("/d/existing-file-{i:04}");
            ops.push(Op::Remove {
                path: path.clone(),
                missing_ok: false,
            });
            model.nodes.remove(&path);
        }
        write(&img, &ops).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_matches(&img, &model, "/d", tmp.path(), name);
    }
}
