use super::{SignatureError, hmac_matches};

/// Verifies a WebSub-style `sha256=<hex>` signature over the raw body
/// (GitHub's `X-Hub-Signature-256`, Jira's `X-Hub-Signature`).
pub fn verify_hub_signature(
    secret: &[u8],
    header: &'static str,
    value: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = value.ok_or(SignatureError::MissingHeader(header))?;
    let hex_tag = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::MalformedHeader(header))?;
    let tag = hex::decode(hex_tag).map_err(|_| SignatureError::MalformedHeader(header))?;
    if hmac_matches(secret, &[body], &tag) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
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

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(value in ".*", body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = verify_hub_signature(b"k", H, Some(&value), &body);
        }
    }
}
