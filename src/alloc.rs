//! The process's allocator: mimalloc (2.x, built without transparent huge
//! pages: with them 2,000 open streams held 114 KB each instead of 53 KB),
//! called the way std calls the system allocator. The `mimalloc` crate's own `GlobalAlloc` asks for every
//! block through `mi_malloc_aligned`, whose fast path covers only blocks
//! up to 1 KiB; Rust's usual alignments (at most 16, never more than the
//! size) are what `mi_malloc` gives anyway, so those go to `mi_malloc`,
//! `mi_zalloc` and `mi_realloc`, and only over-aligned blocks to the
//! aligned calls. The binary (`src/main.rs`) and the bare-Pingora bench
//! with mimalloc use it; library tests run with the system allocator.

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
