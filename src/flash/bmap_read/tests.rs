//! The bmap reader against our own maps, damaged ones and bmaptool's formats.

use super::*;
use crate::build::bmap::{Range, render};

/// Puts the right `BmapFileChecksum` into `text`, whose field holds 64
/// zeros (as bmaptool computes it).
fn sign(text: &str) -> String {
    let zeros = "0".repeat(64);
    assert!(text.contains(&zeros));
    let sum = crate::digest::hex(&Sha256::digest(text.as_bytes()));
    text.replacen(&zeros, &sum, 1)
}

/// Our own renderer's bmap, with the checksum field zeroed again.
fn unsigned_ours() -> String {
    let ranges = [
        Range {
            first: 0,
            last: 2,
            sha256: [1; 32],
        },
        Range {
            first: 5,
            last: 5,
            sha256: [2; 32],
        },
        Range {
            first: 7,
            last: 9,
            sha256: [3; 32],
        },
    ];
    let text = render(40_000, &ranges);
    let start = text.find("<BmapFileChecksum> ").unwrap() + 19;
    let sum = text[start..start + 64].to_string();
    text.replace(&sum, &"0".repeat(64))
}

fn refused(text: &str) -> BmapError {
    parse(text.as_bytes(), "x.bmap").unwrap_err()
}

#[test]
fn our_build_bmap_reads_back_with_its_ranges_and_checksums() {
    let map = parse(sign(&unsigned_ours()).as_bytes(), "x.bmap").unwrap();
    assert_eq!(map.image_size, 40_000);
    assert_eq!(map.block_size, 4096);
    let spans: Vec<(u64, u64)> = map.ranges.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(spans, [(0, 2), (5, 5), (7, 9)]);
    assert_eq!(map.ranges[1].sha256, Some([2; 32]));
    // The last block is cut at the image's end.
    assert_eq!(map.span(&map.ranges[2]), (7 * 4096, 40_000));
    assert_eq!(map.mapped_bytes(), 3 * 4096 + 4096 + (40_000 - 7 * 4096));
}

#[test]
fn format_1_4_is_read_as_2_0() {
    let text = sign(&unsigned_ours().replace("version=\"2.0\"", "version=\"1.4\""));
    let map = parse(text.as_bytes(), "x.bmap").unwrap();
    assert!(map.has_checksums());
}

#[test]
fn format_1_0_without_checksums_is_read() {
    let text = "<bmap version=\"1.0\">\n<ImageSize> 8192 </ImageSize>\n\
                <BlockSize> 4096 </BlockSize>\n<BlocksCount> 2 </BlocksCount>\n\
                <MappedBlocksCount> 1 </MappedBlocksCount>\n\
                <BlockMap>\n<Range> 1 </Range>\n</BlockMap>\n</bmap>\n";
    let map = parse(text.as_bytes(), "x.bmap").unwrap();
    assert_eq!(map.ranges[0].sha256, None);
    assert!(!map.has_checksums());
}

#[test]
fn a_changed_bmap_fails_its_file_checksum_on_its_line() {
    let text = sign(&unsigned_ours()).replace("> 5 </Range>", "> 6 </Range>");
    let e = refused(&text);
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.to_string().contains("changed or damaged"), "{e}");
}

#[test]
fn overlapping_or_unsorted_ranges_are_refused_naming_the_range() {
    let text = sign(
        &unsigned_ours()
            .replace("> 5 </Range>", "> 2-5 </Range>")
            .replace(
                "<MappedBlocksCount> 7 </MappedBlocksCount>",
                "<MappedBlocksCount> 10 </MappedBlocksCount>",
            ),
    );
    let e = refused(&text);
    assert!(e.to_string().contains("range \"2-5\""), "{e}");
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert_eq!(e.line, Some(12), "{e}");
}

#[test]
fn checksums_other_than_sha256_are_refused() {
    let md5 = sign(&unsigned_ours().replace("> sha256 <", "> md5 <"));
    assert!(
        refused(&md5)
            .to_string()
            .contains("\"md5\" is not supported")
    );
    let sha1 = "<bmap version=\"1.3\"><ImageSize>4096</ImageSize>\
                <BlockSize>4096</BlockSize><BlocksCount>1</BlocksCount>\
                <MappedBlocksCount>1</MappedBlocksCount><BlockMap>\
                <Range sha1=\"aa\">0</Range></BlockMap></bmap>";
    assert!(refused(sha1).to_string().contains("SHA-1"));
}

#[test]
fn counts_must_agree_with_the_size_and_the_ranges() {
    let blocks = sign(&unsigned_ours().replace("<BlocksCount> 10 <", "<BlocksCount> 11 <"));
    let e = refused(&blocks);
    assert!(e.to_string().contains("11 blocks do not make"), "{e}");
    assert_eq!(e.line, Some(6));
    let mapped =
        sign(&unsigned_ours().replace("<MappedBlocksCount> 7 <", "<MappedBlocksCount> 8 <"));
    assert!(
        refused(&mapped)
            .to_string()
            .contains("says 8 mapped blocks, but its ranges hold 7")
    );
}

#[test]
fn a_range_past_the_image_is_refused() {
    let text = sign(
        &unsigned_ours()
            .replace("> 7-9 </Range>", "> 7-10 </Range>")
            .replace("<MappedBlocksCount> 7 <", "<MappedBlocksCount> 8 <"),
    );
    assert!(
        refused(&text)
            .to_string()
            .contains("past the image's last block (9)")
    );
}

#[test]
fn a_range_checksum_that_is_not_hex_is_refused() {
    let text = sign(&unsigned_ours().replacen(&"01".repeat(32), &"zz".repeat(32), 1));
    let e = refused(&text);
    assert!(e.to_string().contains("not 64 hex digits"), "{e}");
    assert_eq!(e.line, Some(11), "{e}");
}

#[test]
fn broken_xml_is_refused_naming_the_line() {
    let text = unsigned_ours().replace("</BlockMap>", "");
    let e = refused(&text);
    assert!(e.to_string().contains("closes <BlockMap>"), "{e}");
    let doctype = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>\n{}", unsigned_ours());
    assert!(refused(&doctype).to_string().contains("DOCTYPE"));
    assert!(refused("hello").to_string().contains("text outside"));
    assert!(refused("").to_string().contains("no <bmap> element"));
}

proptest::proptest! {
    /// Damage anywhere gives an error or a map, never a panic, and a
    /// map that is returned keeps the invariants the writer relies on.
    #[test]
    fn damaged_bmaps_never_panic(
        edits in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 1..6),
    ) {
        let mut bytes = sign(&unsigned_ours()).into_bytes();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Ok(map) = parse(&bytes, "x.bmap") {
            let blocks = map.image_size.div_ceil(map.block_size);
            for w in map.ranges.windows(2) {
                proptest::prop_assert!(w[0].last < w[1].first);
            }
            for r in &map.ranges {
                proptest::prop_assert!(r.first <= r.last && r.last < blocks);
            }
        }
    }
}

#[test]
fn a_bmap_past_the_size_cap_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.bmap");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(MAX_FILE + 1).unwrap();
    let e = read(&p).unwrap_err();
    assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
    assert!(e.to_string().starts_with(&p.display().to_string()));
}
