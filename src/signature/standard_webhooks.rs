use base64::{Engine, engine::general_purpose::STANDARD as B64};

use super::{SignatureError, hmac_matches, hmac_tag};

/// How far a `webhook-timestamp` may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A Standard Webhooks symmetric key (`whsec_` + base64). The prefix is
/// optional, as in the reference libraries. `Debug` never shows the key.
#[derive(Clone)]
pub struct StandardWebhooksKey(Vec<u8>);

impl std::fmt::Debug for StandardWebhooksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardWebhooksKey(<redacted>)")
    }
}

impl StandardWebhooksKey {
    /// Parses `whsec_<base64>`; the error never repeats the secret.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let encoded = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
        let key = B64
            .decode(encoded)
            .map_err(|_| "not a Standard Webhooks secret (expected whsec_ followed by base64)".to_string())?;
        if key.is_empty() {
            return Err("the Standard Webhooks secret is empty".into());
        }
        Ok(Self(key))
    }

    /// Signs one message: the value for the `webhook-signature` header.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let tag = hmac_tag(&self.0, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        format!("v1,{}", B64.encode(tag))
    }

    /// Verifies the three headers against the raw body at time `now` (unix seconds).
    /// Any `v1` entry of the space-separated list may match (key rotation).
    pub fn verify(
        &self,
        msg_id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let msg_id = msg_id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
        let ts_raw = timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
        let signatures = signatures.ok_or(SignatureError::MissingHeader("webhook-signature"))?;
        if msg_id.is_empty() || msg_id.contains('.') {
            return Err(SignatureError::MalformedHeader("webhook-id"));
        }
        let ts: i64 = ts_raw
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedHeader("webhook-timestamp"))?;
        if ts < now - TOLERANCE_SECONDS {
            return Err(SignatureError::TooOld);
        }
        if ts > now + TOLERANCE_SECONDS {
            return Err(SignatureError::InTheFuture);
        }
        let ts_text = ts.to_string();
        let signed: [&[u8]; 5] = [msg_id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
        let mut seen_v1 = false;
        for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
            let Some(encoded) = entry.strip_prefix("v1,") else {
                continue;
            };
            seen_v1 = true;
            if let Ok(tag) = B64.decode(encoded)
                && hmac_matches(&self.0, &signed, &tag)
            {
                return Ok(());
            }
        }
        if seen_v1 {
            Err(SignatureError::Mismatch)
        } else {
            Err(SignatureError::MalformedHeader("webhook-signature"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key() -> StandardWebhooksKey {
        StandardWebhooksKey::parse(SECRET).unwrap()
    }

    #[test]
    fn the_published_test_vector_is_reproduced() {
        assert_eq!(key().sign(ID, TS, BODY), SIG);
        assert_eq!(key().verify(Some(ID), Some("1614265330"), Some(SIG), BODY, TS), Ok(()));
    }

    #[test]
    fn the_whsec_prefix_is_optional() {
        let bare = StandardWebhooksKey::parse(SECRET.trim_start_matches("whsec_")).unwrap();
        assert_eq!(bare.sign(ID, TS, BODY), SIG);
    }

    #[test]
    fn any_matching_signature_of_several_is_accepted() {
        let list = format!("v1,bm9wZQ== v1a,xyz {SIG}");
        assert_eq!(
            key().verify(Some(ID), Some("1614265330"), Some(&list), BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn timestamps_outside_five_minutes_are_rejected_both_ways() {
        let ts = TS.to_string();
        assert_eq!(
            key().verify(Some(ID), Some(&ts), Some(SIG), BODY, TS + TOLERANCE_SECONDS + 1),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            key().verify(Some(ID), Some(&ts), Some(SIG), BODY, TS - TOLERANCE_SECONDS - 1),
            Err(SignatureError::InTheFuture)
        );
        assert_eq!(
            key().verify(Some(ID), Some(&ts), Some(SIG), BODY, TS + TOLERANCE_SECONDS),
            Ok(())
        );
    }

    #[test]
    fn tampering_is_detected() {
        let ts = TS.to_string();
        assert_eq!(
            key().verify(Some("msg_other"), Some(&ts), Some(SIG), BODY, TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key().verify(Some(ID), Some(&ts), Some(SIG), b"{\"test\": 1}", TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key().verify(Some(ID), Some(&ts), Some("v2,abc"), BODY, TS),
            Err(SignatureError::MalformedHeader("webhook-signature"))
        );
        assert_eq!(
            key().verify(None, Some(&ts), Some(SIG), BODY, TS),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let err = StandardWebhooksKey::parse("whsec_%%%not-base64").unwrap_err();
        assert!(!err.contains("not-base64"));
        assert!(format!("{:?}", key()).contains("redacted"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_header_values_never_panic(id in ".*", ts in ".*", sig in ".*", body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = key().verify(Some(&id), Some(&ts), Some(&sig), &body, TS);
        }
    }
}
