//! The binary's allocator: mimalloc (version 2), asked the way its aligned entry points end
//! up asking itself.
//!
//! Rust hands every allocation its alignment, and the `mimalloc` crate passes each one to
//! `mi_malloc_aligned`. That call checks the alignment, looks for a free block whose address
//! happens to fit and otherwise takes a slower, general path; a step makes about a hundred
//! allocations, nearly all of them strings and maps with an alignment of 8 or less. mimalloc
//! itself treats a request whose alignment is at most 16 (its `MI_MAX_ALIGN_SIZE`) and at
//! most its size as naturally aligned, and serves it with plain `mi_malloc`
//! (`mi_malloc_is_naturally_aligned` in its `alloc-aligned.c`). This allocator makes that
//! choice before the call, so the common request takes the short path; any other request
//! still goes through the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's `MI_MAX_ALIGN_SIZE`: every block of at least this size is aligned to it.
const NATURAL_ALIGN: usize = 16;

/// The global allocator of the `opsflow` binary.
pub(crate) struct MiMalloc;

/// Whether a block of `size` bytes from plain `mi_malloc` already has `align`.
fn naturally_aligned(size: usize, align: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// The one reviewed block of the binary: a global allocator is an unsafe trait. Each method
// forwards to the mimalloc call with the same contract; plain calls only where mimalloc's own
// rule says their blocks are aligned as asked.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc returns null or a block of at least `size` bytes, aligned as
        // `layout` asks (see `naturally_aligned`).
        unsafe {
            if naturally_aligned(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`, with the block zeroed.
        unsafe {
            if naturally_aligned(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc, whichever call made it.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc. A block that stays in place keeps the alignment
        // it had; a moved one is a new block of `new_size` bytes, aligned by the same rule.
        unsafe {
            if naturally_aligned(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(p: *mut u8, align: usize) -> bool {
        !p.is_null() && p.addr().is_multiple_of(align)
    }

    #[test]
    fn every_block_has_the_alignment_its_layout_asks_for() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 17, 24, 48, 100, 1000, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                #[allow(unsafe_code)]
                // SAFETY: the layouts have non-zero sizes; each block is written within its
                // size and freed once, with the layout it has at that time.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(aligned(p, align), "{size} / {align}");
                    p.write_bytes(7, size);
                    let z = a.alloc_zeroed(layout);
                    assert!(aligned(z, align), "zeroed {size} / {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "zeroed {size} / {align}");
                    let grown = a.realloc(p, layout, size * 3);
                    assert!(aligned(grown, align), "grown {size} / {align}");
                    assert!(
                        (0..size).all(|i| *grown.add(i) == 7),
                        "kept {size} / {align}"
                    );
                    a.dealloc(grown, grown_layout);
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
