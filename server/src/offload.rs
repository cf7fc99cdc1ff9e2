//! A small bounded pool for CPU-heavy session work (IMAP LIST over many mailboxes, SEARCH over
//! big messages). The runtime has few async workers and every protocol shares them: one client's
//! heavy command running there stalls everyone. Jobs run on tokio's blocking threads instead, at
//! most `tasks` at once; a session waiting for its turn awaits, so it blocks nobody.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("heavy-work job panicked or was cancelled: {0}")]
    Failed(String),
    #[error("heavy-work pool closed")]
    Closed,
}

/// Runs jobs off the async workers, `tasks` at a time. Cheap to clone; clones share the bound.
#[derive(Clone)]
pub struct Offload {
    permits: Arc<Semaphore>,
    #[cfg(test)]
    gate: Option<Arc<test_gate::Gate>>,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

impl Default for Offload {
    /// As many jobs at once as the machine has cores (at least 1).
    fn default() -> Self {
        Self::new(
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
        )
    }
}

impl Offload {
    pub fn new(tasks: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(tasks.max(1))),
            #[cfg(test)]
            gate: None,
        }
    }

    /// Runs `job` on a blocking thread once a slot is free. Dropping the future abandons the
    /// result; a job already running still finishes and frees its slot.
    pub async fn run<T, F>(&self, job: F) -> Result<T, OffloadError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OffloadError::Closed)?;
        #[cfg(test)]
        let gate = self.gate.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            #[cfg(test)]
            if let Some(gate) = gate {
                gate.pass();
            }
            job()
        })
        .await
        .map_err(|e| OffloadError::Failed(e.to_string()))
    }
}

#[cfg(test)]
pub mod test_gate {
    //! Holds jobs at their start (on their blocking thread) until the test releases them, so a
    //! test can show, by order alone, what else gets served while a heavy job is running.

    use std::sync::{Arc, Condvar, Mutex};

    use tokio::sync::mpsc;

    pub struct Gate {
        started: mpsc::UnboundedSender<()>,
        /// Jobs that may still pass.
        tickets: Mutex<usize>,
        cv: Condvar,
    }

    impl Gate {
        pub(super) fn pass(&self) {
            let _ = self.started.send(());
            let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
            while *tickets == 0 {
                tickets = self.cv.wait(tickets).unwrap_or_else(|e| e.into_inner());
            }
            *tickets -= 1;
        }

        fn add(&self, n: usize) {
            let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
            *tickets = tickets.saturating_add(n);
            self.cv.notify_all();
        }
    }

    /// The test's side: learn that a job started, then let jobs through.
    pub struct GateHandle {
        gate: Arc<Gate>,
        started: mpsc::UnboundedReceiver<()>,
    }

    impl GateHandle {
        /// Waits until a job is running (held at the gate).
        pub async fn job_started(&mut self) {
            self.started.recv().await.expect("gate alive");
        }

        /// Lets one job through.
        pub fn release_one(&self) {
            self.gate.add(1);
        }

        /// Lets every job through from now on.
        pub fn open(&self) {
            self.gate.add(usize::MAX);
        }
    }

    impl Drop for GateHandle {
        fn drop(&mut self) {
            self.open();
        }
    }

    impl super::Offload {
        /// A pool whose jobs wait at a gate the test opens.
        pub fn gated(tasks: usize) -> (Self, GateHandle) {
            let (tx, rx) = mpsc::unbounded_channel();
            let gate = Arc::new(Gate {
                started: tx,
                tickets: Mutex::new(0),
                cv: Condvar::new(),
            });
            let mut pool = Self::new(tasks);
            pool.gate = Some(gate.clone());
            (pool, GateHandle { gate, started: rx })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_bounds_them() {
        let pool = Offload::new(1);
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        // A second job waits for the slot the first (held at the gate) occupies.
        let (pool, mut gate) = Offload::gated(1);
        let first = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 1).await.unwrap() }
        });
        gate.job_started().await;
        assert_eq!(pool.permits.available_permits(), 0);
        gate.release_one();
        assert_eq!(first.await.unwrap(), 1);
        gate.open();
        assert_eq!(pool.run(|| 2).await.unwrap(), 2);
        assert_eq!(pool.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_frees_its_slot() {
        let pool = Offload::new(1);
        let r = pool.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(r, Err(OffloadError::Failed(_))));
        assert_eq!(pool.run(|| 3).await.unwrap(), 3);
    }
}
