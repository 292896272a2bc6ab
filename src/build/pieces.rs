//! How one pass over a node's image is cut: the bmap's ranges (the
//! mapped runs cut on the 4 MiB grid, each marked when overlay pages lie in
//! it), the blocks with bytes to copy (the base's data segments and the
//! overlay's pages), and the pieces the pass walks (the union of both, cut
//! wherever either starts or ends), so that each piece is copied or not,
//! and hashed into one range or none, as a whole.

use super::bmap::BLOCK;
use super::emit::PIECE_BLOCKS;
use super::mapped::BlockRuns;
use crate::io::overlay::Pages;

/// A bmap range to be: blocks `first..=last`, and whether overlay pages
/// lie in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub first: u64,
    pub last: u64,
    pub patched: bool,
}

/// The bmap's ranges: the mapped runs cut on the grid.
pub(super) fn ranges(mapped: &BlockRuns, pages: &Pages) -> Vec<Span> {
    ranges_by(mapped, |first, last| {
        pages.range(first..=last).next().is_some()
    })
}

/// [`ranges`], with `touched(first, last)` telling whether overlay pages
/// lie in blocks `first..=last`.
pub(super) fn ranges_by(mapped: &BlockRuns, touched: impl Fn(u64, u64) -> bool) -> Vec<Span> {
    let mut out = Vec::new();
    for &(first, last) in mapped.runs() {
        let mut cur = first;
        while cur <= last {
            let end = last.min((cur / PIECE_BLOCKS + 1) * PIECE_BLOCKS - 1);
            out.push(Span {
                first: cur,
                last: end,
                patched: touched(cur, end),
            });
            cur = end + 1;
        }
    }
    out
}

/// The blocks with bytes to copy: the base's data segments and the
/// overlay's pages, in whole blocks, merged.
pub(super) fn copied(segments: &[(u64, u64)], pages: &Pages) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = segments
        .iter()
        .filter(|&&(_, n)| n > 0)
        .map(|&(start, n)| (start / BLOCK, (start + n).div_ceil(BLOCK) - 1))
        .chain(pages.keys().map(|&i| (i, i)))
        .collect();
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (first, last) in runs {
        match merged.last_mut() {
            Some(r) if r.1 + 1 >= first => r.1 = r.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// A run of blocks the pass treats alike: `data` (copied from the base,
/// pages laid on when `patched`), else a hole; inside bmap range `range`,
/// else unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub first: u64,
    pub last: u64,
    pub data: bool,
    pub patched: bool,
    pub range: Option<usize>,
}

/// The pass's pieces, in order: the union of the copied runs and the
/// ranges, cut wherever either starts or ends.
pub(super) fn pieces(copied: &[(u64, u64)], ranges: &[Span], pages: &Pages) -> Vec<Piece> {
    let mut cuts: Vec<u64> = copied
        .iter()
        .flat_map(|&(a, b)| [a, b + 1])
        .chain(ranges.iter().flat_map(|r| [r.first, r.last + 1]))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut c, mut r) = (0, 0);
    let mut out: Vec<Piece> = Vec::new();
    // Every run starts and ends on a cut, so each [a, b] between two cuts
    // lies wholly inside or wholly outside each run: its start decides.
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1] - 1);
        while c < copied.len() && copied[c].1 < a {
            c += 1;
        }
        while r < ranges.len() && ranges[r].last < a {
            r += 1;
        }
        let data = c < copied.len() && copied[c].0 <= a;
        let range = (r < ranges.len() && ranges[r].first <= a).then_some(r);
        if !data && range.is_none() {
            continue;
        }
        match out.last_mut() {
            Some(p) if p.last + 1 == a && p.data == data && p.range == range => p.last = b,
            _ => out.push(Piece {
                first: a,
                last: b,
                data,
                patched: false,
                range,
            }),
        }
    }
    for p in &mut out {
        p.patched = pages.range(p.first..=p.last).next().is_some();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn page(byte: u8) -> Box<[u8]> {
        vec![byte; crate::io::overlay::PAGE as usize].into_boxed_slice()
    }

    #[test]
    fn pieces_cover_copied_and_mapped_blocks_and_ranges_cut_on_the_grid() {
        let mut pages: Pages = BTreeMap::new();
        pages.insert(10, page(1)); // touches the first segment's end
        pages.insert(5000, page(2)); // alone, in a hole
        let segs = [(0, 10 * BLOCK), (1000 * BLOCK, 100 * BLOCK)];
        let copied = copied(&segs, &pages);
        assert_eq!(copied, [(0, 10), (1000, 1099), (5000, 5000)]);
        // Mapped: part of the first segment, a hole, across the grid line
        // at 1024 into the second segment, and the lone page.
        let mapped = BlockRuns::from_spans([
            (4 * BLOCK, 20 * BLOCK),
            (1020 * BLOCK, 1030 * BLOCK),
            (5000 * BLOCK, 5001 * BLOCK),
        ]);
        let ranges = ranges(&mapped, &pages);
        let r: Vec<_> = ranges
            .iter()
            .map(|r| (r.first, r.last, r.patched))
            .collect();
        assert_eq!(
            r,
            [
                (4, 19, true),
                (1020, 1023, false),
                (1024, 1029, false),
                (5000, 5000, true)
            ]
        );
        let got: Vec<_> = pieces(&copied, &ranges, &pages)
            .iter()
            .map(|p| (p.first, p.last, p.data, p.patched, p.range))
            .collect();
        let want = [
            (0, 3, true, false, None),
            (4, 10, true, true, Some(0)),
            (11, 19, false, false, Some(0)),
            (1000, 1019, true, false, None),
            (1020, 1023, true, false, Some(1)),
            (1024, 1029, true, false, Some(2)),
            (1030, 1099, true, false, None),
            (5000, 5000, true, true, Some(3)),
        ];
        assert_eq!(got, want);
    }
}
