//! A fixed, seeded bijection of `0..n`, cheap to evaluate both ways: a few invertible mixing rounds
//! over the smallest power-of-two domain that holds `n`, with cycle-walking back into `0..n`.
//! Used to scatter workload ranks (hot pages) over the address space.

use ftl::nand::mix;

const ROUNDS: usize = 3;

#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    bits: u32,
    mask: u64,
    mults: [u64; ROUNDS],
    adds: [u64; ROUNDS],
}

impl Permutation {
    /// A permutation of `0..n` (n >= 1) chosen by `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        assert!(n >= 1, "permutation of an empty set");
        let bits = (64 - (n - 1).leading_zeros()).max(2);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        let mut mults = [0; ROUNDS];
        let mut adds = [0; ROUNDS];
        for r in 0..ROUNDS {
            mults[r] = (mix(seed ^ (r as u64 * 2 + 1)) | 1) & mask;
            adds[r] = mix(seed ^ (r as u64 * 2 + 2)) & mask;
        }
        Self {
            n,
            bits,
            mask,
            mults,
            adds,
        }
    }

    fn shift(&self) -> u32 {
        self.bits / 2 + 1
    }

    fn forward(&self, mut x: u64) -> u64 {
        for r in 0..ROUNDS {
            x = x.wrapping_mul(self.mults[r]) & self.mask;
            x ^= x >> self.shift();
            x = x.wrapping_add(self.adds[r]) & self.mask;
        }
        x
    }

    fn backward(&self, mut x: u64) -> u64 {
        for r in (0..ROUNDS).rev() {
            x = x.wrapping_sub(self.adds[r]) & self.mask;
            // Undo x ^= x >> s: each pass fixes s more of the top bits.
            let s = self.shift();
            let mut y = x;
            for _ in 0..=self.bits / s {
                y = x ^ (y >> s);
            }
            x = y & self.mask;
            x = x.wrapping_mul(inverse_odd(self.mults[r])) & self.mask;
        }
        x
    }

    /// The image of `x < n`.
    pub fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.n);
        let mut y = self.forward(x);
        while y >= self.n {
            y = self.forward(y);
        }
        y
    }

    /// The preimage of `y < n`: `invert(apply(x)) == x`.
    pub fn invert(&self, y: u64) -> u64 {
        debug_assert!(y < self.n);
        let mut x = self.backward(y);
        while x >= self.n {
            x = self.backward(x);
        }
        x
    }
}

/// The multiplicative inverse of an odd number modulo 2^64 (Newton's iteration).
fn inverse_odd(a: u64) -> u64 {
    let mut x = a;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_bijection_and_inverts() {
        for n in [1u64, 2, 3, 7, 64, 1000, 4097] {
            let p = Permutation::new(n, 42);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = p.apply(x);
                assert!(y < n);
                assert!(!seen[y as usize], "n={n} x={x}");
                seen[y as usize] = true;
                assert_eq!(p.invert(y), x, "n={n}");
            }
        }
    }

    #[test]
    fn scatters_neighbours() {
        let p = Permutation::new(100_000, 1);
        let adjacent = (0..1000)
            .filter(|&x| p.apply(x).abs_diff(p.apply(x + 1)) < 10)
            .count();
        assert!(adjacent < 10, "{adjacent}");
    }
}
