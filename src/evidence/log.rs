//! The evidence log as a Merkle tree: tree heads signed over the stored
//! records, checked against the records, and inclusion proofs for one record.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use tokio::sync::Mutex;

use super::{
    heads::{HeadError, HeadSigner, HeadSink, SignedHead, TreeHead},
    merkle::{Frontier, Hash, inclusion_path, leaf_hash},
};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("no evidence record {0}")]
    NoRecord(String),
    #[error("no signed tree head covers record #{0} yet (sign one with `closegate evidence sign-head`)")]
    NotCovered(i64),
}

const PAGE: i64 = 1000;

/// The log of one store: signs heads as records are appended.
pub struct EvidenceLog {
    store: Store,
    signer: Option<HeadSigner>,
    sink: Arc<dyn HeadSink>,
    /// The tree over the records seen so far, advanced page by page.
    frontier: Mutex<(Frontier, Option<SignedHead>)>,
}

impl EvidenceLog {
    pub fn new(store: Store, signer: Option<HeadSigner>, sink: Arc<dyn HeadSink>) -> Self {
        Self {
            store,
            signer,
            sink,
            frontier: Mutex::new((Frontier::default(), None)),
        }
    }

    pub fn sink(&self) -> &dyn HeadSink {
        self.sink.as_ref()
    }

    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        self.signer.as_ref().map(HeadSigner::verifying_key)
    }

    /// Signs and publishes a head over every record stored so far, unless the
    /// last head already covers them. `None` without a signing key.
    pub async fn sign_head(&self, now: i64) -> Result<Option<SignedHead>, LogError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let mut state = self.frontier.lock().await;
        advance(&self.store, &mut state.0).await?;
        let size = state.0.size();
        if let Some(last) = &state.1
            && last.verified(None)?.tree_size == size
        {
            return Ok(Some(last.clone()));
        }
        let head = signer.sign(size, &state.0.root(), now);
        self.sink.publish(&head)?;
        state.1 = Some(head.clone());
        Ok(Some(head))
    }

    /// A signed head that covers record `seq`, signing one if needed.
    pub async fn head_covering(&self, seq: i64, now: i64) -> Result<Option<SignedHead>, LogError> {
        {
            let state = self.frontier.lock().await;
            if let Some(last) = &state.1
                && last.verified(None)?.tree_size >= seq as u64
            {
                return Ok(Some(last.clone()));
            }
        }
        self.sign_head(now).await
    }
}

/// Pushes the records after the frontier's size, in sequence order, stopping
/// at the first gap.
async fn advance(store: &Store, frontier: &mut Frontier) -> Result<(), StoreError> {
    loop {
        let page = store.evidence_page(frontier.size() as i64, PAGE).await?;
        let before = frontier.size();
        for record in &page {
            if record.seq as u64 != frontier.size() + 1 {
                return Ok(());
            }
            frontier.push(leaf_hash(record.record.as_bytes()));
        }
        if page.len() < PAGE as usize || frontier.size() == before {
            return Ok(());
        }
    }
}

/// What checking the records against the kept heads found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    pub records: u64,
    pub heads: usize,
    /// The largest size a signed head covers.
    pub covered: u64,
    /// Whether the heads' signatures were checked (a key was given).
    pub signatures_checked: bool,
    pub problem: Option<String>,
}

/// Recomputes the tree over every stored record and compares it with each
/// kept head: an edited, deleted, reordered, truncated or recomputed record
/// under a head changes the root at that head's size.
pub async fn verify_against_heads(
    store: &Store,
    heads: &[SignedHead],
    key: Option<&VerifyingKey>,
) -> Result<LogReport, LogError> {
    let mut checked: Vec<TreeHead> = Vec::with_capacity(heads.len());
    for head in heads {
        match head.verified(key) {
            Ok(tree) => checked.push(tree),
            Err(e) => {
                return Ok(LogReport {
                    records: 0,
                    heads: heads.len(),
                    covered: 0,
                    signatures_checked: key.is_some(),
                    problem: Some(e.to_string()),
                });
            }
        }
    }
    checked.sort_by_key(|h| h.tree_size);
    let covered = checked.last().map_or(0, |h| h.tree_size);
    let mut frontier = Frontier::default();
    let mut pending = checked.iter().peekable();
    let mut problem = None;
    // The first head at the frontier's size whose root differs, if any.
    fn check(frontier: &Frontier, pending: &mut std::iter::Peekable<std::slice::Iter<'_, TreeHead>>) -> Option<String> {
        let mut mismatch = None;
        while let Some(head) = pending.next_if(|h| h.tree_size == frontier.size()) {
            if mismatch.is_none() && head.root_hash != hex::encode(frontier.root()) {
                mismatch = Some(format!(
                    "the records do not match the signed tree head of size {} (edited, removed, reordered or \
                     recomputed)",
                    head.tree_size
                ));
            }
        }
        mismatch
    }
    problem = problem.or(check(&frontier, &mut pending));
    let mut after = 0;
    loop {
        let page = store.evidence_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            if problem.is_none() && record.seq as u64 != frontier.size() + 1 {
                problem = Some(format!("record #{} is out of sequence", record.seq));
            }
            frontier.push(leaf_hash(record.record.as_bytes()));
            problem = problem.or(check(&frontier, &mut pending));
        }
    }
    if problem.is_none() && covered > frontier.size() {
        problem = Some(format!(
            "a signed tree head covers {covered} records but the store holds {} (records removed)",
            frontier.size()
        ));
    }
    Ok(LogReport {
        records: frontier.size(),
        heads: checked.len(),
        covered,
        signatures_checked: key.is_some(),
        problem,
    })
}

/// An inclusion proof a third party can check with the public key alone.
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    pub id: String,
    /// Zero-based: the record's sequence number minus one.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The record's exact bytes.
    pub record: String,
    pub leaf_hash: String,
    /// Sibling hashes, bottom up (RFC 6962 PATH).
    pub audit_path: Vec<String>,
    pub signed_head: SignedHead,
}

/// Proves record `id` against `head` (which must cover it).
pub async fn prove(store: &Store, id: &str, head: &SignedHead) -> Result<Proof, LogError> {
    let record = store
        .evidence_by_id(id)
        .await?
        .ok_or_else(|| LogError::NoRecord(id.to_string()))?;
    let tree = head.verified(None)?;
    if record.seq as u64 > tree.tree_size {
        return Err(LogError::NotCovered(record.seq));
    }
    let mut leaves: Vec<Hash> = Vec::with_capacity(tree.tree_size as usize);
    let mut after = 0;
    while (leaves.len() as u64) < tree.tree_size {
        let page = store.evidence_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        leaves.extend(
            page.iter()
                .take((tree.tree_size as usize).saturating_sub(leaves.len()))
                .map(|r| leaf_hash(r.record.as_bytes())),
        );
    }
    let index = (record.seq - 1) as usize;
    Ok(Proof {
        id: record.id.clone(),
        leaf_index: index as u64,
        tree_size: tree.tree_size,
        leaf_hash: hex::encode(leaf_hash(record.record.as_bytes())),
        audit_path: inclusion_path(index, &leaves).iter().map(hex::encode).collect(),
        record: record.record,
        signed_head: head.clone(),
    })
}
