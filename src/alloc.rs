//! The process's allocator: mimalloc (2.x, built without transparent huge
//! pages: with them 2,000 open streams held 114 KB each instead of 53 KB),
//! called the way std calls the system allocator. The `mimalloc` crate's
//! own `GlobalAlloc` asks for every block through `mi_malloc_aligned`,
//! whose fast path covers only blocks up to 1 KiB. Rust's usual alignments
//! (at most 16, never more than the size) are what `mi_malloc` gives
//! anyway: on 64-bit targets mimalloc rounds every block over 8 bytes to a
//! multiple of 16 bytes (`MI_ALIGN2W`), so those go to `mi_malloc`,
//! `mi_zalloc` and `mi_realloc`, and only over-aligned blocks to the
//! aligned calls (`blocks_are_aligned_as_asked` checks both). The binary
//! (`src/main.rs`) and the bare-Pingora bench with mimalloc use it;
//! library tests run with the system allocator.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// What every mimalloc block is aligned to, whatever its size (on 64-bit
/// targets), when the size is at least this.
const MIN_ALIGN: usize = 16;

pub struct Mimalloc;

#[inline]
fn plain(layout: &Layout) -> bool {
    layout.align() <= MIN_ALIGN && layout.align() <= layout.size()
}

unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= new_size {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block is aligned as asked, whichever call gave it: the plain
    /// calls rely on mimalloc rounding every block over 8 bytes to a
    /// multiple of 16 on 64-bit targets, so check the sizes around those
    /// steps, for every alignment up to 4 KiB, and through realloc.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = Mimalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=300).chain([1000, 1024, 1025, 4096, 70_000, 1 << 20]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 3 + 5);
                    assert_eq!(q as usize % align, 0, "realloc to {} align {align}", size * 3 + 5);
                    assert_eq!(*q, 0xab, "realloc keeps the contents");
                    a.dealloc(q, Layout::from_size_align(size * 3 + 5, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed size {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
