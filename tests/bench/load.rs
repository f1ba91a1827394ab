//! The load generator's own threads: like a helpdesk (or any load tool), it
//! does not share the runtime of the receiver under test, so a figure measures
//! the receiver and not the load generator waiting behind the receiver's
//! background work.

/// Two threads, as the processors of this machine the figures are quoted on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static LOAD: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    LOAD.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("load")
            .enable_all()
            .build()
            .expect("the load generator's runtime starts")
    })
}
