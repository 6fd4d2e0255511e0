//! Batch verification of entry signatures, grouped by key.
//!
//! A log's entries come from a few hundred signers, so a batch of n
//! signatures has far fewer than n distinct keys. The batch equation
//! (cofactored, as `ed25519_dalek::verify_batch`)
//!
//!   [8] ( -[Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ_keys [Σ_{i: key} zᵢkᵢ]A ) = 0
//!
//! then needs one point per signature and one per key rather than two per
//! signature, which halves the multiscalar multiplication, most of the
//! cost. The zᵢ are 128-bit coefficients derived from a hash of every
//! input, so a signer cannot choose bad signatures that cancel out.
//!
//! Weak (small-order) keys, small-order or non-canonical R and
//! non-canonical s are refused outright, so that a batch of one (the
//! single check) accepts exactly what a larger batch does.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

use super::SIGNING_CONTEXT;

/// One signature to check: the key, the signed statement, the signature.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    pub key: VerifyingKey,
    pub statement: &'a [u8],
    pub signature: &'a [u8],
}

/// Whether every signature verifies. False if any does not (or cannot be
/// parsed); the caller then finds the bad ones (see `verify_signed`).
pub fn verify_batch(items: &[Signed<'_>]) -> bool {
    let mut rs = Vec::with_capacity(items.len());
    let mut ss = Vec::with_capacity(items.len());
    let mut ks = Vec::with_capacity(items.len());
    let mut transcript = Sha512::new();
    transcript.update(b"gatelog batch verification\n");
    for item in items {
        let Ok(sig) = <&[u8; 64]>::try_from(item.signature) else {
            return false;
        };
        let r_bytes: [u8; 32] = sig[..32].try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = sig[32..].try_into().expect("32 bytes");
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        if r.is_small_order() || !canonical_y(&r_bytes) {
            return false;
        }
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(item.key.as_bytes())
                .chain_update(SIGNING_CONTEXT)
                .chain_update(item.statement),
        );
        transcript.update(r_bytes);
        transcript.update(s_bytes);
        transcript.update(item.key.as_bytes());
        transcript.update(k.as_bytes());
        rs.push(r);
        ss.push(s);
        ks.push(k);
    }
    let seed = transcript.finalize();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(items.len() + 16);
    let mut points = Vec::with_capacity(items.len() + 16);
    let mut per_key: HashMap<[u8; 32], (Scalar, EdwardsPoint)> = HashMap::new();
    let mut block = [0u8; 64];
    for (i, item) in items.iter().enumerate() {
        // Four 128-bit coefficients per hash.
        if i % 4 == 0 {
            block = Sha512::new()
                .chain_update(seed)
                .chain_update((i as u64 / 4).to_le_bytes())
                .finalize()
                .into();
        }
        let z = coefficient(&block[(i % 4) * 16..][..16]);
        b_coefficient -= z * ss[i];
        scalars.push(z);
        points.push(rs[i]);
        let a = per_key
            .entry(*item.key.as_bytes())
            .or_insert_with(|| (Scalar::ZERO, item.key.to_edwards()));
        a.0 += z * ks[i];
    }
    // Once per key: a weak (small-order) key would accept anything.
    if per_key.values().any(|(_, a)| a.is_small_order()) {
        return false;
    }
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for (scalar, point) in per_key.into_values() {
        scalars.push(scalar);
        points.push(point);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Whether an encoded point's y is below p = 2^255 - 19 (decompression
/// reduces it silently). The other non-canonical encodings, x = 0 with
/// the sign bit set, are of small-order points, refused anyway.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let at_least_p =
        bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed;
    !at_least_p
}

/// A 128-bit coefficient from 16 bytes.
fn coefficient(bytes: &[u8]) -> Scalar {
    let mut z = [0u8; 32];
    z[..16].copy_from_slice(bytes);
    Scalar::from_bytes_mod_order(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::{signed_message, verify};
    use crate::tlog::note::NoteSigner;

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::from_seed(&format!("s{seed}"), [seed; 32]).unwrap()
    }

    fn key(s: &NoteSigner) -> VerifyingKey {
        VerifyingKey::from_bytes(&s.verifier().public_key()).unwrap()
    }

    #[test]
    fn a_batch_verifies_exactly_when_every_signature_does() {
        let signers: Vec<NoteSigner> = (1..=3).map(signer).collect();
        let statements: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10 + i as usize]).collect();
        let signatures: Vec<Vec<u8>> = statements
            .iter()
            .enumerate()
            .map(|(i, st)| signers[i % 3].sign_bytes(&signed_message(st)).to_vec())
            .collect();
        let items = |sigs: &[Vec<u8>]| -> Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> {
            (0..40)
                .map(|i| (key(&signers[i % 3]), statements[i].clone(), sigs[i].clone()))
                .collect()
        };
        let check = |v: &[(VerifyingKey, Vec<u8>, Vec<u8>)]| {
            let signed: Vec<Signed> = v
                .iter()
                .map(|(key, st, sig)| Signed {
                    key: *key,
                    statement: st,
                    signature: sig,
                })
                .collect();
            verify_batch(&signed)
        };
        let good = items(&signatures);
        assert!(good.iter().all(|(k, st, sig)| verify(k, st, sig)));
        assert!(check(&good));
        assert!(check(&good[..1]));
        assert!(check(&[]));
        // Any one bad signature, statement or key fails the batch.
        for i in [0, 17, 39] {
            let mut bad = good.clone();
            bad[i].2[5] ^= 1;
            assert!(!check(&bad), "signature {i}");
            let mut bad = good.clone();
            bad[i].1[0] ^= 1;
            assert!(!check(&bad), "statement {i}");
            let mut bad = good.clone();
            bad[i].0 = key(&signers[(i + 1) % 3]);
            assert!(!check(&bad), "key {i}");
        }
        // Two bad signatures that might cancel under fixed coefficients:
        // swapping the s halves of two signatures by the same key.
        let mut swapped = good.clone();
        let (a, b) = (swapped[0].2.clone(), swapped[3].2.clone());
        swapped[0].2[32..].copy_from_slice(&b[32..]);
        swapped[3].2[32..].copy_from_slice(&a[32..]);
        assert!(!check(&swapped));
        // A non-canonical s is refused.
        let mut big_s = good.clone();
        big_s[2].2[63] |= 0xf0;
        assert!(!check(&big_s));
        // A weak key signs anything under the cofactored equation: refused,
        // alone or in a batch. (The identity point, [s]B as R.)
        let weak = VerifyingKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
        .unwrap();
        assert!(weak.is_weak());
        let s = Scalar::from(7u64);
        let r = (ED25519_BASEPOINT_POINT * s).compress().to_bytes();
        let forged: Vec<u8> = r.iter().chain(s.as_bytes()).copied().collect();
        let st = b"anything".to_vec();
        assert!(!check(&[(weak, st.clone(), forged.clone())]));
        let mut with_weak = good.clone();
        with_weak.push((weak, st, forged));
        assert!(!check(&with_weak));
        // y = p + 2 encodes the same point as y = 2 (if it is one): only
        // the canonical encoding is accepted.
        let mut p_plus = [0xffu8; 32];
        p_plus[31] = 0x7f;
        p_plus[0] = 0xed + 2;
        assert!(!canonical_y(&p_plus));
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(canonical_y(&two));
        // A single check is the same equation as the batch.
        for (k, st, sig) in &good {
            assert!(verify(k, st, sig));
        }
    }
}
