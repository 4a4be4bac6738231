//! The semantic layer's lookup (SPEC 11, issue 26): p50 of the nearest
//! neighbour in one partition of 100,000 entries of 1,536 dimensions,
//! excluding the embedding call, and the memory per entry.
//!
//!   cargo bench --bench semantic_index            # ~1 min
//!   SEMANTIC_ENTRIES=10000 cargo bench --bench semantic_index
//!
//! The index is `tollgate::cache::CacheStore`'s (vectors held in memory,
//! loaded from the store or Redis): an exact scan of the partition.

use rand::{Rng, SeedableRng};
use std::time::Instant;
use tollgate::cache::CacheStore;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("SEMANTIC_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dims = 1536;
    let dir = std::env::temp_dir().join(format!("tollgate-semantic-bench-{}", std::process::id()));
    let store = CacheStore::open(&dir.join("c.db"), n as u64 * 2, 1 << 20).expect("open");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let before = rss_kib();
    let mut v = vec![0f32; dims];
    for i in 0..n {
        v.iter_mut().for_each(|x| *x = rng.gen_range(-1.0..1.0));
        store.index_vector("p", &format!("{i:064x}"), &v, u64::MAX, 0);
    }
    let after = rss_kib();
    let mut times = Vec::new();
    for _ in 0..50 {
        v.iter_mut().for_each(|x| *x = rng.gen_range(-1.0..1.0));
        let t = Instant::now();
        let r = store.nearest_key("p", &v, 0.95, 1);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(r);
    }
    times.sort_by(f64::total_cmp);
    println!("semantic lookup, one partition of {n} entries x {dims} dims (exact scan), 50 lookups:");
    println!("  p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms (issue 26: p50 at most 2 ms)", times[25], times[45], times[49]);
    println!("  memory per entry: {:.1} KiB (RSS growth / entries)", (after.saturating_sub(before)) as f64 / n as f64);
    let _ = std::fs::remove_dir_all(&dir);
}
