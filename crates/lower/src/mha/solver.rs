//! The memory solver of AllocateBuffers: places buffers with known sizes and
//! lifetimes in one scratchpad, so that no two buffers live at the same time overlap.
//!
//! Greedy by size (largest first, ties by earlier start): each buffer goes to the
//! lowest aligned offset that does not intersect any already placed buffer whose
//! lifetime intersects its own. Not optimal (the problem is NP-hard), but exact on
//! the flash nest, where every buffer is live at once within a row block.

/// A buffer to place: its size in bytes and its lifetime `[first, last]` (inclusive,
/// in expression indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub size: u64,
    pub live: (usize, usize),
}

impl Item {
    /// True if both are live at some expression.
    pub fn overlaps_in_time(&self, o: &Item) -> bool {
        self.live.0 <= o.live.1 && o.live.0 <= self.live.1
    }
}

/// Offsets (multiples of `align`, in item order) and the total size (a multiple of
/// `align`). `align` must be a power of two.
pub fn solve(items: &[Item], align: u64) -> (Vec<u64>, u64) {
    let up = |x: u64| x.div_ceil(align) * align;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].size), items[i].live.0, i));
    let mut offsets = vec![0u64; items.len()];
    let mut placed: Vec<usize> = vec![];
    for &i in &order {
        let it = items[i];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| items[j].overlaps_in_time(&it) && items[j].size > 0)
            .map(|&j| (offsets[j], offsets[j] + items[j].size))
            .collect();
        busy.sort_unstable();
        let mut at = 0u64;
        for (s, e) in busy {
            if at + it.size <= s || it.size == 0 {
                break;
            }
            at = at.max(up(e));
        }
        offsets[i] = at;
        placed.push(i);
    }
    let total = items
        .iter()
        .zip(&offsets)
        .map(|(it, &o)| up(o + it.size))
        .max()
        .unwrap_or(0);
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_lifetimes_never_overlap_and_stay_aligned() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..500 {
            let n = 1 + rng.below(12) as usize;
            let items: Vec<Item> = (0..n)
                .map(|_| {
                    let a = rng.below(40) as usize;
                    let b = a + rng.below(20) as usize;
                    Item {
                        size: rng.below(5000),
                        live: (a, b),
                    }
                })
                .collect();
            let (off, total) = solve(&items, 64);
            for i in 0..n {
                assert_eq!(off[i] % 64, 0, "case {case}: item {i} misaligned");
                assert!(
                    off[i] + items[i].size <= total,
                    "case {case}: item {i} past the total"
                );
                for j in i + 1..n {
                    if items[i].overlaps_in_time(&items[j])
                        && items[i].size > 0
                        && items[j].size > 0
                    {
                        let disjoint =
                            off[i] + items[i].size <= off[j] || off[j] + items[j].size <= off[i];
                        assert!(
                            disjoint,
                            "case {case}: items {i} {:?}@{} and {j} {:?}@{} overlap",
                            items[i], off[i], items[j], off[j]
                        );
                    }
                }
            }
            // Never worse than placing everything side by side.
            let side_by_side: u64 = items.iter().map(|it| it.size.div_ceil(64) * 64).sum();
            assert!(total <= side_by_side, "case {case}");
        }
    }

    #[test]
    fn disjoint_lifetimes_share_memory() {
        let items = [
            Item {
                size: 1000,
                live: (0, 3),
            },
            Item {
                size: 800,
                live: (4, 9),
            },
            Item {
                size: 100,
                live: (2, 5),
            },
        ];
        let (off, total) = solve(&items, 64);
        assert_eq!(off[0], 0);
        assert_eq!(off[1], 0, "the second buffer reuses the first's memory");
        assert_eq!(
            off[2], 1024,
            "the third is live with both: after them, aligned"
        );
        assert_eq!(total, 1024 + 128);
    }
}
