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
