//! The audit pack renders in a real headless Chromium with no error, shows
//! each ticket's timeline, keeps hostile ticket text as text, and its
//! inclusion proofs check against the signed tree head.

use std::process::Command;

use closegate::{
    audit_pack::{self, Scope},
    evidence::merkle,
};
use serde_json::{Value, json};

use crate::helpers::*;

const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const HOSTILE: &str = "</script><img src=x onerror=\"document.body.dataset.status='pwned'\"><!--";

/// The page as Chromium leaves it after its scripts ran, and what it logged.
fn render_in_chromium(page: &std::path::Path) -> (String, String) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (tests/run-all.sh installs Debian's chromium)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_audit_pack_renders_in_chromium_with_every_ticket_and_checkable_proofs() {
    let heads = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Options {
        evidence: Some(json!({ "signing_key": { "value": SEED }, "heads_dir": heads.path() })),
        ..Default::default()
    })
    .await;
    let mut target = Target::new().await;
    let (granted, table) = target.role_with_grant("SELECT").await;
    let (late, late_table) = target.role_with_grant("").await;
    let since = app.ctx.now_ms();
    let grant = |role: &str, table: &str| {
        [
            ("request_type", "grant"),
            ("database_role", role),
            ("table", table),
            ("privileges", "SELECT"),
        ]
        .map(|(k, v)| (k, v.to_string()))
    };
    let close = |ticket: &'static str, fields: [(&'static str, String); 4]| {
        let app = &app;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.close_generic(ticket, &fields).await
        }
    };
    close("P-1", grant(&granted, &table)).await;
    close("P-2", grant(&late, &late_table)).await;
    target.exec(&format!("GRANT SELECT ON {late_table} TO {late}")).await;
    app.advance(std::time::Duration::from_secs(3600));
    let last = close("P-2", grant(&late, &late_table)).await;
    // A ticket whose title tries to leave the data block and run script.
    let mut hostile: Value = serde_json::from_slice(&generic_close("P-3", &[("request_type", "grant")])).unwrap();
    hostile["data"]["title"] = json!(HOSTILE);
    let response = app
        .post_generic(
            "msg_hostile",
            chrono::Utc::now().timestamp(),
            hostile.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    app.decide_all().await;
    let head = app.ctx.log.head_covering(last.seq, app.ctx.now_ms()).await.unwrap();

    let pack = audit_pack::build(&app.store, &Scope::Since(since), head.clone(), app.ctx.now_ms(), None)
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    audit_pack::write(&pack, out.path()).unwrap();

    // Every record under the head has a proof that checks against its root.
    let root = hex::decode(head.unwrap().verified(None).unwrap().root_hash).unwrap();
    let root: merkle::Hash = root.try_into().unwrap();
    let mut proofs = 0;
    for step in pack.tickets.iter().flat_map(|t| &t.steps) {
        let Some(proof) = &step.proof else { continue };
        let leaf: merkle::Hash = hex::decode(step.leaf_hash.as_ref().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let path: Vec<merkle::Hash> = proof
            .audit_path
            .iter()
            .map(|h| hex::decode(h).unwrap().try_into().unwrap())
            .collect();
        assert!(merkle::verify_inclusion(
            proof.leaf_index,
            proof.tree_size,
            &leaf,
            &path,
            &root
        ));
        proofs += 1;
    }
    assert_eq!(
        proofs, 4,
        "every close (P-3 blocked for its missing fields) is under the head"
    );
    let p2: Vec<&str> = pack.tickets[1].steps.iter().map(|s| s.kind).collect();
    assert_eq!(p2, ["request", "close", "close"]);

    let (dom, log) = render_in_chromium(&out.path().join("index.html"));
    let status = dom
        .split("data-status=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("none");
    assert_eq!(status, "ok", "the page scripts ran to the end");
    assert!(!log.contains("Uncaught") && !log.contains(":ERROR:CONSOLE"), "{log}");
    for ticket in ["generic:P-1", "generic:P-2", "generic:P-3"] {
        assert!(dom.contains(&format!(r#"data-ticket="{ticket}""#)), "{ticket} missing");
    }
    assert!(
        dom.contains("&lt;/script&gt;&lt;img src=x"),
        "the hostile title shows as text"
    );
    assert!(!dom.contains("<img src=\"x\""), "no element was injected");
    assert!(
        dom.contains("inclusion proof: leaf") && dom.contains("Decisions per day"),
        "proofs and charts"
    );
    if let Ok(dir) = std::env::var("CLOSEGATE_KEEP_AUDIT_PACK") {
        audit_pack::write(&pack, std::path::Path::new(&dir)).unwrap();
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("audit-pack.json")).unwrap()).unwrap();
    assert_eq!(json["report"]["gated_closes"], 4);
}
