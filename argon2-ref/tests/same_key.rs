//! The service's Argon2id (RustCrypto, through `ekyc_domain::keys`) and the
//! reference C implementation derive the same key from the same inputs, so
//! either could hash a registry the other reads.

use ekyc_argon2_ref::{Memory, RefParams, argon2id};
use ekyc_domain::keys::{KdfMemory, KdfParams, Pepper, SubjectKey, derive_key, derive_salt};
use ekyc_domain::normalize::normalize_id;
use proptest::prelude::*;

/// The key both ways, compared through its locator (HMAC-SHA256 under K):
/// `SubjectKey` never shows K itself.
fn both(
    pepper_bytes: [u8; 32],
    id: &str,
    params: KdfParams,
    memory: Memory,
) -> ([u8; 32], [u8; 32]) {
    let pepper = Pepper::new(1, &pepper_bytes);
    let id = normalize_id(id).expect("valid id");
    let service = derive_key(&pepper, &params, &id, &mut KdfMemory::new(&params))
        .expect("valid parameters")
        .locator();
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
    (
        service,
        SubjectKey::from_bytes_for_tests(reference).locator(),
    )
}

/// The published known-answer vector (docs/hashing.md) at the default cost.
#[test]
fn default_cost_vector() {
    let mut pepper = [0u8; 32];
    for (i, b) in pepper.iter_mut().enumerate() {
        *b = i as u8;
    }
    for memory in [Memory::Fresh, Memory::ThreadBuffer] {
        let (service, reference) = both(pepper, "079085001234", KdfParams::DEFAULT, memory);
        assert_eq!(service, reference);
        assert_eq!(
            hex::encode(reference),
            "52470e9b36baf4c33d0374ec2b80fa317918b551c7f881ebfec56528a2a482b4"
        );
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
        let (service, reference) = both(pepper, &format!("079{serial:09}"), params, memory);
        prop_assert_eq!(service, reference);
    }
}
