//! `memcpy` and friends, which LLVM may call and the kernel has no CRT for.
//! Plain byte loops: under these names LLVM does not turn them back into
//! calls to themselves, and they use no SSE.

/// # Safety
/// `dest` and `src` are valid for `n` bytes and do not overlap.
// SAFETY: the C library name LLVM calls; the image defines it nowhere else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller guarantees `src` is valid for `n` bytes.
        let byte = unsafe { *src.wrapping_add(i) };
        // SAFETY: the caller guarantees `dest` is valid for `n` bytes.
        unsafe { *dest.wrapping_add(i) = byte };
    }
    dest
}

/// # Safety
/// `dest` and `src` are valid for `n` bytes; they may overlap.
// SAFETY: the C library name LLVM calls; the image defines it nowhere else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let copy = |i: usize| {
        // SAFETY: the caller guarantees `src` is valid for `n` bytes.
        let byte = unsafe { *src.wrapping_add(i) };
        // SAFETY: the caller guarantees `dest` is valid for `n` bytes.
        unsafe { *dest.wrapping_add(i) = byte };
    };
    // Copy in the direction that never overwrites bytes not yet read.
    if dest.cast_const() < src {
        (0..n).for_each(copy);
    } else {
        (0..n).rev().for_each(copy);
    }
    dest
}

/// # Safety
/// `dest` is valid for `n` bytes.
// SAFETY: the C library name LLVM calls; the image defines it nowhere else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // memset takes an int and stores its low byte.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let byte = value as u8;
    for i in 0..n {
        // SAFETY: the caller guarantees `dest` is valid for `n` bytes.
        unsafe { *dest.wrapping_add(i) = byte };
    }
    dest
}

/// # Safety
/// `left` and `right` are valid for `n` bytes.
// SAFETY: the C library name LLVM calls; the image defines it nowhere else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees `left` is valid for `n` bytes.
        let ours = unsafe { *left.wrapping_add(i) };
        // SAFETY: the caller guarantees `right` is valid for `n` bytes.
        let theirs = unsafe { *right.wrapping_add(i) };
        if ours != theirs {
            return i32::from(ours) - i32::from(theirs);
        }
    }
    0
}
