//! Signatures over the raw body (optionally after a signed prefix such as a
//! timestamp), written in a header as hex or base64, with or without a
//! `sha256=` style prefix. GitHub, Jira, Gitea/Forgejo, Linear and Zendesk all
//! sign this way.

use base64::{Engine, engine::general_purpose::STANDARD as B64};

use super::{SignatureError, hmac_matches};

/// How the tag is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagEncoding {
    Hex,
    Base64,
}

/// Verifies `header: <prefix><tag>` where tag = HMAC-SHA256(secret, signed...).
pub fn verify_body_hmac(
    secret: &[u8],
    header: &'static str,
    value: Option<&str>,
    prefix: &str,
    encoding: TagEncoding,
    signed: &[&[u8]],
) -> Result<(), SignatureError> {
    let value = value.ok_or(SignatureError::MissingHeader(header))?;
    let encoded = value
        .trim()
        .strip_prefix(prefix)
        .ok_or(SignatureError::MalformedHeader(header))?;
    let tag = match encoding {
        TagEncoding::Hex => hex::decode(encoded).ok(),
        TagEncoding::Base64 => B64.decode(encoded).ok(),
    }
    .ok_or(SignatureError::MalformedHeader(header))?;
    if hmac_matches(secret, signed, &tag) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// WebSub style `sha256=<hex>` over the body (GitHub `X-Hub-Signature-256`, Jira `X-Hub-Signature`).
pub fn verify_hub_signature(
    secret: &[u8],
    header: &'static str,
    value: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_body_hmac(secret, header, value, "sha256=", TagEncoding::Hex, &[body])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_tag;

    const H: &str = "x-hub-signature-256";

    fn sign(secret: &[u8], body: &[u8]) -> String {
        format!("sha256={}", hex::encode(hmac_tag(secret, &[body])))
    }

    #[test]
    fn a_correct_signature_is_accepted() {
        let sig = sign(b"s3cret", b"{}");
        assert_eq!(verify_hub_signature(b"s3cret", H, Some(&sig), b"{}"), Ok(()));
    }

    #[test]
    fn github_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries" page.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_hub_signature(b"It's a Secret to Everybody", H, Some(sig), b"Hello, World!"),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_body_or_shape_is_rejected() {
        let sig = sign(b"s3cret", b"{}");
        assert_eq!(
            verify_hub_signature(b"other", H, Some(&sig), b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hub_signature(b"s3cret", H, Some(&sig), b"{ }"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hub_signature(b"s3cret", H, None, b"{}"),
            Err(SignatureError::MissingHeader(H))
        );
        assert_eq!(
            verify_hub_signature(b"s3cret", H, Some("sha1=abcd"), b"{}"),
            Err(SignatureError::MalformedHeader(H))
        );
        assert_eq!(
            verify_hub_signature(b"s3cret", H, Some("sha256=zz"), b"{}"),
            Err(SignatureError::MalformedHeader(H))
        );
    }

    #[test]
    fn bare_hex_and_base64_tags_with_a_signed_prefix_verify() {
        let hex_tag = hex::encode(hmac_tag(b"k", &[b"body"]));
        assert_eq!(
            verify_body_hmac(b"k", H, Some(&hex_tag), "", TagEncoding::Hex, &[b"body"]),
            Ok(())
        );
        let b64_tag = B64.encode(hmac_tag(b"k", &[b"2024-04-17T17:18:10Z", b"body"]));
        assert_eq!(
            verify_body_hmac(
                b"k",
                H,
                Some(&b64_tag),
                "",
                TagEncoding::Base64,
                &[b"2024-04-17T17:18:10Z", b"body"]
            ),
            Ok(())
        );
        assert_eq!(
            verify_body_hmac(
                b"k",
                H,
                Some(&b64_tag),
                "",
                TagEncoding::Base64,
                &[b"2024-04-17T17:18:11Z", b"body"]
            ),
            Err(SignatureError::Mismatch)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(value in ".*", body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = verify_hub_signature(b"k", H, Some(&value), &body);
        }
    }
}
