//! Logging: `tracing` to stdout (or a test sink), pretty or JSON, with one root
//! span per request carrying a request id.

use actix_web::HttpMessage;
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use crate::config::LogFormat;

tokio::task_local! {
    /// The trace the current decision or outbox delivery belongs to.
    static TRACE_ID: String;
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`),
/// or a new one when the header is absent or malformed.
pub fn trace_id_from(traceparent: Option<&str>) -> String {
    let sent = traceparent.and_then(|value| {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let valid = parts.len() >= 4
            && hex(parts[0], 2)
            && parts[0] != "ff"
            && hex(parts[1], 32)
            && parts[1].bytes().any(|b| b != b'0')
            && hex(parts[2], 16)
            && hex(parts[3], 2);
        valid.then(|| parts[1].to_string())
    });
    sent.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// A `traceparent` header for an outbound call in `trace_id`, with a new span id.
pub fn traceparent(trace_id: &str) -> String {
    let span = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace_id}-{}-01", &span[..16])
}

/// Runs `work` in the trace `trace_id`: outbound calls carry it.
pub async fn in_trace<F: std::future::Future>(trace_id: String, work: F) -> F::Output {
    TRACE_ID.scope(trace_id, work).await
}

/// The current trace id, inside [`in_trace`].
pub fn current_trace_id() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok()
}

/// Installs the global subscriber once. Later calls are ignored.
pub fn init<W>(format: LogFormat, filter: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_exporting(format, filter, sink, None)
}

/// [`init`], also exporting spans over OTLP/HTTP to `otlp` when given.
pub fn init_exporting<W>(format: LogFormat, filter: &str, sink: W, otlp: Option<&str>)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::{fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // Colour codes only on a terminal: log files and shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let exporter = otlp.and_then(|endpoint| match otlp_tracer(endpoint) {
        Ok(tracer) => Some(tracing_opentelemetry::layer().with_tracer(tracer)),
        Err(e) => {
            eprintln!("closegate: spans are not exported: {e}");
            None
        }
    });
    let registry = tracing_subscriber::registry().with(filter).with(exporter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(sink)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(sink).with_ansi(ansi))
            .try_init(),
    };
}

static PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = std::sync::OnceLock::new();

/// An OTLP/HTTP (JSON) exporter behind a batching tracer provider.
fn otlp_tracer(endpoint: &str) -> Result<opentelemetry_sdk::trace::Tracer, String> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(endpoint)
        .with_headers(Default::default())
        .build()
        .map_err(|e| e.to_string())?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("closegate")
                .build(),
        )
        .build();
    let tracer = provider.tracer("closegate");
    let _ = PROVIDER.set(provider);
    Ok(tracer)
}

/// Sends the spans still waiting to the OTLP endpoint (at shutdown).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// Makes `span` part of the trace `trace_id` for the OTLP export (a remote
/// parent in that trace); without an exporter it changes nothing.
pub fn adopt_trace(span: &Span, trace_id: &str) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = uuid::Uuid::new_v4().simple().to_string();
    let (Ok(trace), Ok(parent)) = (TraceId::from_hex(trace_id), SpanId::from_hex(&parent[..16])) else {
        return;
    };
    let context = SpanContext::new(trace, parent, TraceFlags::SAMPLED, true, TraceState::default());
    span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// The trace a request belongs to, kept in its extensions by [`RequestSpan`].
#[derive(Clone)]
pub struct RequestTrace(pub String);

/// Root span per request: a generated `request_id`, the caller's `X-Request-Id`
/// when it sends one, and health checks at DEBUG. The target is the matched
/// route template (`/hooks/{source}/{token}`), never the path as sent: a path
/// token must not reach any log line.
pub struct RequestSpan;

/// Declares the root span's fields, at `$level`.
macro_rules! request_span {
    ($level:expr, $method:expr, $route:expr, $request_id:expr, $caller_id:expr, $trace_id:expr) => {
        tracing::span!(
            $level,
            "HTTP request",
            http.method = %$method,
            http.route = %$route,
            http.target = %$route,
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{} {}", $method, $route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %$request_id,
            caller_request_id = %$caller_id,
            trace_id = %$trace_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    };
}

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let caller_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or("");
        let route = request.match_pattern().unwrap_or_else(|| "(no route)".to_string());
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let method = request.method().as_str();
        let trace_id = trace_id_from(request.headers().get("traceparent").and_then(|v| v.to_str().ok()));
        let span = if matches!(request.path(), "/healthz" | "/readyz" | "/metrics") {
            request_span!(tracing::Level::DEBUG, method, route, request_id, caller_id, trace_id)
        } else {
            request_span!(tracing::Level::INFO, method, route, request_id, caller_id, trace_id)
        };
        adopt_trace(&span, &trace_id);
        request.extensions_mut().insert(RequestTrace(trace_id));
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
