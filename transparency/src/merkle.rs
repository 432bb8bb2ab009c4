//! The Merkle Hash Tree of RFC 6962 section 2.1 over SHA-256, built from
//! stored complete subtrees.
//!
//! A tree of `n` leaves is never held in memory: the caller stores the hash
//! of every complete subtree as it is completed ([`Appender::push`] returns
//! them), and every other hash is derived from those. That works because
//! every range `D[a:b]` that RFC 6962's `MTH`, `PATH` and `PROOF` recurse
//! into starts at a multiple of the smallest power of two not below
//! `b - a`, so it splits into aligned complete subtrees exactly the way
//! `D[0:b-a]` does ([`compact_range`]), and its hash folds those from the
//! right. Proofs are generated in two steps, "which nodes" and "compute
//! over them", from one list of ranges, so the two can never disagree.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 6962 section 2.1), so that
/// no leaf can be mistaken for an interior node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes.
const NODE_PREFIX: u8 = 0x01;

/// The leaf hash of an entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of zero bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A complete subtree: leaves index<<level .. (index+1)<<level.
///
/// These are the only hashes a log stores: every root and proof element
/// is computed from them. The derived order (level,
/// then index) is the order of the node lists this module returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves: 0 is a leaf, `l` spans `2^l` leaves.
    pub level: u32,
    /// Position among the subtrees of this level, counted from the left.
    pub index: u64,
}

/// Why a proof could not be generated or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("first tree size {first} is larger than second tree size {second}")]
    BadRange {
        /// The earlier tree size.
        first: u64,
        /// The later tree size.
        second: u64,
    },
    /// The map handed in lacks a node the computation reads.
    #[error("stored node at level {}, index {} is missing", .0.level, .0.index)]
    MissingNode(NodeId),
    /// An [`Appender`] was given a compact range of the wrong length for its
    /// size (one hash per set bit of the size).
    #[error("compact range of tree size {size} must hold {expected} hashes, got {got}")]
    CompactRangeLength {
        /// The tree size given.
        size: u64,
        /// The number of hashes its compact range has.
        expected: usize,
        /// The number of hashes given.
        got: usize,
    },
    /// The proof has more or fewer hashes than the verification consumes.
    #[error("proof has the wrong number of hashes for the tree sizes")]
    WrongLength,
    /// The proof does not lead to the root (or roots) it was checked against.
    #[error("proof does not lead to the expected root")]
    Mismatch,
}

/// The complete subtrees that make up a tree of `size` leaves, left (largest) first.
///
/// One per set bit of `size`, from the highest bit down; the tree's root is
/// these hashes folded from the right.
pub fn compact_range(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// Appends leaves to a tree known only by its compact range.
///
/// The compact range is all that appending needs: a new leaf only ever
/// merges with the subtrees at the right edge of the tree. So the log can
/// resume from the hashes of [`compact_range`] after a restart instead of
/// reading the whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appender {
    /// Number of leaves appended so far.
    size: u64,
    /// The hashes of `compact_range(size)`, in that order. Invariant: its
    /// length is `size.count_ones()`.
    range: Vec<Hash>,
}

impl Appender {
    /// `range`: the hashes of compact_range(size), in that order. Err if the length is wrong.
    pub fn new(size: u64, range: Vec<Hash>) -> Result<Appender, ProofError> {
        let expected = size.count_ones() as usize;
        if range.len() != expected {
            return Err(ProofError::CompactRangeLength {
                size,
                expected,
                got: range.len(),
            });
        }
        Ok(Appender { size, range })
    }

    /// Appends a leaf hash; returns the nodes it completes: (level 0, the leaf) first, then every larger complete subtree ending at it, bottom up.
    ///
    /// The caller stores all of them; together with earlier pushes they are
    /// every complete subtree of the tree, which is what [`root_from`] and
    /// the proof functions read. A tree cannot hold more than `u64::MAX`
    /// leaves; 2^64 appends are not reachable in practice.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut completed = vec![(NodeId { level: 0, index }, leaf)];
        // Each trailing one bit of the old size is a subtree at the right
        // edge of the same height as the one just completed: they merge.
        let merges = index.trailing_ones() as usize;
        let keep = self.range.len().saturating_sub(merges);
        let mut hash = leaf;
        let mut level = 0;
        for left in self.range.drain(keep..).rev() {
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push((
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        self.range.push(hash);
        self.size += 1;
        completed
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of `compact_range(self.size())`, in that order: what to
    /// persist (or re-read) to resume appending.
    pub fn range(&self) -> &[Hash] {
        &self.range
    }

    /// The RFC 6962 root of the current tree (`empty_root()` at size 0).
    pub fn root(&self) -> Hash {
        fold_right(self.range.iter()).unwrap_or_else(empty_root)
    }
}

/// Which stored nodes [`root_from`] reads for a tree of `size` leaves (its
/// compact range; none for the empty tree).
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    sorted(compact_range(size))
}

/// Which stored nodes [`inclusion_proof`] reads for leaf `index` in a tree
/// of `size` leaves, sorted and without duplicates.
pub fn inclusion_nodes(index: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    check_index(index, size)?;
    Ok(nodes_of(&path_ranges(index, size)))
}

/// Which stored nodes [`consistency_proof`] reads between tree sizes `first`
/// and `second`, sorted and without duplicates (none when `first` is 0 or
/// equals `second`: the proof is empty).
pub fn consistency_nodes(first: u64, second: u64) -> Result<Vec<NodeId>, ProofError> {
    check_range(first, second)?;
    Ok(nodes_of(&proof_ranges(first, second)))
}

/// The RFC 6962 root `MTH(D[0:size])` from the stored nodes of
/// [`root_nodes`].
pub fn root_from(size: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, nodes)
}

/// The inclusion proof `PATH(index, D[0:size])` of RFC 6962 section 2.1.1,
/// from the stored nodes of [`inclusion_nodes`]. Its first hash is the
/// sibling nearest the leaf.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    check_index(index, size)?;
    path_ranges(index, size)
        .into_iter()
        .map(|(start, end)| range_hash(start, end, nodes))
        .collect()
}

/// The consistency proof `PROOF(first, D[0:second])` of RFC 6962 section
/// 2.1.2, from the stored nodes of [`consistency_nodes`]. Empty when
/// `first` is 0 (the empty tree is a prefix of every tree) or equals
/// `second`.
pub fn consistency_proof(
    first: u64,
    second: u64,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Vec<Hash>, ProofError> {
    check_range(first, second)?;
    proof_ranges(first, second)
        .into_iter()
        .map(|(start, end)| range_hash(start, end, nodes))
        .collect()
}

/// Checks an inclusion proof by RFC 9162 section 2.1.3.2: that `leaf` is
/// leaf `index` of the tree of `size` leaves whose root is `root`.
///
/// The proof does not by itself bind `size`: a proof for one size can
/// verify for another size of the same shape. The size is bound by the
/// signed checkpoint that carries `root`, so pass the checkpoint's size.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    check_index(index, size)?;
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where this node is a right-edge node without
            // a sibling: they add no hash.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Checks a consistency proof by RFC 9162 section 2.1.4.2: that the tree of
/// `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root`.
///
/// Equal sizes need an empty proof and equal roots; a first size of 0 needs
/// an empty proof (the empty tree is a prefix of every tree, whatever root
/// is claimed for it); a first size above the second is an error.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_range(first, second)?;
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if first_root != second_root {
            return Err(ProofError::Mismatch);
        }
        return Ok(());
    }
    if first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // When the first tree is a complete subtree, PROOF omits its root (the
    // verifier has it); put it back so both cases run the same loop.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(first_root);
    }
    path.extend(proof);
    let Some((&seed, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for &c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

fn check_index(index: u64, size: u64) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    Ok(())
}

fn check_range(first: u64, second: u64) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::BadRange { first, second });
    }
    Ok(())
}

/// The largest power of two smaller than `n` (`k` of RFC 6962), for `n >= 2`.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The ranges `[start, end)` whose hashes make up `PATH(index, D[0:size])`,
/// in proof order (nearest the leaf first). Requires `index < size`.
fn path_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    // RFC 6962 recurses top-down and appends each level's sibling after the
    // deeper levels' path; walk down, then reverse.
    let mut ranges = Vec::new();
    let (mut start, mut end) = (0, size);
    while end - start > 1 {
        let mid = start + split(end - start);
        if index < mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((start, mid));
            start = mid;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose hashes make up `PROOF(first, D[0:second])`, in proof
/// order. Empty when `first` is 0 or equals `second`; requires
/// `first <= second`.
fn proof_ranges(first: u64, second: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if first == 0 {
        return ranges;
    }
    // SUBPROOF(m, D[start:end], whole): `whole` says D[start:end] still
    // starts at leaf 0, so that a first tree equal to it needs no hash.
    let (mut m, mut start, mut end, mut whole) = (first, 0, second, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                ranges.push((start, end));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
}

/// The aligned complete subtrees that make up `D[start:end]`, largest
/// first. `start` must be a multiple of the smallest power of two not
/// below `end - start`, which holds for every range of the recursions
/// above (and for `start == 0`).
fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let len = end - start;
    let mut nodes = Vec::with_capacity(len.count_ones() as usize);
    let mut at = start;
    for level in (0..u64::BITS).rev() {
        if (len >> level) & 1 == 1 {
            nodes.push(NodeId {
                level,
                index: at >> level,
            });
            at += 1 << level;
        }
    }
    nodes
}

/// `MTH(D[start:end])` from stored nodes, for an aligned range.
fn range_hash(start: u64, end: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
    let hashes = range_nodes(start, end)
        .into_iter()
        .map(|id| nodes.get(&id).ok_or(ProofError::MissingNode(id)))
        .collect::<Result<Vec<_>, _>>()?;
    // An empty range has the empty tree's hash (no recursion asks for one).
    Ok(fold_right(hashes.into_iter()).unwrap_or_else(empty_root))
}

/// Folds the subtree hashes of a compact range from the right: the last
/// two are siblings, and so on up. `None` for no hashes.
fn fold_right<'a>(hashes: impl DoubleEndedIterator<Item = &'a Hash>) -> Option<Hash> {
    let mut rev = hashes.rev();
    let mut acc = *rev.next()?;
    for left in rev {
        acc = node_hash(left, &acc);
    }
    Some(acc)
}

fn nodes_of(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    sorted(
        ranges
            .iter()
            .flat_map(|&(start, end)| range_nodes(start, end))
            .collect(),
    )
}

fn sorted(mut nodes: Vec<NodeId>) -> Vec<NodeId> {
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- The reference: RFC 6962 2.1.1 and 2.1.2, transcribed literally
    // over a slice of leaf hashes. ----

    /// The largest power of two smaller than n, by counting (not by bits, so
    /// the reference shares no code with the implementation).
    fn naive_k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => d[0],
            n => {
                let k = naive_k(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = naive_k(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        subproof(m, d, true)
    }

    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = naive_k(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// Every complete-subtree node of the tree over `leaves`, as the log
    /// would store them, and the Appender roots after each push.
    fn build(leaves: &[Hash]) -> (HashMap<NodeId, Hash>, Vec<Hash>) {
        let mut appender = Appender::new(0, vec![]).expect("empty range");
        let mut nodes = HashMap::new();
        let mut roots = vec![appender.root()];
        for leaf in leaves {
            for (id, hash) in appender.push(*leaf) {
                assert!(nodes.insert(id, hash).is_none(), "{id:?} produced twice");
            }
            roots.push(appender.root());
        }
        (nodes, roots)
    }

    fn only(nodes: &HashMap<NodeId, Hash>, ids: &[NodeId]) -> HashMap<NodeId, Hash> {
        ids.iter().map(|id| (*id, nodes[id])).collect()
    }

    fn flipped(h: &Hash, byte: usize) -> Hash {
        let mut h = *h;
        h[byte] ^= 0x01;
        h
    }

    /// The inclusion checks for one (index, size): the generated proof is
    /// the reference one from exactly the nodes announced, verifies, and
    /// every mutation is refused.
    fn check_inclusion(
        m: u64,
        n: u64,
        leaves: &[Hash],
        nodes: &HashMap<NodeId, Hash>,
        exhaustive: bool,
    ) {
        let (mu, nu) = (m as usize, n as usize);
        let ids = inclusion_nodes(m, n).expect("index in range");
        let mut sorted_ids = ids.clone();
        sorted_ids.sort();
        sorted_ids.dedup();
        assert_eq!(ids, sorted_ids, "nodes sorted and unique");
        let map = only(nodes, &ids);
        let got = inclusion_proof(m, n, &map).expect("nodes suffice");
        let want = path(mu, &leaves[..nu]);
        assert_eq!(got, want, "PATH({m}, D[{n}])");
        let root = mth(&leaves[..nu]);
        let leaf = leaves[mu];
        assert_eq!(verify_inclusion(m, n, &leaf, &got, &root), Ok(()));
        // Every node announced is read: dropping any one fails.
        for id in &ids {
            let mut less = map.clone();
            less.remove(id);
            assert_eq!(
                inclusion_proof(m, n, &less),
                Err(ProofError::MissingNode(*id))
            );
        }

        if exhaustive {
            for i in 0..got.len() {
                for b in 0..32 {
                    let mut bad = got.clone();
                    bad[i] = flipped(&bad[i], b);
                    assert!(verify_inclusion(m, n, &leaf, &bad, &root).is_err());
                }
            }
            for b in 0..32 {
                assert!(verify_inclusion(m, n, &flipped(&leaf, b), &got, &root).is_err());
                assert!(verify_inclusion(m, n, &leaf, &got, &flipped(&root, b)).is_err());
            }
        } else {
            let i = (m as usize) % got.len().max(1);
            if !got.is_empty() {
                let mut bad = got.clone();
                bad[i] = flipped(&bad[i], (n % 32) as usize);
                assert!(verify_inclusion(m, n, &leaf, &bad, &root).is_err());
            }
            assert!(verify_inclusion(m, n, &flipped(&leaf, 7), &got, &root).is_err());
            assert!(verify_inclusion(m, n, &leaf, &got, &flipped(&root, 31)).is_err());
        }
        for i in 0..got.len() {
            let mut shorter = got.clone();
            shorter.remove(i);
            assert!(verify_inclusion(m, n, &leaf, &shorter, &root).is_err());
        }
        for i in 0..=got.len() {
            for extra in [leaf, root, [0u8; 32]] {
                let mut longer = got.clone();
                longer.insert(i, extra);
                assert!(verify_inclusion(m, n, &leaf, &longer, &root).is_err());
            }
        }
        // Another leaf of the same tree: never the same path.
        for other in [m.wrapping_sub(1), m + 1] {
            if other < n {
                assert!(verify_inclusion(other, n, &leaf, &got, &root).is_err());
            }
        }
        // Another tree size, checked against that tree's own root.
        for other in [n - 1, n + 1] {
            if m < other && (other as usize) <= leaves.len() {
                let other_root = mth(&leaves[..other as usize]);
                assert!(verify_inclusion(m, other, &leaf, &got, &other_root).is_err());
            }
        }
        assert_eq!(
            verify_inclusion(n, n, &leaf, &got, &root),
            Err(ProofError::IndexOutOfRange { index: n, size: n })
        );
    }

    /// The consistency checks for one (first, second).
    fn check_consistency(
        m: u64,
        n: u64,
        leaves: &[Hash],
        nodes: &HashMap<NodeId, Hash>,
        exhaustive: bool,
    ) {
        let (mu, nu) = (m as usize, n as usize);
        let ids = consistency_nodes(m, n).expect("first <= second");
        let mut sorted_ids = ids.clone();
        sorted_ids.sort();
        sorted_ids.dedup();
        assert_eq!(ids, sorted_ids, "nodes sorted and unique");
        let map = only(nodes, &ids);
        let got = consistency_proof(m, n, &map).expect("nodes suffice");
        let want = if m == 0 {
            vec![]
        } else {
            proof(mu, &leaves[..nu])
        };
        assert_eq!(got, want, "PROOF({m}, D[{n}])");
        let (r1, r2) = (mth(&leaves[..mu]), mth(&leaves[..nu]));
        assert_eq!(verify_consistency(m, n, &r1, &r2, &got), Ok(()));
        for id in &ids {
            let mut less = map.clone();
            less.remove(id);
            assert_eq!(
                consistency_proof(m, n, &less),
                Err(ProofError::MissingNode(*id))
            );
        }

        if m == 0 {
            // Nothing binds a size-0 tree but the empty proof.
            assert_eq!(
                verify_consistency(0, n, &r1, &r2, &[r2]),
                Err(ProofError::WrongLength)
            );
            return;
        }
        if exhaustive {
            for i in 0..got.len() {
                for b in 0..32 {
                    let mut bad = got.clone();
                    bad[i] = flipped(&bad[i], b);
                    assert!(verify_consistency(m, n, &r1, &r2, &bad).is_err());
                }
            }
            for b in 0..32 {
                assert!(verify_consistency(m, n, &flipped(&r1, b), &r2, &got).is_err());
                assert!(verify_consistency(m, n, &r1, &flipped(&r2, b), &got).is_err());
            }
        } else {
            if !got.is_empty() {
                let i = (n as usize) % got.len();
                let mut bad = got.clone();
                bad[i] = flipped(&bad[i], (m % 32) as usize);
                assert!(verify_consistency(m, n, &r1, &r2, &bad).is_err());
            }
            assert!(verify_consistency(m, n, &flipped(&r1, 3), &r2, &got).is_err());
            assert!(verify_consistency(m, n, &r1, &flipped(&r2, 30), &got).is_err());
        }
        for i in 0..got.len() {
            let mut shorter = got.clone();
            shorter.remove(i);
            assert!(verify_consistency(m, n, &r1, &r2, &shorter).is_err());
        }
        for i in 0..=got.len() {
            for extra in [r1, r2, [0u8; 32]] {
                let mut longer = got.clone();
                longer.insert(i, extra);
                assert!(verify_consistency(m, n, &r1, &r2, &longer).is_err());
            }
        }
        // Other sizes, each with the root it really has.
        for (a, b) in [(m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)] {
            if (a, b) != (m, n) && a <= b && (b as usize) <= leaves.len() {
                let (ra, rb) = (mth(&leaves[..a as usize]), mth(&leaves[..b as usize]));
                if a == 0 || a == b {
                    continue; // Empty proofs are the rule there, not a mutation.
                }
                assert!(verify_consistency(a, b, &ra, &rb, &got).is_err());
            }
        }
        assert_eq!(
            verify_consistency(n + 1, n, &r2, &r1, &got),
            Err(ProofError::BadRange {
                first: n + 1,
                second: n
            })
        );
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_from(0, &HashMap::new()), Ok(empty_root()));
        assert_eq!(Appender::new(0, vec![]).map(|a| a.root()), Ok(empty_root()));
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let mut leaf_input = vec![0x00];
        leaf_input.extend_from_slice(b"entry");
        assert_eq!(
            leaf_hash(b"entry"),
            <Hash>::from(Sha256::digest(&leaf_input))
        );
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let mut node_input = vec![0x01];
        node_input.extend_from_slice(&l);
        node_input.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), <Hash>::from(Sha256::digest(&node_input)));
    }

    #[test]
    fn compact_range_is_one_aligned_subtree_per_bit() {
        assert_eq!(compact_range(0), vec![]);
        assert_eq!(
            compact_range(13),
            vec![
                NodeId { level: 3, index: 0 },
                NodeId { level: 2, index: 2 },
                NodeId {
                    level: 0,
                    index: 12
                },
            ]
        );
        assert_eq!(compact_range(u64::MAX).len(), 64);
    }

    #[test]
    fn appender_refuses_a_range_of_the_wrong_length() {
        assert_eq!(
            Appender::new(5, vec![[0; 32]]),
            Err(ProofError::CompactRangeLength {
                size: 5,
                expected: 2,
                got: 1
            })
        );
        assert!(Appender::new(5, vec![[0; 32]; 2]).is_ok());
    }

    #[test]
    fn appender_resumes_from_its_compact_range() {
        let l = leaves(40);
        let mut whole = Appender::new(0, vec![]).expect("empty range");
        for (i, leaf) in l.iter().enumerate() {
            let resumed_range = whole.range().to_vec();
            let mut resumed = Appender::new(i as u64, resumed_range).expect("own range");
            assert_eq!(resumed.push(*leaf), whole.push(*leaf));
            assert_eq!(resumed, whole);
        }
    }

    #[test]
    fn appender_emits_every_subtree_ending_at_the_leaf_bottom_up() {
        let mut a = Appender::new(7, vec![[1; 32], [2; 32], [3; 32]]).expect("size 7");
        let ids: Vec<NodeId> = a.push([4; 32]).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            vec![
                NodeId { level: 0, index: 7 },
                NodeId { level: 1, index: 3 },
                NodeId { level: 2, index: 1 },
                NodeId { level: 3, index: 0 },
            ]
        );
        assert_eq!(a.range().len(), 1);
    }

    /// Sizes 0..=70: roots, every inclusion proof and every consistency
    /// proof against the literal RFC 6962 reference, and every mutation.
    #[test]
    fn small_trees_match_the_rfc_reference() {
        const MAX: usize = 70;
        let l = leaves(MAX + 1);
        let (nodes, roots) = build(&l);
        for n in 0..=MAX {
            assert_eq!(roots[n], mth(&l[..n]), "Appender root of size {n}");
            let ids = root_nodes(n as u64);
            assert_eq!(root_from(n as u64, &only(&nodes, &ids)), Ok(roots[n]));
            for m in 0..n {
                check_inclusion(m as u64, n as u64, &l, &nodes, true);
            }
            for m in 0..=n {
                check_consistency(m as u64, n as u64, &l, &nodes, true);
            }
        }
    }

    #[test]
    fn equal_sizes_need_an_empty_proof_and_equal_roots() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(verify_consistency(5, 5, &a, &a, &[]), Ok(()));
        assert_eq!(
            verify_consistency(5, 5, &a, &b, &[]),
            Err(ProofError::Mismatch)
        );
        assert_eq!(
            verify_consistency(5, 5, &a, &a, &[a]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(verify_consistency(0, 5, &a, &b, &[]), Ok(()));
        assert_eq!(
            verify_consistency(3, 5, &a, &b, &[]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            consistency_nodes(6, 5),
            Err(ProofError::BadRange {
                first: 6,
                second: 5
            })
        );
        assert_eq!(
            inclusion_nodes(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
    }

    /// RFC 9162 inclusion proofs say nothing about the size beyond the
    /// shape of the path: leaf 4's path in a tree of 7 has the shape of its
    /// path in a tree of 8. The signed checkpoint binds size and root
    /// together; this test pins that behaviour so nobody relies on more.
    #[test]
    fn inclusion_proofs_bind_the_size_only_through_the_root() {
        let l = leaves(8);
        let (nodes, _) = build(&l);
        let p = inclusion_proof(4, 7, &nodes).expect("nodes");
        let root7 = mth(&l[..7]);
        assert_eq!(verify_inclusion(4, 8, &l[4], &p, &root7), Ok(()));
        assert!(verify_inclusion(4, 8, &l[4], &p, &mth(&l)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Larger trees: random sizes and index pairs, each proof against
        /// the reference and a sample of mutations.
        #[test]
        fn larger_trees_match_the_rfc_reference(
            n in 1u64..5000,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let l = leaves(n as usize + 1);
            let (nodes, roots) = build(&l);
            prop_assert_eq!(roots[n as usize], mth(&l[..n as usize]));
            prop_assert_eq!(root_from(n, &only(&nodes, &root_nodes(n))), Ok(roots[n as usize]));
            check_inclusion(a % n, n, &l, &nodes, false);
            let (first, second) = {
                let (x, y) = (a % (n + 1), b % (n + 1));
                (x.min(y), x.max(y))
            };
            check_consistency(first, second, &l, &nodes, false);
        }
    }
}
