//! Operating-system glue: shared-memory mappings, clocks, group lookup and
//! the word-wise atomic copies that move data in and out of a segment.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::ffi::{CStr, CString};
use std::os::fd::AsFd;

use rustix::mm::{MapFlags, ProtFlags};

/// Bytes moved by one atomic access in [`store_words`] / [`load_words`].
///
/// Pointer-sized words: Rust guarantees that relaxed loads of at most the
/// pointer size work on read-only memory on every supported target.
const WORD: usize = core::mem::size_of::<usize>();

/// Current CLOCK_MONOTONIC time in nanoseconds (the clock of every
/// timestamp in a segment).
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // CLOCK_MONOTONIC is never negative.
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Checks a POSIX shared-memory object name: `/` followed by 1..=254
/// characters, none of them `/` or NUL.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    let Some(rest) = name.strip_prefix('/') else {
        return Err("it must start with '/'");
    };
    if rest.is_empty() {
        return Err("it is empty after the leading '/'");
    }
    if rest.len() > 254 {
        return Err("it is longer than 255 bytes");
    }
    if rest.contains('/') {
        return Err("it contains a '/' after the first character");
    }
    if rest.contains('\0') {
        return Err("it contains a NUL byte");
    }
    if rest == "." || rest == ".." {
        return Err("it names a directory");
    }
    Ok(())
}

/// Looks a group name up in the system group database (getgrnam_r, so
/// NSS sources such as LDAP work too). `Ok(None)` when there is no such group.
pub(crate) fn group_by_name(name: &str) -> std::io::Result<Option<u32>> {
    let cname = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in group name"))?;
    let mut buf_len = 1024usize;
    loop {
        let mut buf = vec![0u8; buf_len];
        // SAFETY: an all-zero `group` (null pointers, gid 0) is a valid value.
        let mut grp: libc::group = unsafe { core::mem::zeroed() };
        let mut result: *mut libc::group = core::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives it and
        // its length is passed; the strings `grp` points to live in `buf`,
        // and we only read the plain `gr_gid` field afterwards.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast::<libc::c_char>(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf_len < (1 << 20) {
            buf_len *= 4;
            continue;
        }
        if rc != 0 {
            // ENOENT / ESRCH / EBADF / EPERM all mean "not found" per POSIX.
            return match rc {
                libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(None),
                _ => Err(std::io::Error::from_raw_os_error(rc)),
            };
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(grp.gr_gid));
    }
}

/// Name of the group with id `gid`, if the system knows it (for messages).
pub(crate) fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in `group_by_name`.
    let mut grp: libc::group = unsafe { core::mem::zeroed() };
    let mut result: *mut libc::group = core::ptr::null_mut();
    // SAFETY: pointers valid for the call, `buf.len()` passed.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: getgrgid_r succeeded, so `gr_name` is a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// A shared memory mapping, unmapped on drop.
///
/// The memory may change at any time (another process writes it), so it is
/// only ever accessed through raw pointers and atomics, never through Rust
/// references to plain data.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access goes
// through atomics, so sharing or sending it between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-only or read-write.
    pub fn map<Fd: AsFd>(fd: Fd, len: usize, writable: bool) -> rustix::io::Result<Self> {
        if len == 0 {
            return Err(rustix::io::Errno::INVAL);
        }
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new mapping chosen by the kernel (null hint) does not
        // alias any Rust allocation.
        let ptr =
            unsafe { rustix::mm::mmap(core::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(rustix::io::Errno::INVAL)?;
        Ok(Self { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The `AtomicU64` at byte offset `off`.
    ///
    /// # Safety
    /// `off` must be a multiple of 8 with `off + 8 <= len`. On a read-only
    /// mapping only `load(Relaxed)` may be used.
    pub unsafe fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: in bounds and aligned (page-aligned base) per the contract;
        // the reference lives no longer than `self`.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast::<u64>()) }
    }

    /// The `AtomicU32` at byte offset `off`.
    ///
    /// # Safety
    /// As for [`Mapping::u64_at`], with 4 instead of 8.
    pub unsafe fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: see `u64_at`.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast::<u32>()) }
    }

    /// Copies `src` to offset `off` with relaxed word stores; see [`store_words`].
    ///
    /// # Safety
    /// Writable mapping; `off` a multiple of 8 and `off + round_up(src.len(), 8) <= len`.
    pub unsafe fn store(&self, off: usize, src: &[u8]) {
        debug_assert!(off % 8 == 0 && off + src.len().div_ceil(8) * 8 <= self.len);
        // SAFETY: forwarded contract.
        unsafe { store_words(self.ptr.as_ptr().add(off), src) }
    }

    /// Copies from offset `off` into `dst` with relaxed word loads; see [`load_words`].
    ///
    /// # Safety
    /// `off` a multiple of 8 and `off + round_up(dst.len(), 8) <= len`.
    pub unsafe fn load(&self, off: usize, dst: &mut [u8]) {
        debug_assert!(off % 8 == 0 && off + dst.len().div_ceil(8) * 8 <= self.len);
        // SAFETY: forwarded contract.
        unsafe { load_words(self.ptr.as_ptr().add(off), dst) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created in `map` that no
        // reference outlives (all borrows are tied to `&self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Copies `src` to `dst` as a series of relaxed atomic word stores; a
/// trailing partial word is padded with zeros.
///
/// Word-wise atomics (rather than `memcpy`) keep the concurrent reads of a
/// seqlock reader free of data races in the language memory model.
///
/// # Safety
/// `dst` must be 8-byte aligned and valid for writes of
/// `src.len()` rounded up to a multiple of 8 bytes.
pub(crate) unsafe fn store_words(dst: *mut u8, src: &[u8]) {
    let words = dst.cast::<usize>();
    let mut chunks = src.chunks_exact(WORD);
    let mut i = 0;
    for c in chunks.by_ref() {
        let mut w = [0u8; WORD];
        w.copy_from_slice(c);
        // SAFETY: word `i` is in bounds and aligned per the contract.
        unsafe { AtomicUsize::from_ptr(words.add(i)) }
            .store(usize::from_ne_bytes(w), Ordering::Relaxed);
        i += 1;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; WORD];
        w[..tail.len()].copy_from_slice(tail);
        // SAFETY: the padded last word is in bounds per the contract.
        unsafe { AtomicUsize::from_ptr(words.add(i)) }
            .store(usize::from_ne_bytes(w), Ordering::Relaxed);
    }
}

/// Copies into `dst` from `src` as a series of relaxed atomic word loads
/// (safe on read-only memory: relaxed, at most pointer-sized).
///
/// # Safety
/// `src` must be 8-byte aligned and valid for reads of `dst.len()`
/// rounded up to a multiple of 8 bytes.
pub(crate) unsafe fn load_words(src: *const u8, dst: &mut [u8]) {
    let words = src.cast::<usize>().cast_mut();
    let mut chunks = dst.chunks_exact_mut(WORD);
    let mut i = 0;
    for c in chunks.by_ref() {
        // SAFETY: word `i` is in bounds and aligned per the contract; only loaded.
        let w = unsafe { AtomicUsize::from_ptr(words.add(i)) }.load(Ordering::Relaxed);
        c.copy_from_slice(&w.to_ne_bytes());
        i += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        // SAFETY: the padded last word is in bounds per the contract.
        let w = unsafe { AtomicUsize::from_ptr(words.add(i)) }.load(Ordering::Relaxed);
        let n = tail.len();
        tail.copy_from_slice(&w.to_ne_bytes()[..n]);
    }
}

/// Whether process `pid` exists (kill(pid, 0): `EPERM` means it exists).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Id of this process.
pub(crate) fn own_pid() -> u32 {
    rustix::process::getpid().as_raw_pid().unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("/vosd-cam0").is_ok());
        assert!(check_name("vosd-cam0").is_err());
        assert!(check_name("/").is_err());
        assert!(check_name("/a/b").is_err());
        assert!(check_name("/..").is_err());
        assert!(check_name(&format!("/{}", "x".repeat(255))).is_err());
        assert!(check_name(&format!("/{}", "x".repeat(254))).is_ok());
    }

    #[test]
    fn word_copies_pad_and_round_trip() {
        for len in 0..40usize {
            let src: Vec<u8> = (0..len as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(1))
                .collect();
            let mut shared = vec![0xAAAA_AAAA_AAAA_AAAAu64; 6];
            // SAFETY: 48 bytes of aligned storage hold any len < 40 rounded up.
            unsafe { store_words(shared.as_mut_ptr().cast(), &src) };
            let mut back = vec![0u8; len];
            // SAFETY: as above.
            unsafe { load_words(shared.as_ptr().cast(), &mut back) };
            assert_eq!(back, src);
            // The padding of the last word is zero.
            let bytes: Vec<u8> = shared.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let padded = len.div_ceil(WORD) * WORD;
            assert!(bytes[len..padded].iter().all(|&b| b == 0));
            assert!(bytes[padded..].iter().all(|&b| b == 0xAA));
        }
    }

    #[test]
    fn missing_group_is_none_and_own_group_resolves() {
        assert_eq!(
            group_by_name("vosd-no-such-group-4f1e").expect("lookup"),
            None
        );
        let gid = rustix::process::getegid().as_raw();
        if let Some(name) = group_name(gid) {
            assert_eq!(group_by_name(&name).expect("lookup"), Some(gid));
        }
    }

    #[test]
    fn clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn own_process_is_alive() {
        assert!(process_alive(own_pid()));
        assert!(!process_alive(0x7fff_fff0));
    }
}
