//! An inverted-file index over unit vectors (SPEC 11's semantic layer at
//! scale): spherical k-means centroids, each with the list of the vectors
//! nearest to it, stored as 8-bit codes. A lookup scores the centroids,
//! scans the codes of the `nprobe` best lists and returns the best
//! candidates by approximate score; the caller re-ranks them exactly.
//!
//! Why this and not a graph (HNSW, tried with `hnsw_rs`, benches/README.md):
//! the cache asks a narrow question, "is there an entry at cosine ≥ 0.8 or
//! so", and a near-duplicate lands in the same list as its query or a
//! neighbouring one even when the vectors have no cluster structure at all
//! (random vectors: the unit test and the benchmark plant such neighbours
//! and count how many are found). Adding a vector costs one scan of the
//! centroids and an append under its list's lock, so the index grows on the
//! write path without a rebuild; training (k-means) runs off the request
//! path, on a snapshot.

use rand::{Rng, SeedableRng};
use std::sync::RwLock;

/// A dot product in eight lanes (the compiler vectorises it).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// An 8-bit code against a query quantised the same way: integer products
/// in sixteen lanes. With AVX2 (checked once, at run time) the same loop is
/// compiled for it: about twice as fast as the baseline's SSE2.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    acc.iter().sum::<i32>() + ra.iter().zip(rb).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum::<i32>()
}

/// A vector's 8-bit code and its scale (value = code × scale).
fn quantise(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    scale
}

/// `v` scaled to length 1 (left as it is when it is all zeros).
pub fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

struct List<T> {
    members: Vec<T>,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

/// The index. `T` is what a list holds for each vector (the cache holds
/// its entry; tests hold a number).
pub struct Ivf<T> {
    dims: usize,
    centroids: Vec<f32>,
    lists: Vec<RwLock<List<T>>>,
}

/// Lists to scan for `k` centroids: enough that a near-duplicate is found
/// (benches/semantic_index.rs measures the trade).
pub fn nprobe_for(k: usize) -> usize {
    (k / 20).clamp(8, 64).min(k)
}

impl<T: Clone> Ivf<T> {
    /// Train on `rows` (unit vectors of `dims`) and file each of them.
    /// About √n centroids, k-means over a sample of 40 rows per centroid,
    /// four rounds.
    pub fn build(rows: &[(&[f32], T)], dims: usize, seed: u64) -> Ivf<T> {
        let n = rows.len();
        if n == 0 || dims == 0 {
            return Ivf { dims, centroids: Vec::new(), lists: Vec::new() };
        }
        let k = ((n as f64).sqrt().round() as usize).clamp(1, 4096);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let sample: Vec<&[f32]> = if n <= k * 40 { rows.iter().map(|r| r.0).collect() } else { (0..k * 40).map(|_| rows[rng.gen_range(0..n)].0).collect() };
        let mut centroids = Vec::with_capacity(k * dims);
        for i in rand::seq::index::sample(&mut rng, sample.len(), k.min(sample.len())) {
            centroids.extend_from_slice(sample[i]);
        }
        let k = centroids.len() / dims.max(1);
        let mut ivf = Ivf { dims, centroids, lists: Vec::new() };
        for _ in 0..4 {
            let mut sums = vec![0f32; k * dims];
            let mut counts = vec![0usize; k];
            for v in &sample {
                let c = ivf.nearest_centroid(v);
                counts[c] += 1;
                sums[c * dims..(c + 1) * dims].iter_mut().zip(v.iter()).for_each(|(s, x)| *s += x);
            }
            for c in 0..k {
                let s = &mut sums[c * dims..(c + 1) * dims];
                if counts[c] == 0 {
                    s.copy_from_slice(sample[rng.gen_range(0..sample.len())]);
                }
                normalise(s);
            }
            ivf.centroids = sums;
        }
        ivf.lists = (0..k).map(|_| RwLock::new(List { members: Vec::new(), codes: Vec::new(), scales: Vec::new() })).collect();
        for (v, t) in rows {
            ivf.add(v, t.clone());
        }
        ivf
    }

    fn centroid(&self, c: usize) -> &[f32] {
        &self.centroids[c * self.dims..(c + 1) * self.dims]
    }

    fn nearest_centroid(&self, v: &[f32]) -> usize {
        let k = self.centroids.len() / self.dims.max(1);
        (0..k).map(|c| (c, dot(self.centroid(c), v))).max_by(|a, b| a.1.total_cmp(&b.1)).map_or(0, |(c, _)| c)
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How many centroids (lists).
    pub fn k(&self) -> usize {
        self.lists.len()
    }

    /// File one more unit vector (one scan of the centroids, then an append
    /// under its list's lock).
    pub fn add(&self, v: &[f32], t: T) {
        if v.len() != self.dims || self.lists.is_empty() {
            return;
        }
        let c = self.nearest_centroid(v);
        let mut l = self.lists[c].write().unwrap_or_else(|e| e.into_inner());
        let s = quantise(v, &mut l.codes);
        l.scales.push(s);
        l.members.push(t);
    }

    /// The best `take` members by approximate cosine to the unit vector
    /// `q`, best first, from the `nprobe` lists whose centroids are nearest.
    pub fn candidates(&self, q: &[f32], nprobe: usize, take: usize) -> Vec<(f32, T)> {
        self.candidates_where(q, nprobe, take, |_| true)
    }

    /// [`Ivf::candidates`] among the members `keep` accepts (asked only of
    /// those that would enter the best `take`).
    pub fn candidates_where(&self, q: &[f32], nprobe: usize, take: usize, keep: impl Fn(&T) -> bool) -> Vec<(f32, T)> {
        if q.len() != self.dims || self.lists.is_empty() || take == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(f32, usize)> = (0..self.lists.len()).map(|c| (dot(self.centroid(c), q), c)).collect();
        let np = nprobe.clamp(1, scored.len());
        scored.select_nth_unstable_by(np - 1, |a, b| b.0.total_cmp(&a.0));
        let mut qc = Vec::with_capacity(self.dims);
        let qs = quantise(q, &mut qc);
        let mut best: Vec<(f32, T)> = Vec::with_capacity(take + 1);
        let mut floor = f32::NEG_INFINITY;
        for &(_, c) in &scored[..np] {
            let l = self.lists[c].read().unwrap_or_else(|e| e.into_inner());
            for (i, code) in l.codes.chunks_exact(self.dims).enumerate() {
                let s = dot_i8(code, &qc) as f32 * l.scales[i] * qs;
                if (best.len() < take || s > floor) && keep(&l.members[i]) {
                    if best.len() == take {
                        best.pop();
                    }
                    let at = best.partition_point(|b| b.0 >= s);
                    best.insert(at, (s, l.members[i].clone()));
                    floor = best.last().map_or(f32::NEG_INFINITY, |b| b.0);
                }
            }
        }
        best
    }

    /// Members filed.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.read().unwrap_or_else(|e| e.into_inner()).members.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dims).map(|_| rng.gen_range(-1.0..1.0)).collect();
        normalise(&mut v);
        v
    }

    /// `v` moved to cosine `cos` with it, in a random direction.
    pub fn near(rng: &mut impl Rng, v: &[f32], cos: f32) -> Vec<f32> {
        let r = random_unit(rng, v.len());
        let along = dot(&r, v);
        let mut ortho: Vec<f32> = r.iter().zip(v).map(|(r, v)| r - along * v).collect();
        normalise(&mut ortho);
        let sin = (1.0 - cos * cos).sqrt();
        v.iter().zip(&ortho).map(|(v, o)| cos * v + sin * o).collect()
    }

    #[test]
    fn a_planted_near_duplicate_is_found_among_random_vectors() {
        // The dimensions of text-embedding-3-small; random vectors, so no
        // cluster structure helps.
        let (n, dims) = (6000, 1536);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let vs: Vec<Vec<f32>> = (0..n).map(|_| random_unit(&mut rng, dims)).collect();
        let rows: Vec<(&[f32], u32)> = vs.iter().enumerate().map(|(i, v)| (v.as_slice(), i as u32)).collect();
        let ivf = Ivf::build(&rows, dims, 7);
        assert_eq!(ivf.len(), n);
        assert_eq!(ivf.k(), 77);
        let mut found = 0;
        let cos = 0.95; // the default threshold
        for _ in 0..200 {
            let target = rng.gen_range(0..n);
            let q = near(&mut rng, &vs[target], cos);
            let c = ivf.candidates(&q, nprobe_for(ivf.k()), 8);
            if c.first().map(|c| c.1) == Some(target as u32) {
                found += 1;
            }
            assert!(c.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
        }
        assert!(found >= 196, "found {found} of 200 planted neighbours at cosine {cos}");
        // A far query finds no candidate anywhere near.
        let far = random_unit(&mut rng, dims);
        assert!(ivf.candidates(&far, 8, 1)[0].0 < 0.4);
    }

    #[test]
    fn an_added_vector_is_found_and_the_approximate_score_is_close() {
        let dims = 64;
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let vs: Vec<Vec<f32>> = (0..300).map(|_| random_unit(&mut rng, dims)).collect();
        let rows: Vec<(&[f32], u32)> = vs.iter().enumerate().map(|(i, v)| (v.as_slice(), i as u32)).collect();
        let ivf = Ivf::build(&rows, dims, 3);
        let new = random_unit(&mut rng, dims);
        ivf.add(&new, 999);
        let c = ivf.candidates(&new, 1, 3);
        assert_eq!(c[0].1, 999);
        assert!((c[0].0 - 1.0).abs() < 0.02, "{}", c[0].0);
        ivf.add(&[1.0, 2.0], 5); // wrong dimensions: ignored
        assert_eq!(ivf.len(), 301);
        assert!(ivf.candidates(&[1.0], 1, 3).is_empty());
    }

    #[test]
    fn tiny_and_empty_inputs_build() {
        let ivf: Ivf<u32> = Ivf::build(&[], 4, 0);
        assert!(ivf.candidates(&[1.0, 0.0, 0.0, 0.0], 4, 2).is_empty());
        let v = [1.0f32, 0.0, 0.0, 0.0];
        let ivf = Ivf::build(&[(&v[..], 1u32)], 4, 0);
        assert_eq!(ivf.candidates(&v, 4, 2)[0].1, 1);
    }
}
