//! The reference C implementation of Argon2id (phc-winner-argon2, through
//! the `argon2-sys` bindings, built with its SIMD `opt.c` for the building
//! machine's CPU), behind one safe function.
//!
//! It exists to measure the service's implementation (RustCrypto `argon2`)
//! against the reference, and to prove both derive the same key
//! (`tests/same_key.rs`). `ekycd` does not link it: docs/argon2.md has the
//! measurements and the reasons.

/// Why the reference implementation refused to hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argon2 reference implementation failed with code {0}")]
pub struct RefError(pub i32);

/// Argon2id v1.3 parameters, as the reference names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes (computed on one thread, so results do not depend on threads).
    pub p: u32,
}

/// Where the reference gets its working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// `malloc` and `free` for every evaluation (the reference's default).
    Fresh,
    /// One buffer per thread, kept between evaluations, as the service
    /// keeps its `KdfMemory`. The reference still wipes it after each use.
    ThreadBuffer,
}

/// 64-byte aligned chunks, so the SIMD code sees the alignment `malloc`
/// would give it and more.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

std::thread_local! {
    static BUFFER: std::cell::RefCell<Vec<Chunk>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `allocate_cbk` for [`Memory::ThreadBuffer`]: this thread's buffer,
/// grown if needed.
#[allow(unsafe_code)]
unsafe extern "C" fn thread_buffer(memory: *mut *mut u8, bytes: usize) -> std::ffi::c_int {
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let chunks = bytes.div_ceil(size_of::<Chunk>());
        if buffer.len() < chunks {
            buffer.resize(chunks, Chunk([0; 64]));
        }
        // SAFETY: argon2 passes a valid pointer to its memory pointer. The
        // buffer outlives the evaluation: argon2_ctx runs on this thread
        // (threads = 1) and nothing else touches BUFFER until it returns.
        unsafe { *memory = buffer.as_mut_ptr().cast() };
        0
    })
}

/// `free_cbk` for [`Memory::ThreadBuffer`]: the buffer stays for the next
/// evaluation (argon2 has wiped it already).
#[allow(unsafe_code)]
unsafe extern "C" fn keep_buffer(_memory: *mut u8, _bytes: usize) {}

/// Argon2id v1.3 of `password` with `salt` and the keyed-hashing `secret`,
/// into a 32-byte output: the same inputs as `ekyc_domain::keys::derive_key`.
pub fn argon2id(
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    params: RefParams,
    memory: Memory,
) -> Result<[u8; 32], RefError> {
    argon2id_with_ad(password, salt, secret, &[], params, memory)
}

/// [`argon2id`] with associated data, which the service does not use; here
/// for RFC 9106's test vector, which every implementation is checked on.
pub fn argon2id_with_ad(
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    ad: &[u8],
    params: RefParams,
    memory: Memory,
) -> Result<[u8; 32], RefError> {
    let (allocate_cbk, free_cbk): (argon2_sys::allocate_fptr, argon2_sys::deallocate_fptr) =
        match memory {
            Memory::Fresh => (None, None),
            Memory::ThreadBuffer => (Some(thread_buffer), Some(keep_buffer)),
        };
    let mut out = [0u8; 32];
    let len = |s: &[u8]| u32::try_from(s.len()).map_err(|_| RefError(-1));
    let mut ctx = argon2_sys::Argon2_Context {
        out: out.as_mut_ptr(),
        outlen: 32,
        // The context's pointers are mutable because the C code can wipe
        // the inputs, but only when asked to by `flags`, which stays 0.
        pwd: password.as_ptr().cast_mut(),
        pwdlen: len(password)?,
        salt: salt.as_ptr().cast_mut(),
        saltlen: len(salt)?,
        secret: secret.as_ptr().cast_mut(),
        secretlen: len(secret)?,
        ad: ad.as_ptr().cast_mut(),
        adlen: len(ad)?,
        t_cost: params.t,
        m_cost: params.m_kib,
        lanes: params.p,
        threads: 1,
        version: argon2_sys::ARGON2_VERSION_13,
        allocate_cbk,
        free_cbk,
        flags: 0,
    };
    // SAFETY: every pointer in `ctx` points into a live slice whose length
    // is the one given, all of them outlive the
    // call, `out` is the only one written, and flags = 0 keeps the C code
    // from writing to the inputs. argon2_ctx validates everything else.
    #[allow(unsafe_code)]
    let rc = unsafe { argon2_sys::argon2_ctx(&mut ctx, argon2_sys::Argon2_id) };
    if rc == 0 { Ok(out) } else { Err(RefError(rc)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9106's vector is checked for every implementation, this one
    // included, in tests/same_key.rs.

    #[test]
    fn refuses_invalid_parameters() {
        let tiny = RefParams {
            m_kib: 8,
            t: 1,
            p: 1,
        };
        let err = argon2id(b"pw", b"short", b"", tiny, Memory::Fresh);
        assert!(err.is_err(), "a 5-byte salt is below the minimum of 8");
        let no_passes = RefParams { t: 0, ..tiny };
        let err = argon2id(b"pw", b"saltsalt", b"", no_passes, Memory::ThreadBuffer);
        assert!(err.is_err(), "t = 0 is invalid");
    }
}
