//! The workers' own runtime, on threads the kernel schedules after the ack
//! path's: acks come first. Decisions and outbox deliveries still use every
//! processor the ack path leaves idle, so they run at full speed whenever the
//! helpdesks are not flooding the receiver. A database engine runs its
//! background work (compaction, vacuum) the same way.

/// A runtime for background work whose threads run at `nice` (0 to 19, Linux;
/// elsewhere at the process's priority). Dropped, it stops its tasks without
/// waiting for them.
pub(crate) struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    pub(crate) fn start(nice: i32) -> std::io::Result<Background> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("closegate-worker")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Background(Some(runtime)))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime lives until dropped").handle()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (a thread's own
/// on Linux). A thread already at `nice` or below it (a process started
/// with a higher nice value) is left as it is: only raising the value needs
/// no privilege. A failure leaves the thread as it was, with a warning.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let nice = nice.min(19);
        let lowered = match rustix::process::getpriority_process(thread) {
            Ok(current) if current >= nice => Ok(()),
            _ => rustix::process::setpriority_process(thread, nice),
        };
        if let Err(e) = lowered {
            tracing::warn!(nice, error.message = %e, "could not lower a worker thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
