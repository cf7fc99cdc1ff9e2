//! The server's shutdown: one sender, a signal in every accept loop and session. Sessions say
//! their protocol's goodbye when it fires; whatever is still running after the grace period
//! is aborted by the owner of the tasks.

use tokio::sync::watch;

/// Owned by the running server; [`Shutdown::trigger`] fires every signal.
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: Some(self.tx.subscribe()),
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// A copy of the signal for one task.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: Option<watch::Receiver<bool>>,
}

impl ShutdownSignal {
    /// A signal that never fires (embedders and tests running a session on their own).
    pub fn never() -> Self {
        Self { rx: None }
    }

    pub fn is_requested(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once shutdown is requested; never for [`ShutdownSignal::never`]. A dropped
    /// sender counts as a request (the server is gone).
    pub async fn requested(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                let _ = rx.wait_for(|requested| *requested).await;
            }
            None => std::future::pending().await,
        }
    }
}
