//! The process's own memory.

/// Gives the memory freed since the last call back to the system (glibc keeps freed memory
/// of its arenas otherwise: a process that once parsed a large request would hold it for good).
pub(crate) fn return_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}
