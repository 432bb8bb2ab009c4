//! Checks the test vectors of `docs/decision-log.md` section 6 against the
//! code, so that the page other implementations are written from cannot
//! drift from what the service computes.
//!
//! Each vector sits in a fenced block whose info string names it (for
//! example ```` ```text roots ````); the test reads those blocks back.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;

use crate::{
    Appender, Checkpoint, DecisionEntry, Hash, NodeId, NoteSigner, NoteVerifier, consistency_proof,
    inclusion_proof, leaf_hash, root_from, verify_consistency, verify_inclusion,
};

const DOC: &str = include_str!("../../docs/decision-log.md");
const KEY_NAME: &str = "ekyc.local/decision-log";
const SEED: [u8; 32] = [0x01; 32];

/// The three entries of the page: a `Verify`, a `VerifyBatch` item and a
/// `ListSubjectAccesses` about the first subject.
fn entries() -> [DecisionEntry; 3] {
    let pair = |f: &str, r: &str| (f.to_owned(), r.to_owned());
    [
        DecisionEntry {
            v: 1,
            time_ms: 1_767_225_600_000,
            tenant: "tenant-demo-01".into(),
            api_key: "ak_7f3a9c2e".into(),
            purpose: "ACCOUNT_OPENING".into(),
            consent: "59b0eede851c1968121f0e4933dc9572d8dde700e0a7352e9f90313756214d25".into(),
            transaction: "tx_95cd603fe577fa9548ec0c9b50b06756".into(),
            request: "req-0001".into(),
            registry_version: 3,
            method: "Verify".into(),
            fields: vec![
                pair("full_name", "MATCH_FOLDED"),
                pair("date_of_birth", "MATCH"),
            ],
            decision: "YES".into(),
            subject: "43ac647142dac29a5a3105ed53d8b08638e06e288044d7228ef8c985ab79dfa1".into(),
        },
        DecisionEntry {
            v: 1,
            time_ms: 1_767_225_601_250,
            tenant: "tenant-demo-01".into(),
            api_key: "ak_7f3a9c2e".into(),
            purpose: "ACCOUNT_OPENING".into(),
            consent: "721977251f932ad2013ecf9dab390505ada2bab0b2362b496fe553221234b9e6".into(),
            transaction: "tx_709b55bd3da0f5a838125bd0ee20c5bf".into(),
            request: "batch-0002/1".into(),
            registry_version: 3,
            method: "VerifyBatch".into(),
            fields: vec![
                pair("full_name", "MATCH"),
                pair("date_of_birth", "NO_MATCH"),
                pair("place_of_residence", "NOT_AVAILABLE"),
            ],
            decision: "NO".into(),
            subject: "70213192283560990cc7315457795d1af358aafdb8d1e97c06cbf21dd03d889b".into(),
        },
        DecisionEntry {
            v: 1,
            time_ms: 1_767_229_200_000,
            tenant: "tenant-demo-02".into(),
            api_key: "ak_0c41d8b5".into(),
            purpose: "DATA_SUBJECT_REQUEST".into(),
            consent: "3eea4f0f1252bcaa67d6c52aafad538f445429c00ee717275e907b7da1f13b0c".into(),
            transaction: "tx_27ca64c092a959c7edc525ed45e845b1".into(),
            request: "dsr-0003".into(),
            registry_version: 4,
            method: "ListSubjectAccesses".into(),
            fields: vec![],
            decision: "LOOKUP".into(),
            subject: "43ac647142dac29a5a3105ed53d8b08638e06e288044d7228ef8c985ab79dfa1".into(),
        },
    ]
}

/// Leaves 0..=2 are the entries'; leaves 3..=6 hash the strings "3".."6".
fn leaves() -> Vec<Hash> {
    let mut leaves: Vec<Hash> = entries().iter().map(|e| leaf_hash(&e.encode())).collect();
    leaves.extend((3..=6).map(|i: u32| leaf_hash(i.to_string().as_bytes())));
    leaves
}

/// The stored nodes of the tree of 7 leaves, and its roots by size.
fn tree() -> (HashMap<NodeId, Hash>, Vec<Hash>) {
    let mut appender = Appender::new(0, vec![]).expect("empty range");
    let mut nodes = HashMap::new();
    let mut roots = vec![];
    for leaf in leaves() {
        nodes.extend(appender.push(leaf));
        roots.push(appender.root());
    }
    (nodes, roots)
}

fn signer() -> NoteSigner {
    NoteSigner::new(KEY_NAME, SigningKey::from_bytes(&SEED)).expect("valid name")
}

fn checkpoint() -> Checkpoint {
    let (_, roots) = tree();
    Checkpoint {
        origin: KEY_NAME.into(),
        size: 7,
        root: roots[6],
    }
}

/// Section 6 of the page, where the vectors live.
fn section() -> &'static str {
    let start = DOC
        .find("\n## 6. Test vectors\n")
        .expect("docs/decision-log.md has a section 6. Test vectors");
    &DOC[start..]
}

/// The text of the fenced block with info string `info`, with a newline
/// ending every line.
fn block(info: &str) -> String {
    let fence = format!("\n```{info}\n");
    let section = section();
    let start = section
        .find(&fence)
        .unwrap_or_else(|| panic!("no ```{info} block in section 6"))
        + fence.len();
    let len = section[start..]
        .find("```\n")
        .unwrap_or_else(|| panic!("```{info} block is not closed"));
    section[start..start + len].to_owned()
}

/// The block's lines as (label, hex hash) pairs.
fn hex_lines(info: &str) -> Vec<(String, String)> {
    block(info)
        .lines()
        .map(|line| {
            let (label, value) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("```{info} line {line:?} is not `label value`"));
            (label.to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

#[test]
fn entries_match_the_page() {
    for (i, entry) in entries().iter().enumerate() {
        let text = block(&format!("json entry-{i}"));
        let bytes = text
            .strip_suffix('\n')
            .expect("block ends with a newline")
            .as_bytes();
        assert_eq!(
            std::str::from_utf8(bytes).ok(),
            std::str::from_utf8(&entry.encode()).ok(),
            "entry {i} bytes"
        );
        assert_eq!(DecisionEntry::decode(bytes).ok().as_ref(), Some(entry));
    }
    let want: Vec<(String, String)> = leaves()[..3]
        .iter()
        .enumerate()
        .map(|(i, h)| (i.to_string(), hex::encode(h)))
        .collect();
    assert_eq!(hex_lines("text leaf-hashes"), want);
}

#[test]
fn tree_matches_the_page() {
    let leaves = leaves();
    let want: Vec<(String, String)> = (3..7)
        .map(|i| (i.to_string(), hex::encode(leaves[i])))
        .collect();
    assert_eq!(hex_lines("text stand-in-leaves"), want);

    let (nodes, roots) = tree();
    let want: Vec<(String, String)> = roots
        .iter()
        .enumerate()
        .map(|(i, r)| ((i + 1).to_string(), hex::encode(r)))
        .collect();
    assert_eq!(hex_lines("text roots"), want);
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(root_from(i as u64 + 1, &nodes).as_ref(), Ok(root));
    }

    let inclusion = inclusion_proof(2, 7, &nodes).expect("nodes");
    let page: Vec<String> = block("text inclusion-2-7")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(page, hexes(&inclusion));
    assert_eq!(
        verify_inclusion(2, 7, &leaves[2], &inclusion, &roots[6]),
        Ok(())
    );

    let consistency = consistency_proof(3, 7, &nodes).expect("nodes");
    let page: Vec<String> = block("text consistency-3-7")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(page, hexes(&consistency));
    assert_eq!(
        verify_consistency(3, 7, &roots[2], &roots[6], &consistency),
        Ok(())
    );
}

#[test]
fn checkpoint_matches_the_page() {
    let signer = signer();
    let verifier = signer.verifier();
    let key = SigningKey::from_bytes(&SEED).verifying_key();
    let want = vec![
        ("public-key".to_owned(), hex::encode(key.to_bytes())),
        ("key-hash".to_owned(), hex::encode(verifier.key_hash())),
    ];
    assert_eq!(hex_lines("text key"), want);

    let vkey = block("text vkey");
    assert_eq!(vkey.trim_end(), verifier.to_vkey());
    assert_eq!(
        NoteVerifier::from_vkey(vkey.trim_end()),
        Ok(verifier.clone())
    );

    let note = block("text checkpoint-7");
    assert_eq!(note, signer.sign(&checkpoint()));
    assert_eq!(verifier.open(&note), Ok(checkpoint()));
    assert!(note.contains(&format!("\n{}\n", STANDARD.encode(checkpoint().root))));
}
