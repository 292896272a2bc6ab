//! The EEPROM section format (`firmware::eeprom`) against images made by
//! an independent writer, `scripts/lib/eeprom-fixture.py` (the real
//! section layout of Raspberry Pi's releases: a Pi 4 image with
//! bootconf.txt last, one with a file after it, a Pi 5 A/B image), whose
//! own section walker and bootconf.txt reader judge what we write.
//! Replacing bootconf.txt must change only that section and its padding;
//! `firmware show` must read the preset back; damaged images are refused
//! naming the offset.

use std::path::Path;
use std::process::Command;

use homelab_image::firmware::{self, eeprom::Eeprom};

use crate::util::{assert_fails, fixture, hi, hi_ok, patch, stdout_of};

const FIXTURES: [&str; 3] = [
    "pieeprom-2711.bin",
    "pieeprom-2711-mid.bin",
    "pieeprom-2712.bin",
];

fn oracle() -> Command {
    let mut c = Command::new("python3");
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/eeprom-fixture.py"));
    c
}

/// (offset, magic, length, name) of each section, by the oracle's walker.
fn oracle_sections(path: &Path) -> Vec<(usize, u32, usize, String)> {
    stdout_of(oracle().arg("sections").arg(path))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            (
                f[0].parse().unwrap(),
                u32::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap(),
                f[2].parse().unwrap(),
                f.get(3).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn oracle_bootconf(path: &Path) -> Vec<u8> {
    crate::util::run_ok(oracle().arg("bootconf").arg(path)).stdout
}

/// Where bootconf.txt's section starts and where what follows it must be
/// kept from: the next section that is not padding, else the end of the
/// region the file may use (before the reserved last 4 KiB; partition A's
/// end, 64 KiB + 988 KiB, in an A/B image), by the oracle's walk.
pub(crate) fn region(path: &Path, len: usize) -> (usize, usize) {
    let s = oracle_sections(path);
    let i = s.iter().position(|x| x.3 == "bootconf.txt").unwrap();
    let ab = s.iter().any(|x| x.3 == "bootsys");
    let end = if ab { (64 + 988) * 1024 } else { len - 4096 };
    let next = s[i + 1..]
        .iter()
        .find(|x| x.1 != 0x55aa_feef)
        .map_or(end, |x| x.0.min(end));
    (s[i].0, next)
}

#[test]
fn replacing_bootconf_changes_only_its_section_and_padding() {
    let tmp = tempfile::tempdir().unwrap();
    let preset = firmware::preset("boot-usb-sd")
        .unwrap()
        .conf_text
        .as_bytes();
    // Longer and shorter than the fixtures' own configuration (about 50
    // bytes): a shorter one must leave none of the old text behind.
    for conf in [preset, b"[all]\nBOOT_ORDER=0xf14\n".as_slice()] {
        for name in FIXTURES {
            let src = fixture(name);
            let old = std::fs::read(&src).unwrap();
            let (start, next) = region(&src, old.len());
            let new = Eeprom::parse(old.clone())
                .unwrap()
                .with_bootconf(conf)
                .unwrap()
                .into_bytes();
            let out = tmp.path().join(name);
            std::fs::write(&out, &new).unwrap();
            assert_eq!(new.len(), old.len(), "{name}");
            assert!(
                new[..start] == old[..start],
                "{name}: bytes before bootconf.txt changed"
            );
            assert!(
                new[next..] == old[next..],
                "{name}: bytes from {next:#x} on changed"
            );
            assert_eq!(oracle_bootconf(&out), conf, "{name}");
            // Between the new data and `next`: 0xff, or one padding
            // section of 0xff that ends exactly at `next`.
            let data_end = start + 24 + conf.len();
            let after = oracle_sections(&out);
            let i = after.iter().position(|x| x.3 == "bootconf.txt").unwrap();
            let mut at = data_end.div_ceil(8) * 8;
            assert!(new[data_end..at].iter().all(|&b| b == 0xff), "{name}");
            if let Some(pad) = after.get(i + 1).filter(|x| x.0 < next) {
                assert_eq!(pad.1, 0x55aa_feef, "{name}: {pad:?}");
                assert_eq!((pad.0, pad.0 + 8 + pad.2), (at, next), "{name}");
                at += 8;
            }
            assert!(
                new[at..next].iter().all(|&b| b == 0xff),
                "{name}: stale bytes after the new bootconf.txt"
            );
            // The same sections as before, except bootconf.txt's length.
            let before = oracle_sections(&src);
            let kept = |v: &[(usize, u32, usize, String)]| -> Vec<(usize, String)> {
                v.iter()
                    .filter(|x| x.0 < start || x.0 >= next)
                    .map(|x| (x.0, x.3.clone()))
                    .collect()
            };
            assert_eq!(kept(&before), kept(&after), "{name}");
        }
    }
}

#[test]
fn firmware_show_reads_back_the_preset_and_the_fixture_config() {
    let tmp = tempfile::tempdir().unwrap();
    let preset = firmware::preset("boot-net-sd").unwrap();
    for name in FIXTURES {
        let src = fixture(name);
        // The fixture's own configuration, as the oracle reads it.
        let shown = hi_ok(&["firmware", "show", src.to_str().unwrap()]);
        assert_eq!(shown.as_bytes(), oracle_bootconf(&src), "{name}");

        let new = Eeprom::parse(std::fs::read(&src).unwrap())
            .unwrap()
            .with_bootconf(preset.conf_text.as_bytes())
            .unwrap();
        let out = tmp.path().join(name);
        std::fs::write(&out, new.bytes()).unwrap();
        let o = hi(&["firmware", "show", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), preset.conf_text);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("BOOT_ORDER 0xf412: network, then SD, then USB, then restart"),
            "{err}"
        );
        let json: serde_json::Value = serde_json::from_str(&hi_ok(&[
            "firmware",
            "show",
            "--json",
            out.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(json["bootconf"], preset.conf_text);
        assert_eq!(json["boot_order"], "0xf412");
        let soc = if name.contains("2712") { 2712 } else { 2711 };
        assert_eq!(json["soc"], soc);
        assert_eq!(json["layout"], if soc == 2712 { "a/b" } else { "plain" });
    }
}

#[test]
fn a_config_over_4076_bytes_is_refused_naming_the_offset() {
    let src = fixture("pieeprom-2711.bin");
    let (start, _) = region(&src, 512 * 1024);
    let e = Eeprom::parse(std::fs::read(&src).unwrap()).unwrap();
    let mut conf = b"[all]\nBOOT_ORDER=0xf14\n".to_vec();
    conf.resize(4076, b'#');
    assert!(e.with_bootconf(&conf).is_ok(), "4076 bytes fit");
    conf.push(b'#');
    let msg = e.with_bootconf(&conf).unwrap_err().to_string();
    assert!(msg.contains(&format!("offset {start:#x}")), "{msg}");
    assert!(msg.contains("4077 bytes") && msg.contains("4076"), "{msg}");
}

#[test]
fn an_unknown_magic_is_refused_naming_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let img = tmp.path().join(name);
        std::fs::copy(fixture(name), &img).unwrap();
        let third = oracle_sections(&img)[2].0;
        patch(&img, third as u64, &0x1234_5678u32.to_be_bytes());
        let before = std::fs::read(&img).unwrap();
        let out = hi(&["firmware", "show", img.to_str().unwrap()]);
        assert_fails(
            &out,
            1,
            &[
                name,
                &format!("offset {third:#x}"),
                "unknown section magic 0x12345678",
            ],
        );
        assert_eq!(std::fs::read(&img).unwrap(), before, "show changed {name}");
    }
}

#[test]
fn a_truncated_image_or_a_section_past_the_end_is_refused_naming_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("short.bin");
    let bytes = std::fs::read(fixture("pieeprom-2711.bin")).unwrap();
    std::fs::write(&img, &bytes[..300_000]).unwrap();
    let out = hi(&["firmware", "show", img.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        &["short.bin", "ends at offset 0x493e0", "truncated"],
    );

    // A section whose length runs into the reserved last 4 KiB.
    let img = tmp.path().join("long.bin");
    std::fs::write(&img, &bytes).unwrap();
    let second = oracle_sections(&img)[1].0;
    patch(&img, second as u64 + 4, &0x0008_0000u32.to_be_bytes());
    let out = hi(&["firmware", "show", img.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        &[
            &format!("offset {second:#x}"),
            "past 0x7f000",
            "reserved last 4 KiB",
        ],
    );
}
