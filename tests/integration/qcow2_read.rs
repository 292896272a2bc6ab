//! qcow2 base images: `qemu-img` makes them from the fixtures (v2, v3,
//! zlib- and zstd-compressed clusters, small clusters, zero clusters) and
//! `pull` must decode each to the source's exact bytes (judged with cmp);
//! broken and unsupported images are refused naming the field or offset,
//! leaving no image in the cache. Offsets to patch are found with the small
//! qcow2 parser below, not the reader under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pull_support::{entries, ok, pull};
use crate::util::{assert_fails, fixture, hi, patch, read_at, run_ok};

fn qemu_img(args: &[&str]) {
    run_ok(Command::new("qemu-img").args(args));
}

fn convert(src: &Path, dst: &Path, opts: &[&str]) -> PathBuf {
    let mut args = vec!["convert", "-O", "qcow2"];
    args.extend_from_slice(opts);
    args.push(src.to_str().unwrap());
    args.push(dst.to_str().unwrap());
    qemu_img(&args);
    dst.to_owned()
}

/// Fails unless `a` and `b` hold the same bytes (`cmp`).
pub(crate) fn cmp(a: &Path, b: &Path) {
    let out = Command::new("cmp").arg(a).arg(b).output().unwrap();
    assert!(
        out.status.success(),
        "{} and {} differ: {}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A 24 MiB image with holes: data at a few scattered places (one not
/// cluster-aligned), explicit zeros written over a range, and a hole at
/// the end.
fn holey_image(dir: &Path) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let path = dir.join("holey.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(24 << 20).unwrap();
    let data = crate::util::garbage(300_000, 7);
    for at in [0u64, 3 << 20, (9 << 20) + 12_345, 17 << 20] {
        f.write_all_at(&data, at).unwrap();
    }
    f.write_all_at(&vec![0u8; 1 << 20], 12 << 20).unwrap();
    path
}

/// What the test needs of a qcow2 file, parsed independently of the reader:
/// its cluster size and every allocated L2 entry.
struct Map {
    cluster_bits: u32,
    l1_offset: u64,
    /// (L2 table offset, L1 index) for allocated L2 tables.
    l2_tables: Vec<(u64, u64)>,
    /// (disk offset, file offset of the entry, entry) for non-zero entries.
    entries: Vec<(u64, u64, u64)>,
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

fn map(path: &Path) -> Map {
    let h = read_at(path, 0, 72);
    assert_eq!(&h[..4], b"QFI\xfb");
    let cluster_bits = be(&h[20..24]) as u32;
    let size = be(&h[24..32]);
    let l1_size = be(&h[36..40]);
    let l1_offset = be(&h[40..48]);
    let cs = 1u64 << cluster_bits;
    let per_l2 = cs / 8;
    let l1 = read_at(path, l1_offset, (l1_size * 8) as usize);
    let mut m = Map {
        cluster_bits,
        l1_offset,
        l2_tables: Vec::new(),
        entries: Vec::new(),
    };
    for (i, e) in l1.chunks(8).enumerate() {
        let l2 = be(e) & 0x00ff_ffff_ffff_fe00;
        if l2 == 0 || i as u64 * per_l2 * cs >= size {
            continue;
        }
        m.l2_tables.push((l2, i as u64));
        let table = read_at(path, l2, cs as usize);
        for (j, e) in table.chunks(8).enumerate() {
            let entry = be(e);
            let disk = (i as u64 * per_l2 + j as u64) * cs;
            if entry != 0 && disk < size {
                m.entries.push((disk, l2 + j as u64 * 8, entry));
            }
        }
    }
    m
}

/// The first standard (uncompressed, allocated, not zero) cluster entry.
fn first_data_entry(m: &Map) -> (u64, u64, u64) {
    *m.entries
        .iter()
        .find(|(_, _, e)| e & (1 << 62) == 0 && e & 0x00ff_ffff_ffff_fe00 != 0 && e & 1 == 0)
        .expect("an allocated data cluster")
}

#[test]
fn qemu_img_qcow2_variants_decode_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // A real image (MBR, FAT boot and ext4 root with files) and one with holes.
    let sources = [fixture("ubuntu-raspi.img"), holey_image(dir.path())];
    let variants: [(&str, &[&str]); 7] = [
        ("v3", &[]),
        ("v2", &["-o", "compat=0.10"]),
        ("zlib", &["-c"]),
        ("zstd", &["-c", "-o", "compression_type=zstd"]),
        ("c4k", &["-o", "cluster_size=4096"]),
        ("c512-zlib", &["-c", "-o", "cluster_size=512"]),
        (
            "c2m-zstd",
            &["-c", "-o", "cluster_size=2M,compression_type=zstd"],
        ),
    ];
    for (s, src) in sources.iter().enumerate() {
        for (name, opts) in variants {
            let q = convert(src, &dir.path().join(format!("{s}-{name}.qcow2")), opts);
            let out = pull(cache.path(), &[q.to_str().unwrap()]);
            let raw = ok(&out);
            cmp(src, &raw);
        }
    }
}

/// Zero clusters (the v3 zero flag, over allocated and unallocated
/// clusters) read as zeros; `qemu-img convert -O raw` is the oracle.
#[test]
fn zero_flag_clusters_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let q = dir.path().join("z.qcow2");
    qemu_img(&["create", "-f", "qcow2", q.to_str().unwrap(), "8M"]);
    run_ok(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -P 0xab 0 6M",
        "-c",
        "write -z 1M 2M",
        "-c",
        "write -z 7M 1M",
        q.to_str().unwrap(),
    ]));
    let m = map(&q);
    assert!(
        m.entries
            .iter()
            .any(|(_, _, e)| e & 1 == 1 && e & 0x00ff_ffff_ffff_fe00 != 0),
        "qemu-io made no allocated zero cluster"
    );
    let want = dir.path().join("z.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        q.to_str().unwrap(),
        want.to_str().unwrap(),
    ]);
    let raw = ok(&pull(cache.path(), &[q.to_str().unwrap()]));
    cmp(&want, &raw);
}

/// Pulls `q`, expects a one-line refusal holding every needle, and no
/// image left in the cache.
fn refused(q: &Path, needles: &[&str]) {
    let cache = tempfile::tempdir().unwrap();
    let out = pull(cache.path(), &[q.to_str().unwrap()]);
    let shown = format!("{}: ", q.display());
    let mut all = vec![shown.as_str()];
    all.extend_from_slice(needles);
    assert_fails(&out, 1, &all);
    assert!(
        entries(cache.path(), "images").is_empty(),
        "{} left {:?}",
        q.display(),
        entries(cache.path(), "images")
    );
}

#[test]
fn truncated_qcow2_files_are_refused_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let q = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("t.qcow2"),
        &[],
    );
    let len = std::fs::metadata(&q).unwrap().len();
    let cut = len / 2;
    let m = map(&q);
    let cs = 1u64 << m.cluster_bits;
    let (disk, _, entry) = *m
        .entries
        .iter()
        .find(|(_, _, e)| (e & 0x00ff_ffff_ffff_fe00) + cs > cut)
        .expect("a cluster past the cut");
    let host = entry & 0x00ff_ffff_ffff_fe00;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&q)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let what = if host >= cut {
        format!(
            "the data cluster of disk byte {disk} at byte {host} of the file lies past its end (the file has {cut} bytes)"
        )
    } else {
        format!(
            "the file ends at byte {cut}, inside the data cluster of disk byte {disk} (bytes {host}..{})",
            host + cs
        )
    };
    refused(&q, &[&what]);
    // Cut inside the header.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&q)
        .unwrap()
        .set_len(50)
        .unwrap();
    refused(
        &q,
        &["the file ends at byte 50, inside the qcow2 header (bytes 0..72)"],
    );
    // A compressed image cut short.
    let c = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("c.qcow2"),
        &["-c"],
    );
    let clen = std::fs::metadata(&c).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&c)
        .unwrap()
        .set_len(clen * 3 / 4)
        .unwrap();
    refused(&c, &["compressed cluster"]);
}

#[test]
fn an_l2_entry_past_the_end_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("p.qcow2"),
        &[],
    );
    let len = std::fs::metadata(&q).unwrap().len();
    let m = map(&q);
    let cs = 1u64 << m.cluster_bits;
    let (disk, at, entry) = first_data_entry(&m);
    let past = len.next_multiple_of(cs) + 16 * cs;
    let patched = (entry & !0x00ff_ffff_ffff_fe00) | past;
    patch(&q, at, &patched.to_be_bytes());
    refused(
        &q,
        &[&format!(
            "the data cluster of disk byte {disk} at byte {past} of the file lies past its end (the file has {len} bytes)"
        )],
    );
    // And an L1 entry naming an L2 table past the end.
    let q = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("l1.qcow2"),
        &[],
    );
    let m = map(&q);
    let (_, index) = m.l2_tables[0];
    let at = m.l1_offset + index * 8;
    let old = be(&read_at(&q, at, 8));
    let patched = (old & !0x00ff_ffff_ffff_fe00) | past;
    patch(&q, at, &patched.to_be_bytes());
    refused(
        &q,
        &[&format!(
            "the L2 table of L1 entry {index} at byte {past} of the file lies past its end"
        )],
    );
}

#[test]
fn backing_files_and_encryption_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("base.qcow2"),
        &[],
    );
    let top = dir.path().join("top.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        "-F",
        "qcow2",
        top.to_str().unwrap(),
    ]);
    refused(
        &top,
        &[&format!(
            "qcow2 with a backing file ({}) cannot be read on its own",
            base.display()
        )],
    );
    for (format, method, name) in [("aes", 1, "AES-CBC"), ("luks", 2, "LUKS")] {
        let q = dir.path().join(format!("{format}.qcow2"));
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=x",
            "-o",
            &format!("encrypt.format={format},encrypt.key-secret=sec0"),
            q.to_str().unwrap(),
            "4M",
        ]);
        refused(
            &q,
            &[&format!(
                "header field crypt_method, byte 32, is {method}: {name}"
            )],
        );
    }
}

#[test]
fn feature_bits_and_bad_header_fields_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("ubuntu-raspi.img");
    let fresh = |name: &str| convert(&src, &dir.path().join(name), &[]);
    // Incompatible feature bits at byte 72 (bit 0 is the lowest of the
    // big-endian u64).
    for (bit, name) in [
        (0u32, "bit 0, dirty"),
        (1, "bit 1, corrupt"),
        (2, "bit 2, external data file"),
        (9, "bit 9, unknown"),
    ] {
        let q = fresh(&format!("bit{bit}.qcow2"));
        let old = be(&read_at(&q, 72, 8));
        patch(&q, 72, &(old | (1 << bit)).to_be_bytes());
        refused(&q, &["header field incompatible_features, byte 72", name]);
    }
    // A real image with extended L2 entries.
    let ext = dir.path().join("ext.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        ext.to_str().unwrap(),
        "4M",
    ]);
    refused(&ext, &["bit 4, extended L2 entries"]);
    // Fields out of range.
    let cases: [(&str, u64, &[u8], &str); 5] = [
        (
            "version",
            4,
            &4u32.to_be_bytes(),
            "qcow2 version 4 (header field version, byte 4)",
        ),
        (
            "bits",
            20,
            &22u32.to_be_bytes(),
            "cluster_bits (byte 20) is 22",
        ),
        (
            "bits8",
            20,
            &8u32.to_be_bytes(),
            "cluster_bits (byte 20) is 8",
        ),
        ("ctype", 104, &[7], "compression_type (byte 104) is 7"),
        (
            "size",
            24,
            &(1u64 << 50).to_be_bytes(),
            "header field size (byte 24) is 1125899906842624 bytes",
        ),
    ];
    for (name, at, bytes, needle) in cases {
        let q = fresh(&format!("{name}.qcow2"));
        patch(&q, at, bytes);
        refused(&q, &[needle]);
    }
    // An L1 table too short for the disk it maps.
    let q = fresh("l1.qcow2");
    patch(&q, 36, &0u32.to_be_bytes());
    refused(
        &q,
        &["header field l1_size (byte 36) is 0 entries: too few"],
    );
}

/// `image.path: x.qcow2` in a profile: `pull` without a source decodes it.
#[test]
fn a_profile_image_path_to_a_qcow2_file_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("ubuntu-raspi.img");
    let q = convert(&src, &dir.path().join("base.qcow2"), &["-c"]);
    let profile = dir.path().join("homelab.yaml");
    std::fs::write(
        &profile,
        format!(
            "defaults: {{allow_no_login: true}}\nnodes:\n  - hostname: n1\n    \
             image: {{os: ubuntu-24.04, path: {}}}\n    board: rpi4\n    \
             network: {{address: 10.0.0.5/24}}\n",
            q.display()
        ),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let raw = ok(&pull(
        cache.path(),
        &["--profile", profile.to_str().unwrap()],
    ));
    cmp(&src, &raw);
}

#[test]
fn inspect_of_a_qcow2_image_says_how_to_pull_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = convert(
        &fixture("ubuntu-raspi.img"),
        &dir.path().join("i.qcow2"),
        &[],
    );
    let shown = q.display().to_string();
    let out = hi(&["inspect", &shown]);
    assert_fails(
        &out,
        1,
        &[
            &format!("{shown}: is a qcow2 image, not a raw disk image"),
            &format!("`homelab-image pull {shown}`"),
        ],
    );
}

/// Random byte flips in the header, the L1 table and the L2 tables of
/// small images (plain and compressed): the reader returns an image or an
/// error, never panics, and stops.
#[test]
fn random_flips_in_qcow2_metadata_never_panic() {
    use homelab_image::source::decompress::{self, DecodeOptions};
    use homelab_image::source::sparse::SparseWriter;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.img");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(3 << 20).unwrap();
        f.write_all_at(&crate::util::garbage(100_000, 3), 5000)
            .unwrap();
        f.write_all_at(&vec![b'a'; 300_000], 2 << 20).unwrap();
    }
    let images = [
        convert(
            &src,
            &dir.path().join("p.qcow2"),
            &["-o", "cluster_size=4096"],
        ),
        convert(
            &src,
            &dir.path().join("z.qcow2"),
            &["-c", "-o", "cluster_size=4096"],
        ),
        convert(
            &src,
            &dir.path().join("s.qcow2"),
            &["-c", "-o", "compression_type=zstd"],
        ),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok_count, mut err_count) = (0, 0);
    for q in &images {
        let original = std::fs::read(q).unwrap();
        let m = map(q);
        let cs = 1u64 << m.cluster_bits;
        let l1_len = 8 * m.l2_tables.iter().map(|(_, i)| i + 1).max().unwrap_or(1);
        let mut regions = vec![(0u64, 112u64), (m.l1_offset, l1_len)];
        regions.extend(m.l2_tables.iter().map(|&(off, _)| (off, cs)));
        for _ in 0..150 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 3 {
                let (start, len) = regions[(next() % regions.len() as u64) as usize];
                let at = (start + next() % len) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
            let path = dir.path().join("fuzz.qcow2");
            std::fs::write(&path, &bytes).unwrap();
            let opts = DecodeOptions {
                threads: 2,
                hash_input: true,
            };
            let mut f = std::fs::File::open(&path).unwrap();
            let result = decompress::plan(&mut f, &opts).and_then(|plan| {
                let out = std::fs::File::create(dir.path().join("fuzz.out")).unwrap();
                let mut w = SparseWriter::new(out);
                decompress::decompress(f, &plan, &opts, &mut w, |_| {})
            });
            match result {
                Ok(_) => ok_count += 1,
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.is_empty());
                    err_count += 1;
                }
            }
        }
    }
    // Both outcomes occur: flips in data-free places decode, others not.
    assert!(
        ok_count > 0 && err_count > 0,
        "ok {ok_count}, errors {err_count}"
    );
}
