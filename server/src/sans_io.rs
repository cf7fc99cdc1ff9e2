//! What a sans-IO protocol session (SMTP, POP3, ManageSieve) asks of its connection loop: byte
//! I/O, or a protocol-specific event (TLS, SASL work, a directory or store call) to run and
//! answer through the session's own methods.

#[must_use]
#[derive(Debug)]
pub enum Interrupt<E> {
    Io(Io),
    Event(E),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Io {
    /// Send these bytes (they may be buffered until `NeedMoreInput`, `Close` or an event).
    Output(Vec<u8>),
    /// Flush the output, read more input and pass it to the session's `enqueue_input`.
    NeedMoreInput,
    /// Flush the output and close the connection.
    Close,
}

/// Input bytes not yet parsed; consumed from the front without shifting on every line.
#[derive(Debug, Default)]
pub struct InputBuffer {
    data: Vec<u8>,
    start: usize,
}

impl InputBuffer {
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(bytes);
    }
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
    }
    pub fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }
}
