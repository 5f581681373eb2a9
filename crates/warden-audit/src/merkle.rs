//! The RFC 9162 §2.1 Merkle tree over SHA-256: leaf and node hashing with the 0x00 / 0x01
//! prefixes, the tree head (MTH), inclusion and consistency proofs and their verifiers, and the
//! `Frontier` that keeps the root of a growing log in O(log n) per append.

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, an interior node or a tree head.
pub type Hash = [u8; 32];

/// MTH({}) = SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2): where RFC 9162 splits a tree.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH over leaf hashes (§2.1.1).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::default();
    for l in leaves {
        f.push(*l);
    }
    f.root()
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is larger than the {available} leaves available")]
    SizeOutOfRange { size: u64, available: u64 },
    #[error("old size {old} is larger than new size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("the proof has {got} hashes but a proof for these sizes needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the expected old root")]
    OldRootMismatch,
}

/// The inclusion proof PATH(index, D[0:size]) of §2.1.3.1, from the first `size` leaf hashes.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::SizeOutOfRange {
            size,
            available: leaves.len() as u64,
        });
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, &leaves[..size as usize], &mut proof);
    Ok(proof)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    let n = d.len();
    if n == 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// The consistency proof PROOF(old, D[0:new]) of §2.1.4.1. Empty when `old` is 0 or equals `new`.
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    if new > leaves.len() as u64 {
        return Err(ProofError::SizeOutOfRange {
            size: new,
            available: leaves.len() as u64,
        });
    }
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(old as usize, &leaves[..new as usize], true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], b, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Verifies an inclusion proof (§2.1.3.2). Every part is checked: the index must be below the
/// size, the proof must have exactly the length the sizes imply, and the root must match.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want,
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The length of PATH(index, D[size]): the number of steps the §2.1.3.2 walk takes.
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut f_n, mut s_n, mut len) = (index, size - 1, 0);
    while s_n != 0 {
        len += 1;
        if f_n & 1 == 0 && f_n == s_n {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    len
}

/// Verifies a consistency proof (§2.1.4.2) between a tree of `old` leaves with `old_root` and
/// one of `new` leaves with `new_root`. The degenerate cases are strict: `old == new` needs an
/// empty proof and equal roots; `old == 0` needs an empty proof and the empty tree's root.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        if old == 0 && old_root != &EMPTY_ROOT {
            return Err(ProofError::OldRootMismatch);
        }
        if old == new && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len() - 1,
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    if &fr != old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The compact range [0, size): the roots of the perfect subtrees that the binary decomposition
/// of `size` gives, largest first. Appending a leaf merges equal-height subtrees (O(log n)), and
/// the tree head folds them from the right, which is exactly MTH's split at powers of two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One root per set bit of `size`, from the highest bit down.
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing one bit of the old size is a subtree of the same height as `h`.
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.nodes.pop().expect("a set bit has a subtree");
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The subtree roots, concatenated, for storing beside a checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    /// Rebuilds a frontier of `size` leaves from [`Frontier::to_bytes`]; `None` when the bytes
    /// do not hold one root per set bit of `size`.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Frontier> {
        if bytes.len() != size.count_ones() as usize * 32 {
            return None;
        }
        let nodes = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().ok())
            .collect::<Option<Vec<Hash>>>()?;
        Some(Frontier { size, nodes })
    }

    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    /// The Certificate Transparency reference leaves (RFC 6962 test data).
    fn ct_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    /// Their published tree heads for sizes 0..=8.
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_ct_reference_vectors_for_every_size() {
        let leaves = ct_leaves();
        let mut f = Frontier::default();
        assert_eq!(hex(&f.root()), CT_ROOTS[0]);
        for n in 1..=8 {
            f.push(leaves[n - 1]);
            assert_eq!(hex(&f.root()), CT_ROOTS[n], "frontier at size {n}");
            assert_eq!(hex(&root(&leaves[..n])), CT_ROOTS[n], "MTH at size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_ct_reference_vectors() {
        let leaves = ct_leaves();
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let proof = inclusion_proof(&leaves, index, size).expect("proof");
            let got: Vec<String> = proof.iter().map(hex).collect();
            assert_eq!(got, want, "PATH({index}, D[{size}])");
            let root = unhex(CT_ROOTS[size as usize]);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
                .expect("reference proof verifies");
        }
    }

    #[test]
    fn consistency_proofs_match_the_ct_reference_vectors() {
        let leaves = ct_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = consistency_proof(&leaves, old, new).expect("proof");
            let got: Vec<String> = proof.iter().map(hex).collect();
            assert_eq!(got, want, "PROOF({old}, D[{new}])");
            let (r1, r2) = (unhex(CT_ROOTS[old as usize]), unhex(CT_ROOTS[new as usize]));
            verify_consistency(old, new, &r1, &r2, &proof).expect("reference proof verifies");
        }
    }

    #[test]
    fn inclusion_verifier_rejects_each_mangled_part() {
        let leaves = ct_leaves();
        let root = unhex(CT_ROOTS[8]);
        let proof = inclusion_proof(&leaves, 5, 8).expect("proof");
        let leaf = leaves[5];
        assert!(verify_inclusion(&leaf, 5, 8, &proof, &root).is_ok());
        assert_eq!(
            verify_inclusion(&leaf, 8, 8, &proof, &root),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert!(verify_inclusion(&leaf, 4, 8, &proof, &root).is_err());
        // Another size: against that size's own root, and the CT probes' doubled and halved sizes.
        assert!(verify_inclusion(&leaf, 5, 7, &proof, &unhex(CT_ROOTS[7])).is_err());
        assert!(verify_inclusion(&leaf, 5, 16, &proof, &root).is_err());
        assert!(verify_inclusion(&leaf, 3, 4, &proof, &root).is_err());
        assert!(verify_inclusion(&leaves[4], 5, 8, &proof, &root).is_err());
        assert!(verify_inclusion(&leaf, 5, 8, &proof, &EMPTY_ROOT).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        assert!(matches!(
            verify_inclusion(&leaf, 5, 8, &longer, &root),
            Err(ProofError::WrongLength { got: 4, want: 3 })
        ));
        let mut front = vec![root];
        front.extend(proof.iter().copied());
        assert!(verify_inclusion(&leaf, 5, 8, &front, &root).is_err());
        assert!(verify_inclusion(&leaf, 5, 8, &proof[..2], &root).is_err());
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i][0] ^= 8;
            assert_eq!(
                verify_inclusion(&leaf, 5, 8, &flipped, &root),
                Err(ProofError::RootMismatch)
            );
        }
    }

    #[test]
    fn consistency_verifier_rejects_each_mangled_part_and_the_degenerate_cases() {
        let leaves = ct_leaves();
        let (r6, r8) = (unhex(CT_ROOTS[6]), unhex(CT_ROOTS[8]));
        let proof = consistency_proof(&leaves, 6, 8).expect("proof");
        assert!(verify_consistency(6, 8, &r6, &r8, &proof).is_ok());
        assert!(verify_consistency(8, 6, &r8, &r6, &proof).is_err());
        assert!(verify_consistency(5, 8, &r6, &r8, &proof).is_err());
        assert!(verify_consistency(7, 8, &r6, &r8, &proof).is_err());
        assert!(verify_consistency(6, 7, &r6, &unhex(CT_ROOTS[7]), &proof).is_err());
        assert!(verify_consistency(6, 16, &r6, &r8, &proof).is_err());
        assert!(verify_consistency(3, 8, &r6, &r8, &proof).is_err());
        assert!(verify_consistency(6, 8, &r8, &r6, &proof).is_err());
        assert!(verify_consistency(6, 8, &r6, &r8, &[]).is_err());
        assert!(verify_consistency(6, 8, &r6, &r8, &proof[..2]).is_err());
        let mut longer = proof.clone();
        longer.push(r8);
        assert!(verify_consistency(6, 8, &r6, &r8, &longer).is_err());
        let mut front = vec![proof[0]];
        front.extend(proof.iter().copied());
        assert!(verify_consistency(6, 8, &r6, &r8, &front).is_err());
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i][0] ^= 16;
            assert!(verify_consistency(6, 8, &r6, &r8, &flipped).is_err());
        }
        // Same size: equal roots and no proof, nothing else.
        assert!(verify_consistency(8, 8, &r8, &r8, &[]).is_ok());
        assert!(verify_consistency(8, 8, &r8, &r6, &[]).is_err());
        assert!(verify_consistency(8, 8, &r8, &r8, &[r8]).is_err());
        // From the empty tree: only the empty root and no proof.
        assert!(verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[]).is_ok());
        assert!(verify_consistency(0, 8, &r6, &r8, &[]).is_err());
        assert!(verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[r8]).is_err());
    }

    #[test]
    fn the_split_is_the_largest_power_of_two_below_n() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split(n), k, "split({n})");
        }
    }

    #[test]
    fn proof_generation_refuses_sizes_beyond_the_leaves() {
        let leaves = ct_leaves();
        assert!(inclusion_proof(&leaves, 0, 9).is_err());
        assert!(inclusion_proof(&leaves, 8, 8).is_err());
        assert!(consistency_proof(&leaves, 5, 3).is_err());
        assert!(consistency_proof(&leaves, 0, 9).is_err());
    }

    fn synthetic(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    proptest! {
        #[test]
        fn every_inclusion_proof_verifies_and_no_other_leaf_index_or_size_does(
            size in 1u64..300, index_seed in any::<u64>(), other_seed in any::<u64>()
        ) {
            let leaves = synthetic(size as usize + 1);
            let index = index_seed % size;
            let root = root(&leaves[..size as usize]);
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root).is_ok());
            let other = other_seed % size;
            if other != index {
                prop_assert!(verify_inclusion(&leaves[other as usize], index, size, &proof, &root).is_err());
                prop_assert!(verify_inclusion(&leaves[index as usize], other, size, &proof, &root).is_err());
            }
            // Against the tree of another size (a root is only ever trusted with its size).
            let other_size = 1 + other_seed % (size + 1);
            if other_size != size && index < other_size {
                let other_root = super::root(&leaves[..other_size as usize]);
                prop_assert!(verify_inclusion(&leaves[index as usize], index, other_size, &proof, &other_root).is_err());
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_fails_against_another_old_root(
            new in 1u64..300, old_seed in any::<u64>(), other_seed in any::<u64>()
        ) {
            let leaves = synthetic(new as usize);
            let old = old_seed % (new + 1);
            let other = other_seed % (new + 1);
            let roots: Vec<Hash> = (0..=new as usize)
                .map(|n| if [old, new, other].contains(&(n as u64)) { root(&leaves[..n]) } else { EMPTY_ROOT })
                .collect();
            let proof = consistency_proof(&leaves, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &proof).is_ok());
            if other != old {
                prop_assert!(verify_consistency(old, new, &roots[other as usize], &roots[new as usize], &proof).is_err());
                prop_assert!(verify_consistency(other, new, &roots[old as usize], &roots[new as usize], &proof).is_err());
            }
            if 0 < old && old < new {
                // A root of a different new tree (one leaf changed) is refused too.
                let mut changed = leaves.clone();
                changed[new as usize - 1][0] ^= 1;
                prop_assert!(verify_consistency(old, new, &roots[old as usize], &root(&changed), &proof).is_err());
            }
        }

        #[test]
        fn the_frontier_agrees_with_mth_at_every_size(n in 0usize..200) {
            let leaves = synthetic(n);
            let mut f = Frontier::default();
            for l in &leaves { f.push(*l); }
            prop_assert_eq!(f.root(), root(&leaves));
            prop_assert_eq!(f.size(), n as u64);
        }
    }
}
