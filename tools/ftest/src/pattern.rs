//! Deterministic data patterns and a small PRNG.
//!
//! The pattern byte at file offset `off` for `seed` is byte `off % 8` (little
//! endian) of `word(seed, off / 8)`, a xorshift64* of a mix of the seed and
//! the word index. It depends on the offset, so data that lands at the wrong
//! place (a block reused by another file, a page shifted in a file) is caught.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finaliser: a bijection that spreads every input bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One xorshift64* step; `x` must not be 0.
fn xorshift64star(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The 8 pattern bytes at offsets `8 * w .. 8 * w + 8`.
pub fn word(seed: u64, w: u64) -> u64 {
    let x = mix(seed) ^ w.wrapping_add(1).wrapping_mul(GOLDEN);
    // xorshift has a fixed point at 0; any other constant will do.
    xorshift64star(if x == 0 { GOLDEN } else { x })
}

/// The pattern byte at offset `off`.
#[cfg(test)]
fn byte(seed: u64, off: u64) -> u8 {
    word(seed, off / 8).to_le_bytes()[(off % 8) as usize]
}

/// Fills `buf` with the pattern bytes of offsets `off .. off + buf.len()`.
pub fn fill(seed: u64, off: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let pos = off + i as u64;
        let bytes = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[start..start + n]);
        i += n;
    }
}

/// The first byte of `data` (which holds offsets `off ..`) that differs from
/// the pattern: `(offset, expected, actual)`.
pub fn first_mismatch(seed: u64, off: u64, data: &[u8]) -> Option<(u64, u8, u8)> {
    let mut expect = [0u8; 4096];
    for (ci, chunk) in data.chunks(expect.len()).enumerate() {
        let base = off + (ci * expect.len()) as u64;
        let e = &mut expect[..chunk.len()];
        fill(seed, base, e);
        if let Some(i) = (0..chunk.len()).find(|&i| chunk[i] != e[i]) {
            return Some((base + i as u64, e[i], chunk[i]));
        }
    }
    None
}

/// xorshift64* PRNG for the stress case: cheap, reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let s = mix(seed);
        Rng(if s == 0 { GOLDEN } else { s })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n`; `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_offset_consistent() {
        let mut a = vec![0u8; 10_000];
        fill(42, 0, &mut a);
        let mut b = vec![0u8; 10_000];
        fill(42, 0, &mut b);
        assert_eq!(a, b);
        // Filling from an unaligned offset gives the same bytes as the slice.
        for off in [1usize, 3, 7, 8, 13, 4095, 4096] {
            let mut c = vec![0u8; 1000];
            fill(42, off as u64, &mut c);
            assert_eq!(&c[..], &a[off..off + 1000], "offset {off}");
        }
        for (i, &x) in a.iter().enumerate().take(100) {
            assert_eq!(byte(42, i as u64), x);
        }
    }

    #[test]
    fn seeds_differ_and_are_not_trivial() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        fill(0, 0, &mut a);
        fill(1, 0, &mut b);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 64, "{same} equal bytes");
        // Seed 0 is not all zeros, and the bytes spread over many values.
        let zeros = a.iter().filter(|&&x| x == 0).count();
        assert!(zeros < 64, "{zeros} zero bytes");
        let mut seen = [false; 256];
        a.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().filter(|&&s| s).count() > 200);
        // Pages at different offsets differ.
        let mut c = vec![0u8; 4096];
        fill(0, 4096, &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn mismatch_reports_first_offset() {
        let mut a = vec![0u8; 9000];
        fill(7, 100, &mut a);
        assert_eq!(first_mismatch(7, 100, &a), None);
        assert!(first_mismatch(8, 100, &a).is_some());
        let want = a[5000];
        a[5000] ^= 0xff;
        a[6000] ^= 1;
        assert_eq!(first_mismatch(7, 100, &a), Some((5100, want, !want)));
        assert_eq!(first_mismatch(7, 100, &[]), None);
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(0);
        let mut hit = [0u32; 10];
        for _ in 0..10_000 {
            hit[r.below(10)] += 1;
        }
        assert!(hit.iter().all(|&h| h > 800), "{hit:?}");
        let mut r1 = Rng::new(5);
        let mut r2 = Rng::new(5);
        assert_eq!(r1.next_u64(), r2.next_u64());
    }
}
