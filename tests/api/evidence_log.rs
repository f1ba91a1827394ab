//! The evidence log proves itself outside the database: signed tree heads kept
//! in a directory, checked against the records; inclusion proofs a third party
//! checks with the public key and RFC 6962 alone.

use closegate::evidence::{heads::SignedHead, log::verify_against_heads};
use ed25519_dalek::{Signature, SigningKey, Verifier as _, VerifyingKey};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

async fn signed_app() -> TestApp {
    let heads = tempfile::tempdir().unwrap().keep();
    spawn_app_with(Options {
        evidence: Some(json!({ "signing_key": { "value": SEED }, "heads_dir": heads })),
        ..Default::default()
    })
    .await
}

fn public_key() -> VerifyingKey {
    SigningKey::from_bytes(&hex::decode(SEED).unwrap().try_into().unwrap()).verifying_key()
}

/// `n` decided closes, then a signed head over them.
async fn log_with_head(app: &TestApp, n: usize) -> Vec<SignedHead> {
    for i in 0..n {
        let justification = "Needed for the quarterly reconciliation. ".repeat(50);
        app.close_generic(
            &format!("T-{i}"),
            &[
                ("request_type", "grant"),
                ("database_role", "nobody"),
                ("justification", &justification),
            ],
        )
        .await;
    }
    app.ctx
        .log
        .sign_head(app.ctx.now_ms())
        .await
        .unwrap()
        .expect("a signing key is configured");
    app.ctx.log.sink().heads().unwrap()
}

/// What a writer of the database may try.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    EditByte,
    EditColumn,
    Delete,
    Swap,
    Truncate,
    Append,
    Recompute,
}

/// Rewrites the whole chain so that it is consistent again, as a writer who
/// knows the algorithm would after an edit.
async fn recompute_chain(db: &Db) {
    let mut prev = "0".repeat(64);
    for (seq, record) in db.records().await {
        let hash = closegate::evidence::chain_hash(&prev, &record);
        let seq = seq.to_string();
        db.exec(
            &format!("UPDATE evidence SET prev_hash = $1, hash = $2 WHERE seq = {seq}"),
            &[&prev, &hash],
        )
        .await;
        db.exec("UPDATE chain_head SET hash = $1", &[&hash]).await;
        prev = hash;
    }
}

async fn tamper(db: &Db, how: Tamper, rng: &mut StdRng, n: i64) {
    let seq = rng.gen_range(1..=n);
    match how {
        Tamper::EditByte => {
            db.exec(
                &format!("UPDATE evidence SET record = replace(record, 'blocked', 'allowed') WHERE seq = {seq}"),
                &[],
            )
            .await
        }
        Tamper::EditColumn => {
            let column = ["verdict", "ticket", "policy", "mode", "source"].choose(rng).unwrap();
            db.exec(
                &format!("UPDATE evidence SET {column} = 'forged' WHERE seq = {seq}"),
                &[],
            )
            .await
        }
        Tamper::Delete => db.exec(&format!("DELETE FROM evidence WHERE seq = {seq}"), &[]).await,
        Tamper::Swap => {
            let other = if seq == n { 1 } else { seq + 1 };
            let records = db.records().await;
            let (a, b) = (&records[seq as usize - 1].1, &records[other as usize - 1].1);
            db.exec(&format!("UPDATE evidence SET record = $1 WHERE seq = {seq}"), &[b])
                .await;
            db.exec(&format!("UPDATE evidence SET record = $1 WHERE seq = {other}"), &[a])
                .await;
            recompute_chain(db).await;
        }
        Tamper::Truncate => {
            db.exec(&format!("DELETE FROM evidence WHERE seq >= {seq}"), &[]).await;
            db.exec(&format!("UPDATE chain_head SET seq = {}", seq - 1), &[]).await;
            recompute_chain(db).await;
        }
        Tamper::Append => {
            db.exec(
                &format!(
                    "INSERT INTO evidence (id, seq, trigger_kind, trigger_id, source, ticket, verdict, policy, mode, \
                     record, created_at, prev_hash, hash) SELECT 'forged-{seq}', {n} + 1, trigger_kind, trigger_id, \
                     source, ticket, verdict, policy, mode, record, created_at, prev_hash, hash FROM evidence \
                     WHERE seq = {seq}"
                ),
                &[],
            )
            .await
        }
        Tamper::Recompute => {
            db.exec(
                &format!("UPDATE evidence SET record = replace(record, 'blocked', 'allowed') WHERE seq = {seq}"),
                &[],
            )
            .await;
            recompute_chain(db).await;
        }
    }
}

/// Whether `evidence verify` (chain, columns and signed heads) finds a problem.
async fn detected(app: &TestApp, heads: &[SignedHead]) -> bool {
    let chain = app.store.verify_chain().await;
    let log = verify_against_heads(&app.store, heads, Some(&public_key())).await;
    let chain_broken = chain.map(|r| r.broken.is_some()).unwrap_or(true);
    let log_broken = log.map(|r| r.problem.is_some()).unwrap_or(true);
    chain_broken || log_broken
}

#[tokio::test]
async fn every_random_rewrite_of_the_log_is_detected_against_a_kept_signed_head() {
    // Arrange: a log of 9 records with a head kept outside the database.
    let app = signed_app().await;
    let heads = log_with_head(&app, 9).await;
    let db = Db::open(&app).await;
    db.exec("DELETE FROM outbox", &[]).await;
    db.exec("DELETE FROM claims", &[]).await;
    db.exec("CREATE TABLE kept AS SELECT * FROM evidence", &[]).await;
    db.exec("CREATE TABLE kept_head AS SELECT * FROM chain_head", &[]).await;
    assert!(!detected(&app, &heads).await, "the untouched log verifies");
    let mut rng = StdRng::seed_from_u64(6962);
    let kinds = [
        Tamper::EditByte,
        Tamper::EditColumn,
        Tamper::Delete,
        Tamper::Swap,
        Tamper::Truncate,
        Tamper::Append,
        Tamper::Recompute,
    ];

    for trial in 0..42 {
        // Act
        let how = kinds[trial % kinds.len()];
        tamper(&db, how, &mut rng, 9).await;

        // Assert
        assert!(detected(&app, &heads).await, "trial {trial}: {how:?} went unnoticed");
        db.exec("DELETE FROM evidence", &[]).await;
        db.exec("INSERT INTO evidence SELECT * FROM kept", &[]).await;
        db.exec("DELETE FROM chain_head", &[]).await;
        db.exec("INSERT INTO chain_head SELECT * FROM kept_head", &[]).await;
    }
    assert!(!detected(&app, &heads).await, "restored");
}

/// RFC 9162 §2.1.3.2, written apart from the product's own code.
fn independent_check(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]], root: [u8; 32]) -> bool {
    let node = |l: &[u8; 32], r: &[u8; 32]| -> [u8; 32] {
        Sha256::new()
            .chain_update([1])
            .chain_update(l)
            .chain_update(r)
            .finalize()
            .into()
    };
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            r = node(p, &r);
            while f % 2 == 0 && f != 0 {
                f /= 2;
                s /= 2;
            }
        } else {
            r = node(&r, p);
        }
        f /= 2;
        s /= 2;
    }
    s == 0 && r == root
}

fn hash32(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

#[tokio::test]
async fn an_inclusion_proof_from_the_cli_checks_out_with_the_public_key_and_rfc_6962_alone() {
    let app = signed_app().await;
    log_with_head(&app, 7).await;
    let records = app.store.evidence_page(0, 100).await.unwrap();

    for record in &records {
        // Act
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
            .arg("--config")
            .arg(app.dir().join("closegate.yaml"))
            .args(["evidence", "prove", &record.id])
            .output()
            .unwrap();
        let proof: Value = serde_json::from_slice(&out.stdout).unwrap();

        // Assert: the head is signed by the key, and the record is in its tree.
        let head = &proof["signed_head"];
        let signature: [u8; 64] = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            head["signature"].as_str().unwrap(),
        )
        .unwrap()
        .try_into()
        .unwrap();
        let head_text = head["head"].as_str().unwrap();
        public_key()
            .verify(head_text.as_bytes(), &Signature::from_bytes(&signature))
            .expect("the head's signature verifies");
        let tree: Value = serde_json::from_str(head_text).unwrap();
        let bytes = proof["record"].as_str().unwrap().as_bytes();
        assert_eq!(bytes, record.record.as_bytes(), "the record byte for byte");
        let leaf: [u8; 32] = Sha256::new().chain_update([0]).chain_update(bytes).finalize().into();
        let path: Vec<[u8; 32]> = proof["audit_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hash32(h.as_str().unwrap()))
            .collect();
        let root = hash32(tree["root_hash"].as_str().unwrap());
        let (index, size) = (
            proof["leaf_index"].as_u64().unwrap(),
            tree["tree_size"].as_u64().unwrap(),
        );
        assert!(
            independent_check(index, size, leaf, &path, root),
            "record #{}",
            record.seq
        );
        assert!(
            !independent_check(index, size, [7; 32], &path, root),
            "a forged record fails"
        );
    }
}

#[tokio::test]
async fn each_comment_carries_a_signed_tree_head_that_covers_its_record() {
    let app = signed_app().await;
    mock_github(&app, 1, 1).await;

    close_ungranted_ticket(&app).await;
    app.deliver_all().await;

    let comment = &posted_comments(&app).await[0];
    assert!(comment.contains("signed log head size 1, root "), "{comment}");
    let kept = app.ctx.log.sink().heads().unwrap();
    assert_eq!(kept.len(), 1, "signed on demand and kept outside the database");
}

#[tokio::test]
async fn an_export_carries_leaf_hashes_and_signed_heads_and_ends_quietly_when_the_reader_stops() {
    // Enough records that the output outgrows a pipe's buffer.
    let app = signed_app().await;
    log_with_head(&app, 80).await;
    let export = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_closegate"))
            .arg("--config")
            .arg(app.dir().join("closegate.yaml"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    let out = export(&["evidence", "export"]).wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // `| head -1`: the reader goes away after one line.
    let mut early = export(&["evidence", "export"]);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(early.stdout.take().unwrap()), &mut first).unwrap();
    let early = early.wait_with_output().unwrap();

    assert_eq!(lines.len(), 81, "eighty records and one signed head");
    assert!(
        lines.iter().map(|l| l.to_string().len()).sum::<usize>() > 128 * 1024,
        "more than a pipe holds"
    );
    for line in &lines[..80] {
        let record = line["record"].as_str().unwrap();
        let leaf: [u8; 32] = Sha256::new()
            .chain_update([0])
            .chain_update(record.as_bytes())
            .finalize()
            .into();
        assert_eq!(line["leaf_hash"], json!(hex::encode(leaf)));
    }
    assert!(lines[80]["signed_head"]["signature"].is_string());
    assert!(early.status.success(), "exit {:?}", early.status);
    assert!(
        String::from_utf8_lossy(&early.stderr).is_empty(),
        "quiet: {}",
        String::from_utf8_lossy(&early.stderr)
    );
}
