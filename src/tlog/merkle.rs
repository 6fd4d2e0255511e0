//! RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and proof
//! verification.
//!
//! Pure: no I/O. Proof generation reads complete-subtree hashes through the
//! [`NodeSource`] trait, so the same code serves proofs from stored tiles
//! (the server) and from leaves held in memory (tests, auditors).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// A hash written in standard base64, as every C2SP text format does.
pub fn hash_from_base64(s: &str) -> Option<Hash> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Hash::try_from(bytes).ok()
}

/// Appends each hash in standard base64 on its own line.
pub fn push_base64_lines(out: &mut String, hashes: &[Hash]) {
    use base64::Engine;
    for h in hashes {
        base64::engine::general_purpose::STANDARD.encode_string(h, out);
        out.push('\n');
    }
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash of an entry: SHA-256(0x00 || entry).
/// Lower-case hex, the way digests are printed for people.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old size {old} is larger than new size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyOldTree,
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("hash is {0} bytes, want 32")]
    BadHashLength(usize),
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves with
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size1` leaves with `root1` is a prefix of the
/// tree of `size2` leaves with `root2` (RFC 9162 §2.1.4.2).
///
/// Roots are byte strings rather than [`Hash`] because equal sizes need no
/// hashing: the claim is then only that the two roots are equal.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesReversed {
            old: size1,
            new: size2,
        });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let root1: &Hash = root1
        .try_into()
        .map_err(|_| ProofError::BadHashLength(root1.len()))?;
    let root2: &Hash = root2
        .try_into()
        .map_err(|_| ProofError::BadHashLength(root2.len()))?;
    // When size1 is a power of two, the old root is itself a node of the
    // new tree and the proof omits it.
    let seed = size1.is_power_of_two().then_some(root1);
    let (fr, sr) = consistency_roots(size1, size2, proof, seed)?;
    if &fr != root1 || &sr != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The (old, new) roots a consistency proof from `size1` to `size2`
/// (0 < size1 < size2) leads to. `old_root` must be given exactly when
/// `size1` is a power of two, since the proof then omits it; otherwise the
/// old root is derived from the proof alone, which is what makes a proof
/// evidence of which old tree a new tree extends.
pub fn consistency_roots(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    old_root: Option<&Hash>,
) -> Result<(Hash, Hash), ProofError> {
    if size1 == 0 || size1 >= size2 || old_root.is_some() != size1.is_power_of_two() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    path.extend(old_root);
    path.extend(proof.iter());
    let (first, rest) = path.split_first().ok_or(ProofError::WrongLength)?;
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok((fr, sr))
}

/// Where proof generation reads hashes of complete subtrees.
pub trait NodeSource {
    /// Error reading a hash (e.g. storage failure, missing tile).
    type Error;
    /// Hash of the complete subtree of `2^height` leaves that is the
    /// `index`-th at that height, i.e. `MTH(D[index·2^h .. (index+1)·2^h])`.
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, Self::Error>;

    /// Whether hashes at `height` are read directly (true by default).
    /// Those at other heights the prover computes from their two children
    /// and remembers, so each is hashed once however many proofs use it.
    fn stores(&self, _height: u32) -> bool {
        true
    }
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Computes roots and proofs over a [`NodeSource`], remembering every
/// subtree root it computed: proofs for neighbouring leaves share most of
/// their hashes, so a batch of proofs costs little more than one.
pub struct Prover<S> {
    source: S,
    memo: HashMap<(u64, u64), Hash>,
}

impl<S: NodeSource> Prover<S> {
    /// A prover reading complete-subtree hashes from `source`.
    pub fn new(source: S) -> Self {
        Prover {
            source,
            memo: HashMap::new(),
        }
    }

    /// A prover that starts from subtree roots computed before. Valid
    /// across tree sizes: in an append-only log the root of
    /// `D[start .. start+size]` never changes.
    pub fn with_memo(source: S, memo: HashMap<(u64, u64), Hash>) -> Self {
        Prover { source, memo }
    }

    /// The subtree roots computed so far, for reuse.
    pub fn into_memo(self) -> HashMap<(u64, u64), Hash> {
        self.memo
    }

    /// The underlying source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// `MTH(D[start .. start+size])` for a subtree that occurs in the
    /// RFC 6962 decomposition (start is a multiple of a power of two ≥ size).
    fn subtree(&mut self, start: u64, size: u64) -> Result<Hash, S::Error> {
        if let Some(h) = self.memo.get(&(start, size)) {
            return Ok(*h);
        }
        let h = if size.is_power_of_two() {
            let height = size.trailing_zeros();
            if height == 0 || self.source.stores(height) {
                self.source.node(height, start >> height)?
            } else {
                let half = size / 2;
                let left = self.subtree(start, half)?;
                let right = self.subtree(start + half, half)?;
                node_hash(&left, &right)
            }
        } else {
            let k = split_point(size);
            let left = self.subtree(start, k)?;
            let right = self.subtree(start + k, size - k)?;
            node_hash(&left, &right)
        };
        self.memo.insert((start, size), h);
        Ok(h)
    }

    /// Root hash of the tree of `size` leaves.
    pub fn root(&mut self, size: u64) -> Result<Hash, S::Error> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves,
    /// leaf-to-root order (RFC 6962 §2.1.1). Requires `index < size`.
    pub fn inclusion(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, S::Error> {
        assert!(index < size, "inclusion proof index beyond tree size");
        let (mut start, mut n, mut m) = (0u64, size, index);
        let mut path = Vec::with_capacity(64);
        while n > 1 {
            let k = split_point(n);
            if m < k {
                path.push(self.subtree(start + k, n - k)?);
                n = k;
            } else {
                path.push(self.subtree(start, k)?);
                start += k;
                m -= k;
                n -= k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// Consistency proof from the tree of `old` leaves to the tree of `new`
    /// leaves (RFC 6962 §2.1.2). Empty when `old` is 0 or equals `new`.
    /// Requires `old <= new`.
    pub fn consistency(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, S::Error> {
        assert!(
            old <= new,
            "consistency proof with old size beyond new size"
        );
        let mut path = Vec::with_capacity(64);
        if old == 0 || old == new {
            return Ok(path);
        }
        let (mut start, mut n, mut m) = (0u64, new, old);
        // Whether the current subtree's left edge is the old tree's root
        // boundary, in which case its hash is known to the verifier.
        let mut whole_old_tree = true;
        while m != n {
            let k = split_point(n);
            if m <= k {
                path.push(self.subtree(start + k, n - k)?);
                n = k;
            } else {
                path.push(self.subtree(start, k)?);
                start += k;
                m -= k;
                n -= k;
                whole_old_tree = false;
            }
        }
        if !whole_old_tree {
            path.push(self.subtree(start, n)?);
        }
        path.reverse();
        Ok(path)
    }
}

/// Complete-subtree hashes computed from leaf hashes held in memory. For
/// tests and small trees; the server reads tiles instead.
pub struct LeafHashes<'a>(pub &'a [Hash]);

impl NodeSource for LeafHashes<'_> {
    type Error = std::convert::Infallible;
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, Self::Error> {
        Ok(complete_root(
            &self.0[(index << height) as usize..((index + 1) << height) as usize],
        ))
    }
}

/// The right edge of a tree built leaf by leaf: the roots of its perfect
/// subtrees, largest first. O(log n) state gives the root of every prefix,
/// so a follower can check a log's entries against its checkpoints
/// without keeping them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf with hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing 1 bit of the old size is a perfect subtree of the
        // same height as the one being carried: merge them.
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Root of a complete subtree whose leaf-level hashes are `hashes`
/// (length a power of two), hashing pairs level by level.
pub fn complete_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {

    #[test]
    fn compact_range_roots_match_the_prover() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::default();
        assert_eq!(range.root(), empty_root());
        for (n, leaf) in leaves.iter().enumerate() {
            range.push(*leaf);
            let size = n as u64 + 1;
            let expected = Prover::new(LeafHashes(&leaves)).root(size).unwrap();
            assert_eq!(range.root(), expected, "size {size}");
            assert_eq!(range.size(), size);
        }
    }
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn generated_proofs_verify_and_tampering_fails() {
        for size in 1..=40u64 {
            let l = leaves(size);
            let mut p = Prover::new(LeafHashes(&l));
            let root = p.root(size).unwrap();
            for i in 0..size {
                let proof = p.inclusion(i, size).unwrap();
                verify_inclusion(i, size, &l[i as usize], &proof, &root).unwrap();
                if size > 1 {
                    let wrong = (i + 1) % size;
                    assert!(verify_inclusion(wrong, size, &l[i as usize], &proof, &root).is_err());
                }
            }
            for old in 1..=size {
                let old_root = p.root(old).unwrap();
                let proof = p.consistency(old, size).unwrap();
                verify_consistency(old, size, &proof, &old_root, &root).unwrap();
                if old < size {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_consistency(old, size, &bad, &old_root, &root).is_err());
                }
            }
        }
    }
}
