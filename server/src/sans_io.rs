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
    /// Leading bytes of `bytes()` already searched by [`InputBuffer::find_lf`] and holding no
    /// LF: a long line arriving a byte at a time is searched once, not once per byte
    /// (quadratic otherwise, as the IMAP framer was).
    scanned: usize,
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
        let n = n.min(self.data.len() - self.start);
        self.start += n;
        // What stays of the searched prefix still holds no LF.
        self.scanned = self.scanned.saturating_sub(n);
    }
    pub fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
        self.scanned = 0;
    }

    /// The offset in `bytes()` of the first LF, resuming the search where the last one stopped.
    pub fn find_lf(&mut self) -> Option<usize> {
        let bytes = self.bytes();
        let from = self.scanned.min(bytes.len());
        match bytes[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.scanned = from + i;
                Some(from + i)
            }
            None => {
                self.scanned = bytes.len();
                None
            }
        }
    }

    /// Bytes searched for an LF so far (tests prove the search is linear with it).
    #[cfg(test)]
    pub fn scanned(&self) -> usize {
        self.scanned
    }
}

#[cfg(test)]
mod tests {
    use super::InputBuffer;

    #[test]
    fn find_lf_resumes_where_it_stopped() {
        let mut input = InputBuffer::default();
        for (i, byte) in b"AUTH PLAIN AAAA".iter().enumerate() {
            input.extend(std::slice::from_ref(byte));
            assert_eq!(input.find_lf(), None);
            assert_eq!(
                input.scanned(),
                i + 1,
                "searched bytes are not searched again"
            );
        }
        input.extend(b"\r\nNOOP\r\n");
        assert_eq!(input.find_lf(), Some(16));
        input.consume(17);
        assert_eq!(input.scanned(), 0);
        assert_eq!(input.find_lf(), Some(5));
    }

    #[test]
    fn consuming_part_of_the_searched_prefix_keeps_the_rest() {
        let mut input = InputBuffer::default();
        input.extend(b"abcdef");
        assert_eq!(input.find_lf(), None);
        input.consume(2);
        assert_eq!(input.scanned(), 4);
        input.extend(b"g\n");
        assert_eq!(input.find_lf(), Some(5));
        input.clear();
        assert_eq!(input.scanned(), 0);
        input.extend(b"\n");
        assert_eq!(input.find_lf(), Some(0));
    }
}
