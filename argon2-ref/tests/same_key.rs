//! Every Argon2id implementation the service can run (argon2-rust, its
//! default, and RustCrypto, its fallback, both through
//! `ekyc_domain::keys`) and the reference C implementation derive the same
//! output from the same inputs: RFC 9106's vector, the published known
//! answers of docs/hashing.md, and any pepper, ID and cost. So any of them
//! could hash a registry the others read, and a registry hashed by one is
//! verified by the others.

use ekyc_argon2_ref::{Memory, RefParams, argon2id, argon2id_with_ad};
use ekyc_domain::keys::{
    KdfImplementation, KdfMemory, KdfParams, Pepper, SubjectKey, argon2id_raw, derive_key,
    derive_salt, self_test,
};
use ekyc_domain::normalize::normalize_id;
use proptest::prelude::*;

/// What the service can run.
const SERVICE: [KdfImplementation; 2] =
    [KdfImplementation::Argon2Rust, KdfImplementation::RustCrypto];

/// The key every way, compared through its locator (HMAC-SHA256 under K):
/// `SubjectKey` never shows K itself. The service's implementations first,
/// then the reference C.
fn every_way(pepper_bytes: [u8; 32], id: &str, params: KdfParams, memory: Memory) -> Vec<[u8; 32]> {
    let pepper = Pepper::new(1, &pepper_bytes);
    let id = normalize_id(id).expect("valid id");
    let mut out: Vec<[u8; 32]> = SERVICE
        .into_iter()
        .map(|imp| {
            derive_key(&pepper, &params, &id, &mut KdfMemory::with(&params, imp))
                .expect("valid parameters")
                .locator()
        })
        .collect();
    let reference = argon2id(
        id.as_str().as_bytes(),
        &derive_salt(&pepper, &id),
        pepper.expose_secret(),
        RefParams {
            m_kib: params.m_kib,
            t: params.t,
            p: params.p,
        },
        memory,
    )
    .expect("valid parameters");
    out.push(SubjectKey::from_bytes_for_tests(reference).locator());
    out
}

/// RFC 9106, section 5.3: the Argon2id test vector (with a secret and
/// associated data, 4 lanes), by every implementation.
#[test]
fn rfc_9106_vector() {
    let params = KdfParams {
        id: 0,
        m_kib: 32,
        t: 3,
        p: 4,
    };
    let expected = "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659";
    for imp in SERVICE {
        let tag = argon2id_raw(
            &params,
            &[0x01; 32],
            &[0x02; 16],
            &[0x03; 8],
            &[0x04; 12],
            &mut KdfMemory::with(&params, imp),
        )
        .expect("valid parameters");
        assert_eq!(hex::encode(tag), expected, "{}", imp.name());
    }
    let reference = argon2id_with_ad(
        &[0x01; 32],
        &[0x02; 16],
        &[0x03; 8],
        &[0x04; 12],
        RefParams {
            m_kib: 32,
            t: 3,
            p: 4,
        },
        Memory::Fresh,
    )
    .expect("valid parameters");
    assert_eq!(hex::encode(reference), expected, "reference C");
}

/// The published known-answer vectors (docs/hashing.md): the test cost and
/// the default cost, with fresh and reused memory.
#[test]
fn published_vectors() {
    let mut pepper = [0u8; 32];
    for (i, b) in pepper.iter_mut().enumerate() {
        *b = i as u8;
    }
    let test_cost = KdfParams {
        id: 9,
        m_kib: 64,
        t: 1,
        p: 1,
    };
    for (params, locator) in [
        (
            test_cost,
            "a19be1a2eb5fbf40b9bb9b33974fbf54f8a387d15b889916bbca69af281d6724",
        ),
        (
            KdfParams::DEFAULT,
            "52470e9b36baf4c33d0374ec2b80fa317918b551c7f881ebfec56528a2a482b4",
        ),
    ] {
        for memory in [Memory::Fresh, Memory::ThreadBuffer] {
            for (n, got) in every_way(pepper, "079085001234", params, memory)
                .into_iter()
                .enumerate()
            {
                assert_eq!(
                    hex::encode(got),
                    locator,
                    "implementation {n} at m={}",
                    params.m_kib
                );
            }
        }
    }
}

/// The start-up self-test passes for every implementation on this CPU.
#[test]
fn every_implementation_passes_the_self_test() {
    let small = KdfParams {
        id: 0,
        m_kib: 64,
        t: 1,
        p: 1,
    };
    for imp in SERVICE {
        self_test(imp, &small).unwrap_or_else(|e| panic!("{}: {e}", imp.backend()));
        self_test(imp, &KdfParams::DEFAULT).unwrap_or_else(|e| panic!("{}: {e}", imp.backend()));
    }
}

/// One thread's memory reused across parameter sets that grow and shrink,
/// as a pool's thread meets them, and released when the thread goes idle,
/// gives each set's own answer.
#[test]
fn reused_memory_across_costs_changes_nothing() {
    let pepper = Pepper::new(1, &[9; 32]);
    let id = normalize_id("079085001234").expect("id");
    let costs = [(8, 1, 1), (2048, 2, 1), (64, 3, 2), (1024, 1, 4), (8, 2, 1)];
    for imp in SERVICE {
        let mut reused = KdfMemory::with(&KdfParams::DEFAULT, imp);
        for (m_kib, t, p) in costs {
            let params = KdfParams { id: 0, m_kib, t, p };
            let fresh = derive_key(&pepper, &params, &id, &mut KdfMemory::with(&params, imp))
                .expect("derive")
                .locator();
            let again = derive_key(&pepper, &params, &id, &mut reused)
                .expect("derive")
                .locator();
            assert_eq!(fresh, again, "{} at {m_kib}/{t}/{p}", imp.name());
            assert!(reused.held_bytes() >= m_kib as usize * 1024);
            // A thread gone idle gives its memory back; the next
            // evaluation maps it again and gives the same key.
            reused.release();
            assert_eq!(reused.held_bytes(), 0, "{}", imp.name());
            let after = derive_key(&pepper, &params, &id, &mut reused)
                .expect("derive")
                .locator();
            assert_eq!(fresh, after, "{} after a release", imp.name());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any pepper, any valid ID, small costs with 1-4 lanes.
    #[test]
    fn same_key_for_any_input(
        pepper in any::<[u8; 32]>(),
        serial in 0u64..1_000_000_000,
        m_blocks in 1u32..16,
        t in 1u32..4,
        p in 1u32..5,
        reuse in any::<bool>(),
    ) {
        let params = KdfParams { id: 0, m_kib: 8 * p * m_blocks, t, p };
        // A reused buffer carries the previous evaluation's size; sizes
        // vary here, so growing it is exercised too.
        let memory = if reuse { Memory::ThreadBuffer } else { Memory::Fresh };
        let keys = every_way(pepper, &format!("079{serial:09}"), params, memory);
        for key in &keys[1..] {
            prop_assert_eq!(key, &keys[0]);
        }
    }
}
