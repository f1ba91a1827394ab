//! Signed tree heads: the Merkle root of the evidence log at a size, signed
//! with ed25519 and written outside the database, so that whoever can write
//! the database still cannot rewrite what a head covers.

use std::path::PathBuf;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// What is signed: the log's size and root at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Always `closegate-evidence`.
    pub log: String,
    pub tree_size: u64,
    /// Hex MTH (RFC 6962) of the first `tree_size` records.
    pub root_hash: String,
    /// Unix milliseconds.
    pub timestamp: i64,
}

/// A tree head with its signature. `head` is the exact signed text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub head: String,
    /// Base64 ed25519 signature over the bytes of `head`.
    pub signature: String,
    /// The first 16 hex digits of SHA-256(public key).
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("evidence.signing_key: {0}")]
    BadKey(String),
    #[error("a tree head does not parse: {0}")]
    Malformed(String),
    #[error("the signature of the tree head of size {0} does not verify")]
    BadSignature(u64),
    #[error("Failed to {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The identifier printed beside a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string()
}

/// Reads a 32-byte key given as hex or base64.
fn key_bytes(text: &str) -> Result<[u8; 32], HeadError> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or_else(|| HeadError::BadKey("not hex or base64".into()))?;
    bytes
        .try_into()
        .map_err(|_| HeadError::BadKey("a key is 32 bytes".into()))
}

/// Parses a public key (hex or base64).
pub fn public_key(text: &str) -> Result<VerifyingKey, HeadError> {
    VerifyingKey::from_bytes(&key_bytes(text)?).map_err(|e| HeadError::BadKey(e.to_string()))
}

/// Signs tree heads with the configured ed25519 key (its 32-byte seed).
pub struct HeadSigner {
    key: SigningKey,
}

impl HeadSigner {
    pub fn from_seed(text: &str) -> Result<Self, HeadError> {
        Ok(Self {
            key: SigningKey::from_bytes(&key_bytes(text)?),
        })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, tree_size: u64, root: &Hash, timestamp: i64) -> SignedHead {
        let head = TreeHead {
            log: "closegate-evidence".into(),
            tree_size,
            root_hash: hex::encode(root),
            timestamp,
        };
        let head = serde_json::to_string(&head).unwrap_or_default();
        let signature = self.key.sign(head.as_bytes());
        SignedHead {
            head,
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            key_id: key_id(&self.verifying_key()),
        }
    }
}

impl SignedHead {
    /// The head, after checking its signature with `key` (when given).
    pub fn verified(&self, key: Option<&VerifyingKey>) -> Result<TreeHead, HeadError> {
        let head: TreeHead = serde_json::from_str(&self.head).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if let Some(key) = key {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&self.signature)
                .map_err(|e| HeadError::Malformed(e.to_string()))?;
            let signature = Signature::from_slice(&bytes).map_err(|_| HeadError::BadSignature(head.tree_size))?;
            key.verify(self.head.as_bytes(), &signature)
                .map_err(|_| HeadError::BadSignature(head.tree_size))?;
        }
        Ok(head)
    }
}

/// Where signed heads are kept, outside the database. A directory today; a
/// transparency service or an object store with retention would implement
/// the same two calls.
pub trait HeadSink: Send + Sync {
    fn publish(&self, head: &SignedHead) -> Result<(), HeadError>;
    /// Every head kept, in no particular order.
    fn heads(&self) -> Result<Vec<SignedHead>, HeadError>;
}

/// One JSON file per head in a directory.
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> HeadError {
        let path = path.display().to_string();
        move |source| HeadError::Io { what, path, source }
    }
}

impl HeadSink for DirSink {
    fn publish(&self, head: &SignedHead) -> Result<(), HeadError> {
        let tree = head.verified(None)?;
        std::fs::create_dir_all(&self.dir).map_err(Self::io("create", &self.dir))?;
        let path = self
            .dir
            .join(format!("head-{:012}-{}.json", tree.tree_size, tree.timestamp));
        let text = serde_json::to_string_pretty(head).map_err(|e| HeadError::Malformed(e.to_string()))?;
        std::fs::write(&path, text).map_err(Self::io("write", &path))
    }

    fn heads(&self) -> Result<Vec<SignedHead>, HeadError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("read", &self.dir)(e)),
        };
        let mut heads = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&path).map_err(Self::io("read", &path))?;
                heads.push(
                    serde_json::from_str(&text)
                        .map_err(|e| HeadError::Malformed(format!("{}: {e}", path.display())))?,
                );
            }
        }
        Ok(heads)
    }
}
