//! `pull` of local files: every compression format, broken inputs, the
//! profile's images, and the mistakes a user can make on the command line.

use crate::http_server::Server;
use crate::pull_support::{
    assert_is_fake_image, compress, entries, fake_image, local, ok, pull, pull_loud, sha, stderr,
    xz_image,
};
use crate::util::assert_fails;

#[test]
fn broken_compressed_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let xz = xz_image();
    let trailing_msg = format!(
        "unexpected data after the end of the xz data, at byte {}",
        xz.len()
    );
    let trailing: &[&str] = &[&trailing_msg];
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "truncated.img.xz",
            xz[..xz.len() / 2].to_vec(),
            &[
                "truncated.img.xz: the xz data ends early",
                "truncated file?",
            ],
        ),
        (
            "corrupt.img.xz",
            {
                let mut c = xz.to_vec();
                let mid = c.len() / 2;
                c[mid] ^= 0x55;
                c
            },
            &["corrupt.img.xz: the xz data is corrupt"],
        ),
        (
            "trailing.img.xz",
            [xz, b"garbage!".as_slice()].concat(),
            trailing,
        ),
        (
            "truncated.img.gz",
            {
                let gz = compress(fake_image(), "gz");
                gz[..gz.len() - 100].to_vec()
            },
            &["the gzip data ends early"],
        ),
        (
            "truncated.img.zst",
            {
                let z = compress(fake_image(), "zst");
                z[..z.len() / 2].to_vec()
            },
            &["the zstd data ends early"],
        ),
        ("empty.img", Vec::new(), &["empty.img: the image is empty"]),
    ];
    for (name, bytes, needles) in cases {
        let path = local(dir.path(), name, &bytes);
        let out = pull(cache.path(), &[&path]);
        assert_fails(&out, 1, needles);
        assert!(
            entries(cache.path(), "images").is_empty(),
            "{name} left files"
        );
    }
}

#[test]
fn gzip_zstd_raw_and_single_block_xz_give_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in [
        ("a.img.gz", compress(fake_image(), "gz")),
        ("a.img.zst", compress(fake_image(), "zst")),
        ("a.img", fake_image().to_vec()),
        ("single.img.xz", compress(fake_image(), "xz1")),
    ] {
        let path = local(dir.path(), name, &bytes);
        let out = pull_loud(cache.path(), &[&path, "--sha256", &sha(&bytes)]);
        let p = ok(&out);
        assert_is_fake_image(&p);
        if name == "single.img.xz" {
            assert!(
                stderr(&out).contains("(xz, 1 block, 1 thread)"),
                "{}",
                stderr(&out)
            );
        }
        paths.push(p);
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    // A local file with the wrong checksum is refused.
    let path = local(dir.path(), "b.img.gz", &compress(fake_image(), "gz"));
    let out = pull(cache.path(), &[&path, "--sha256", &"0".repeat(64)]);
    assert_fails(
        &out,
        1,
        &["b.img.gz: checksum mismatch", "expected sha256 0000"],
    );
    // A zstd file over HTTP too.
    let server = Server::start();
    let zst = compress(fake_image(), "zst");
    server.file("/a.img.zst", zst.clone());
    let out = pull(
        cache.path(),
        &[&server.url("/a.img.zst"), "--sha256", &sha(&zst)],
    );
    assert_is_fake_image(&ok(&out));
}

#[test]
fn pull_without_a_source_fetches_what_the_profile_needs() {
    let dir = tempfile::tempdir().unwrap();
    let img = local(dir.path(), "base.img.xz", xz_image());
    let profile = dir.path().join("homelab.yaml");
    std::fs::write(
        &profile,
        format!(
            "defaults: {{allow_no_login: true}}\nnodes:\n  - hostname: n1\n    image: {{os: ubuntu-24.04, path: {img}}}\n    \
             board: rpi4\n    network: {{address: 10.0.0.5/24}}\n  - hostname: n2\n    \
             image: {{os: ubuntu-24.04, path: {img}}}\n    board: rpi4\n    \
             network: {{address: 10.0.0.6/24}}\n"
        ),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = pull(cache.path(), &["--profile", profile.to_str().unwrap()]);
    assert_is_fake_image(&ok(&out));
}

#[test]
fn usage_mistakes_are_explained() {
    let cache = tempfile::tempdir().unwrap();
    assert_fails(
        &pull(cache.path(), &["http://127.0.0.1:9/a.img.xz"]),
        1,
        &["needs its checksum", "--sha256 HEX", "--checksums URL"],
    );
    assert_fails(
        &pull(cache.path(), &["no-such-image"]),
        1,
        &["not a catalog image", "ubuntu-24.04-raspi", "an image file"],
    );
    assert_fails(
        &pull(
            cache.path(),
            &["ubuntu-24.04-raspi", "--sha256", &"0".repeat(64)],
        ),
        1,
        &["is a catalog image"],
    );
    assert_fails(
        &pull(cache.path(), &["http://127.0.0.1:9/a", "--sha256", "xyz"]),
        1,
        &["--sha256", "\"xyz\" is not a SHA-256"],
    );
}

#[test]
fn images_lists_the_catalog() {
    let out = crate::util::hi_ok(&["images"]);
    for name in [
        "ubuntu-24.04-raspi",
        "ubuntu-22.04-raspi",
        "armbian-rpi4b",
        "armbian-rock-5b",
        "armbian-orangepi5",
    ] {
        assert!(out.contains(name), "{out}");
    }
    // The table names the host; --json gives where each entry is looked up.
    assert!(out.contains("cdimage.ubuntu.com") && out.contains("dl.armbian.com"));
    let json = crate::util::hi_ok(&["images", "--json"]);
    assert!(json.contains("https://cdimage.ubuntu.com/releases/24.04/release/"));
    assert!(json.contains("https://dl.armbian.com/rock-5b/Noble_current_minimal"));
}
