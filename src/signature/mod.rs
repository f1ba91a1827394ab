//! Webhook authentication on raw bytes: shared HMAC plumbing, one file per scheme.
//! Every comparison is constant-time; no error carries key material.

mod body;
mod standard_webhooks;

pub use body::{TagEncoding, verify_body_hmac, verify_hub_signature};
pub use standard_webhooks::{StandardWebhooksKey, TOLERANCE_SECONDS};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a delivery was not authenticated. The text is safe to log and to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp is too old")]
    TooOld,
    #[error("timestamp is in the future")]
    InTheFuture,
}

pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Checks `tag` against HMAC-SHA256(key, parts...) in constant time.
pub(crate) fn hmac_matches(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = hmac_sha256(key);
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Verifies with each of a source's secrets in turn (old and new, while one
/// is rotated): accepted when any verifies; otherwise the first refusal.
pub fn verify_any(
    secrets: &crate::config::Secrets,
    verify: impl Fn(&[u8]) -> Result<(), SignatureError>,
) -> Result<(), SignatureError> {
    let mut refusal = None;
    for secret in secrets.iter() {
        match verify(secret.expose().as_bytes()) {
            Ok(()) => return Ok(()),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    Err(refusal.unwrap_or(SignatureError::Mismatch))
}

/// Compares a presented secret (token, password) with the expected one in
/// constant time, whatever their lengths.
pub fn secret_matches(expected: &str, presented: &str) -> bool {
    let expected_tag = hmac_tag(b"closegate-secret-compare", &[expected.as_bytes()]);
    hmac_matches(b"closegate-secret-compare", &[presented.as_bytes()], &expected_tag)
}

/// HMAC-SHA256(key, parts...) as bytes.
pub(crate) fn hmac_tag(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = hmac_sha256(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}
