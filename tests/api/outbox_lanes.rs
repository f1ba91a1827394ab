//! The outbox under a slow helpdesk: lanes per source, leases renewed while a
//! delivery runs and fenced when lost, and a helpdesk's `Retry-After` honoured.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};

use crate::helpers::*;

async fn callbacks(app: &TestApp) -> usize {
    callbacks_naming(app, "").await
}

/// The callbacks received so far whose body holds `text`.
async fn callbacks_naming(app: &TestApp, text: &str) -> usize {
    app.helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/callback" && String::from_utf8_lossy(&r.body).contains(text))
        .count()
}

/// Waits (at most 10 s) until a callback has been received; how long after
/// `started` one was.
async fn until_a_callback(app: &TestApp, started: Instant) -> Duration {
    while callbacks(app).await == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The helpdesk answers every callback with `response`.
async fn answer_callbacks(app: &TestApp, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(response)
        .mount(&app.helpdesk)
        .await;
}

/// The helpdesk answers the first callback with `first`, the rest with 200.
async fn answer_first_callback(app: &TestApp, first: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    answer_callbacks(app, ResponseTemplate::new(200)).await;
}

/// Runs the workers until `count` reaches 2 (at most 15 s), sampling it every
/// 20 ms, and answers how long after it reached 1 it did.
async fn between_first_two(app: &TestApp, count: impl AsyncFn() -> usize) -> Duration {
    let workers = tokio::spawn(closegate::workers::run_until_stopped(app.ctx.clone()));
    let started = Instant::now();
    let (mut first, mut second) = (None, None);
    while second.is_none() && started.elapsed() < Duration::from_secs(15) {
        let (count, at) = (count().await, started.elapsed());
        if count >= 1 {
            first.get_or_insert(at);
        }
        if count >= 2 {
            second = Some(at);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers.abort();
    second.expect("a second one") - first.expect("a first one")
}

#[tokio::test]
async fn a_hung_helpdesk_delays_only_its_own_lane() {
    // Arrange: GitHub hangs on every comment; the generic source answers at once.
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/access-requests/issues/42/comments"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(20)))
        .mount(&app.helpdesk)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(20)))
        .mount(&app.helpdesk)
        .await;
    answer_callbacks(&app, ResponseTemplate::new(200)).await;
    for i in 0..4 {
        let mut event: serde_json::Value =
            serde_json::from_slice(&grant_event("nobody", "public.none", "SELECT")).unwrap();
        event["issue"]["number"] = json!(42);
        event["issue"]["updated_at"] = json!(format!("2026-11-22T12:00:0{i}Z"));
        app.post_github("issues", &format!("d-{i}"), &serde_json::to_vec(&event).unwrap())
            .await;
    }
    app.decide_all().await;
    app.close_generic("T-1", &[("request_type", "grant"), ("database_role", "nobody")])
        .await;

    // Act
    let started = Instant::now();
    let workers = tokio::spawn(closegate::workers::run_until_stopped(app.ctx.clone()));
    let waited = until_a_callback(&app, started).await;
    workers.abort();

    // Assert
    assert_eq!(callbacks(&app).await, 1);
    assert!(
        waited < Duration::from_secs(1),
        "the other source's message waited {waited:?}"
    );
}

#[tokio::test]
async fn a_decision_wakes_its_own_lane_at_once_rather_than_at_the_next_poll() {
    // Arrange: workers that poll only every 5 s, already idle, waiting.
    let app = spawn_app_with(Options {
        worker: Some(json!({ "enabled": true, "poll_interval_ms": 5000 })),
        ..Default::default()
    })
    .await;
    answer_callbacks(&app, ResponseTemplate::new(200)).await;
    let workers = tokio::spawn(closegate::workers::run_until_stopped(app.ctx.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Act: a blocked close, decided by the workers, owes the generic source a
    // callback.
    let started = Instant::now();
    let close = generic_close("T-9", &[("request_type", "grant"), ("database_role", "nobody")]);
    let response = app
        .post_generic("msg_lane_wake", chrono::Utc::now().timestamp(), &close)
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let waited = until_a_callback(&app, started).await;
    workers.abort();

    // Assert: decided and delivered on wake-ups, not after a 5 s poll.
    assert_eq!(callbacks(&app).await, 1);
    assert!(
        waited < Duration::from_secs(2),
        "the message waited {waited:?} for its lane"
    );
}

#[tokio::test]
async fn a_lane_delivers_up_to_its_limit_at_once_and_no_more() {
    // Arrange: a lane of 2 × 2 messages in flight, a helpdesk that takes 1.5 s
    // to answer each, and 10 blocked closes owing it a callback.
    let app = spawn_app_with(Options {
        worker: Some(json!({ "outbox_concurrency": 2, "outbox_batch": 2 })),
        ..Default::default()
    })
    .await;
    answer_callbacks(&app, ResponseTemplate::new(200).set_delay(Duration::from_millis(1500))).await;
    for i in 0..10 {
        app.close_generic(
            &format!("T-{i}"),
            &[("request_type", "grant"), ("database_role", "nobody")],
        )
        .await;
    }

    // Act
    let workers = tokio::spawn(closegate::workers::run_until_stopped(app.ctx.clone()));
    let started = Instant::now();
    until_a_callback(&app, started).await;
    // Less than the helpdesk's 1.5 s: none of the first claim has its answer yet.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let at_once = callbacks(&app).await;
    while app.stats().await.outbox_done < 10 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read before the workers stop: the store's connections they opened go
    // with their runtime.
    let done = app.stats().await.outbox_done;
    let claims = Db::open(&app).await.outbox_claim_sizes().await;
    workers.abort();

    // Assert: four side by side (not one, not all ten), then the rest, each
    // once; claimed four at once, then whenever half of them were done (not
    // a claim per pair of slots).
    assert_eq!(at_once, 4, "callbacks in flight before the first answer");
    assert_eq!(done, 10);
    assert_eq!(callbacks(&app).await, 10);
    assert_eq!(claims.iter().sum::<i64>(), 10);
    assert!(claims[0] == 4 && claims.len() <= 4, "claims of {claims:?}");
}

#[tokio::test]
async fn a_delivery_slower_than_the_lease_on_two_replicas_is_made_exactly_once() {
    // Arrange: a 2 s lease and a helpdesk that takes 4.5 s to answer.
    let app = spawn_app_with(Options {
        worker: Some(json!({ "lease_seconds": 2 })),
        ..Default::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(4500)))
        .expect(1)
        .mount(&app.helpdesk)
        .await;
    app.close_generic("T-1", &[("request_type", "grant"), ("database_role", "nobody")])
        .await;
    let other = app.replica().await;

    // Act: replica A delivers; replica B keeps trying while A waits on the helpdesk.
    let a = closegate::workers::try_deliver_next(&app.ctx);
    let b = async {
        let mut took = 0;
        for _ in 0..27 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if closegate::workers::try_deliver_next(&other).await.unwrap()
                == closegate::workers::ExecutionOutcome::TaskCompleted
            {
                took += 1;
            }
        }
        took
    };
    let (a, b_took) = tokio::join!(a, b);
    a.unwrap();

    // Assert (the mock checks exactly one callback when dropped)
    assert_eq!(b_took, 0, "the lease was renewed while the delivery ran");
    assert_eq!(app.stats().await.outbox_done, 1);
}

#[tokio::test]
async fn a_429_with_retry_after_makes_the_message_wait_that_long() {
    let app = spawn_app().await;
    answer_first_callback(&app, ResponseTemplate::new(429).insert_header("retry-after", "120")).await;
    app.close_generic("T-1", &[("request_type", "grant"), ("database_role", "nobody")])
        .await;

    assert_eq!(app.deliver_all().await, 1, "attempted once, answered 429");
    app.advance(Duration::from_secs(100));
    assert_eq!(app.deliver_all().await, 0, "still waiting as asked");
    app.advance(Duration::from_secs(30));
    assert_eq!(app.deliver_all().await, 1);

    assert_eq!(app.stats().await.outbox_done, 1);
    assert_eq!(callbacks(&app).await, 2);
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_its_lane_for_that_long() {
    // Arrange: a lane of one message at a time; the helpdesk answers the first
    // callback with 429 and `Retry-After: 2`, then 200; two closes owe it one.
    let app = spawn_app_with(Options {
        worker: Some(json!({ "outbox_concurrency": 1, "outbox_batch": 1 })),
        ..Default::default()
    })
    .await;
    answer_first_callback(&app, ResponseTemplate::new(429).insert_header("retry-after", "2")).await;
    for ticket in ["T-1", "T-2"] {
        app.close_generic(ticket, &[("request_type", "grant"), ("database_role", "nobody")])
            .await;
    }

    // Act: note when the first callback and the next one arrive.
    let gap = between_first_two(&app, async || callbacks(&app).await).await;

    // Assert: the other message, due all along, waited for the lane's pause.
    assert!(
        gap >= Duration::from_millis(1500),
        "the lane claimed again {gap:?} after the 429"
    );
}

#[tokio::test]
async fn a_tickets_later_message_waits_for_its_earlier_one_across_claims() {
    // Arrange: a lane of two messages in flight; callbacks for T-1 take 1 s,
    // for T-2 none. Due in this order: T-1, T-2, then T-1 again (a copy of its
    // message), so that the second T-1 message comes in a later claim, once
    // T-2's is done and while T-1's first is still being delivered.
    let app = spawn_app_with(Options {
        worker: Some(json!({ "outbox_concurrency": 1, "outbox_batch": 2 })),
        ..Default::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .and(body_string_contains("T-1"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(1)))
        .with_priority(1)
        .mount(&app.helpdesk)
        .await;
    answer_callbacks(&app, ResponseTemplate::new(200)).await;
    for ticket in ["T-1", "T-2"] {
        app.close_generic(ticket, &[("request_type", "grant"), ("database_role", "nobody")])
            .await;
    }
    Db::open(&app)
        .await
        .exec(
            "INSERT INTO outbox (id, idempotency_key, source, ticket, evidence_id, payload, next_attempt_at, \
             created_at) SELECT 'second-of-t1', idempotency_key || '-second', source, ticket, evidence_id, payload, \
             (SELECT MAX(next_attempt_at) FROM outbox) + 1, (SELECT MAX(created_at) FROM outbox) + 1 \
             FROM outbox WHERE ticket = 'T-1'",
            &[],
        )
        .await;

    // Act: note when each of T-1's callbacks leaves.
    let gap = between_first_two(&app, async || callbacks_naming(&app, "T-1").await).await;

    // Assert: the second left only once the first had its answer.
    assert!(
        gap >= Duration::from_millis(800),
        "T-1's second message left {gap:?} after its first"
    );
}
