//! The semantic layer's memory (SPEC 11): each partition's vectors (one
//! owner, namespace, model and parameter set), and how a lookup finds the
//! nearest one.
//!
//! A partition under [`INDEX_FROM`] live vectors is scanned exactly, on a
//! snapshot taken outside the lock (writers copy on write). From there an
//! inverted-file index ([`super::ivf`]) is trained on a thread of its own,
//! off the request path (at a lower priority than the serving threads);
//! until it is installed the exact scan goes on, and
//! what arrives meanwhile is filed into the new index when it is. An
//! installed index takes new vectors directly (one centroid scan, one
//! append), and is retrained off the path when the partition has doubled
//! or holds more dead vectors than live ones.
//!
//! Correct under concurrent writers: the partition map is under one lock;
//! a vector written during a training is recorded in the partition under
//! that lock, and the installer files it under the same lock, so no vector
//! is missed. A removed or replaced vector is marked dead (it may stay
//! filed until the next training) and a lookup never returns a dead or
//! expired one. The candidates' scores are approximate (8-bit codes); the
//! similarity a lookup returns, and the threshold it checks, are exact.

use super::ivf::{dot, normalise, nprobe_for, Ivf};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Partitions with fewer live vectors are scanned exactly.
pub const INDEX_FROM: usize = 2048;
/// Candidates re-ranked exactly after the index's approximate scan.
const TAKE: usize = 16;

pub struct Vector {
    pub key: String,
    pub unit: Vec<f32>,
    pub expires_ms: u64,
    alive: AtomicBool,
}

impl Vector {
    fn usable(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms && self.alive.load(Ordering::Relaxed)
    }
}

type Index = Ivf<Arc<Vector>>;

#[derive(Default)]
struct Partition {
    generation: u64,
    live: HashMap<String, Arc<Vector>>,
    /// Every live vector, while there is no index to ask.
    scan: Arc<Vec<Arc<Vector>>>,
    index: Option<Arc<Index>>,
    trained_on: usize,
    /// Dead vectors still filed in the index.
    dead: usize,
    /// While a training runs: the vectors written since its snapshot.
    arrived: Option<Vec<Arc<Vector>>>,
}

#[derive(Default)]
pub struct SemanticIndex {
    parts: Arc<Mutex<HashMap<String, Partition>>>,
    generations: AtomicU64,
    trainings: Arc<AtomicUsize>,
}

fn unit(v: &[f32]) -> Vec<f32> {
    let mut u = v.to_vec();
    normalise(&mut u);
    u
}

impl Partition {
    fn kill(&mut self, key: &str) {
        if let Some(v) = self.live.remove(key) {
            v.alive.store(false, Ordering::Relaxed);
            if self.index.is_some() {
                self.dead += 1;
            }
            if self.scan.iter().any(|s| Arc::ptr_eq(s, &v)) {
                Arc::make_mut(&mut self.scan).retain(|s| !Arc::ptr_eq(s, &v));
            }
        }
    }

    fn wants_training(&self) -> bool {
        self.arrived.is_none()
            && self.live.len() >= INDEX_FROM
            && (self.index.is_none() || self.live.len() > 2 * self.trained_on || self.dead > self.live.len())
    }
}

impl SemanticIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Partition>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record `key`'s vector in `partition` (normalised here). An existing
    /// vector under `key` is replaced, or kept when `replace` is false.
    pub fn insert(&self, partition: &str, key: &str, vector: &[f32], expires_ms: u64, replace: bool) {
        let v = Arc::new(Vector { key: key.to_string(), unit: unit(vector), expires_ms, alive: AtomicBool::new(true) });
        let index = {
            let mut parts = self.lock();
            if !parts.contains_key(partition) {
                let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                parts.insert(partition.to_string(), Partition { generation, ..Default::default() });
            }
            let Some(p) = parts.get_mut(partition) else { return };
            if p.live.contains_key(key) {
                if !replace {
                    return;
                }
                p.kill(key);
            }
            p.live.insert(key.to_string(), v.clone());
            if let Some(a) = &mut p.arrived {
                a.push(v.clone());
            }
            if p.index.is_none() {
                Arc::make_mut(&mut p.scan).push(v.clone());
            }
            if p.wants_training() {
                self.train(partition, p);
            }
            p.index.clone()
        };
        if let Some(ix) = index {
            ix.add(&v.unit, v.clone());
        }
    }

    /// Start a training of `p` on a thread of its own (under the lock).
    fn train(&self, name: &str, p: &mut Partition) {
        let snapshot: Vec<Arc<Vector>> = p.live.values().cloned().collect();
        p.arrived = Some(Vec::new());
        let (parts, trainings, name, generation) = (self.parts.clone(), self.trainings.clone(), name.to_string(), p.generation);
        let dims = snapshot.first().map_or(0, |v| v.unit.len());
        trainings.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new().name("cache-index".into()).spawn(move || {
            // Below the serving threads: a training of a large partition
            // takes seconds of one core.
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority on this thread's own id changes only its
            // nice value (per thread on Linux); raising it needs no privilege.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
            let rows: Vec<(&[f32], Arc<Vector>)> = snapshot.iter().filter(|v| v.unit.len() == dims).map(|v| (v.unit.as_slice(), v.clone())).collect();
            let ivf = Ivf::build(&rows, dims, generation ^ snapshot.len() as u64);
            let mut parts = parts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = parts.get_mut(&name).filter(|p| p.generation == generation) {
                for v in p.arrived.take().unwrap_or_default() {
                    if v.alive.load(Ordering::Relaxed) {
                        ivf.add(&v.unit, v.clone());
                    }
                }
                p.dead = snapshot.iter().filter(|v| !v.alive.load(Ordering::Relaxed)).count();
                p.trained_on = rows.len();
                p.index = Some(Arc::new(ivf));
                p.scan = Arc::new(Vec::new());
            }
            drop(parts);
            trainings.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            p.arrived = None;
            self.trainings.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Forget `key` (in `partition`, or wherever it is).
    pub fn remove(&self, partition: Option<&str>, key: &str) {
        let mut parts = self.lock();
        let names: Vec<String> = match partition {
            Some(p) => vec![p.to_string()],
            None => parts.iter().filter(|(_, p)| p.live.contains_key(key)).map(|(n, _)| n.clone()).collect(),
        };
        for n in names {
            if let Some(p) = parts.get_mut(&n) {
                p.kill(key);
                if p.live.is_empty() && p.arrived.is_none() {
                    parts.remove(&n);
                }
            }
        }
    }

    /// Forget everything (a training under way is not installed).
    pub fn clear(&self) {
        let mut parts = self.lock();
        for p in parts.values() {
            p.live.values().for_each(|v| v.alive.store(false, Ordering::Relaxed));
        }
        parts.clear();
    }

    /// Forget the expired vectors.
    pub fn retain_live(&self, now_ms: u64) {
        let mut parts = self.lock();
        for p in parts.values_mut() {
            let expired: Vec<String> = p.live.values().filter(|v| v.expires_ms <= now_ms).map(|v| v.key.clone()).collect();
            expired.iter().for_each(|k| p.kill(k));
        }
    }

    /// Live vectors held.
    pub fn len(&self) -> usize {
        self.lock().values().map(|p| p.live.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a training is under way (benchmarks wait for it).
    pub fn training(&self) -> bool {
        self.trainings.load(Ordering::SeqCst) > 0
    }

    /// Whether `partition` is answered by an index (else by a scan).
    pub fn indexed(&self, partition: &str) -> bool {
        self.lock().get(partition).is_some_and(|p| p.index.is_some())
    }

    /// The key and exact cosine of the live vector of `partition` nearest
    /// to `embedding`, when at least `threshold`.
    pub fn nearest(&self, partition: &str, embedding: &[f32], threshold: f64, now_ms: u64) -> Option<(String, f64)> {
        let q = unit(embedding);
        let (index, scan) = {
            let parts = self.lock();
            let p = parts.get(partition)?;
            (p.index.clone(), p.scan.clone())
        };
        let best = match index {
            Some(ix) => {
                let keep = |v: &Arc<Vector>| v.usable(now_ms);
                ix.candidates_where(&q, nprobe_for(ix.k()), TAKE, keep).into_iter().map(|(_, v)| (f64::from(dot(&v.unit, &q)), v)).max_by(|a, b| a.0.total_cmp(&b.0))
            }
            None => scan.iter().filter(|v| v.usable(now_ms) && v.unit.len() == q.len()).map(|v| (f64::from(dot(&v.unit, &q)), v.clone())).max_by(|a, b| a.0.total_cmp(&b.0)),
        };
        let (s, v) = best.filter(|(s, _)| *s >= threshold)?;
        Some((v.key.clone(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
        unit(&(0..dims).map(|_| rng.gen_range(-1.0..1.0)).collect::<Vec<f32>>())
    }

    fn wait(ix: &SemanticIndex) {
        for _ in 0..3000 {
            if !ix.training() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the training did not end");
    }

    #[test]
    fn small_partitions_are_scanned_exactly() {
        let ix = SemanticIndex::default();
        ix.insert("p", "x", &[1.0, 0.0], 100, true);
        ix.insert("p", "y", &[0.0, 1.0], 100, true);
        ix.insert("p", "x", &[0.0, -1.0], 100, false); // kept: not replaced
        assert_eq!(ix.nearest("p", &[0.9, 0.1], 0.9, 0).unwrap().0, "x");
        assert!(ix.nearest("p", &[0.9, 0.1], 0.9, 100).is_none(), "expired");
        ix.insert("p", "x", &[0.0, -1.0], 100, true);
        assert!(ix.nearest("p", &[1.0, 0.0], 0.5, 0).is_none(), "replaced");
        ix.remove(None, "y");
        assert!(ix.nearest("p", &[0.0, 1.0], 0.5, 0).is_none(), "removed");
        assert!(!ix.indexed("p"));
    }

    /// Past INDEX_FROM an index is trained off the path; vectors written
    /// during the training, removed ones and replaced ones are all right
    /// after it is installed; the exact scan answers meanwhile.
    #[test]
    fn a_trained_partition_misses_nothing_written_during_the_training() {
        let dims = 128;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let ix = SemanticIndex::default();
        let vs: Vec<Vec<f32>> = (0..INDEX_FROM + 600).map(|_| random(&mut rng, dims)).collect();
        for (i, v) in vs.iter().enumerate() {
            ix.insert("p", &format!("k{i}"), v, u64::MAX, true);
            if i == INDEX_FROM + 1 {
                // Found by the scan while the first training runs.
                assert_eq!(ix.nearest("p", &vs[3], 0.99, 0).unwrap().0, "k3");
            }
        }
        ix.remove(Some("p"), "k10");
        wait(&ix);
        assert!(ix.indexed("p"));
        assert_eq!(ix.len(), INDEX_FROM + 599);
        let mut found = 0;
        for i in (0..vs.len()).step_by(5) {
            match ix.nearest("p", &vs[i], 0.99, 0) {
                Some((k, s)) => {
                    assert_eq!(k, format!("k{i}"));
                    assert!((s - 1.0).abs() < 1e-5, "exact similarity: {s}");
                    found += 1;
                }
                None => assert_eq!(i, 10, "only the removed one is missing"),
            }
        }
        assert_eq!(found, vs.len().div_ceil(5) - 1);
        // Replaced after the index is installed: the old vector is dead.
        ix.insert("p", "k0", &vs[1], u64::MAX, true);
        let (k, _) = ix.nearest("p", &vs[0], 0.5, 0).map_or((String::new(), 0.0), |x| x);
        assert_ne!(k, "k0");
        assert!(ix.nearest("p", &vs[0], 0.99, 0).is_none());
        ix.retain_live(u64::MAX);
        assert!(ix.is_empty());
        ix.clear();
        assert!(ix.nearest("p", &vs[1], 0.0, 0).is_none());
    }
}
