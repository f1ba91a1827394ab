//! RFC 6962 (Certificate Transparency) Merkle tree hashing over the evidence
//! records: leaf = SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right).
//!
//! Written here rather than taken from a tree crate: the maintained RFC 6962
//! crates (ct-merkle, for one) keep every leaf's item in memory to hash it,
//! while the log has to stream millions of stored records page by page and
//! keep only their 32-byte hashes (or, for a tree head, O(log n) of them).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash of one leaf: its exact bytes, prefixed with 0x00.
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(record);
    h.finalize().into()
}

/// The hash of an inner node, prefixed with 0x01.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a tree as leaves are appended, holding only the roots of its
/// perfect subtrees (at most one per bit of the size): O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first, with their sizes.
    subtrees: Vec<(u64, Hash)>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(size, left)) = self.subtrees.last() {
            if size != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (size * 2, node_hash(&left, &node.1));
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// MTH of the leaves so far (RFC 6962 §2.1); the hash of the empty string
    /// for an empty tree.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, mut root)) = subtrees.next() else {
            return Sha256::digest([]).into();
        };
        for (_, left) in subtrees {
            root = node_hash(left, &root);
        }
        root
    }
}

/// MTH of a slice of leaf hashes.
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1
/// PATH(m, D[n])), bottom up.
pub fn inclusion_path(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let split = largest_power_of_two_below(leaves.len());
    if index < split {
        let mut path = inclusion_path(index, &leaves[..split]);
        path.push(root_of(&leaves[split..]));
        path
    } else {
        let mut path = inclusion_path(index - split, &leaves[split..]);
        path.push(root_of(&leaves[..split]));
        path
    }
}

/// Checks an audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// The largest power of two strictly below `n` (n > 1).
fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// MTH by the RFC's recursive definition, as a reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = largest_power_of_two_below(n);
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    proptest! {
        #[test]
        fn the_frontier_root_and_every_audit_path_agree_with_the_rfc_definition(n in 1usize..70) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(format!("record {i}").as_bytes())).collect();
            let root = reference_root(&leaves);
            prop_assert_eq!(root_of(&leaves), root);
            for i in 0..n {
                let path = inclusion_path(i, &leaves);
                prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &path, &root));
                prop_assert!(!verify_inclusion(i as u64, n as u64, &leaf_hash(b"forged"), &path, &root));
            }
        }
    }
}
