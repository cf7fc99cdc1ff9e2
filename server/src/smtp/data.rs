//! DATA body reader (RFC 5321 section 4.5.2): dot-unstuffing, end at `<CRLF>.<CRLF>`, bare LF
//! normalised to CRLF, size limit. Sans-IO: fed byte slices, streaming, no line buffer.
//!
//! Only a strict `<CRLF>.<CRLF>` ends the data: accepting `<LF>.<LF>` too would let a message
//! smuggle a second SMTP transaction past relays that read it differently.

/// What the reader produced once the end marker was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message, unstuffed, with CRLF line ends.
    Complete(Vec<u8>),
    /// The message grew past the limit; its bytes were dropped while reading to the end marker.
    TooBig { size: usize },
    /// The caller dropped the message ([`DataReader::drop_body`]: no memory to hold it); it was
    /// read to the end marker.
    Dropped { size: usize },
}

#[derive(Debug)]
pub struct DataReader {
    max_size: usize,
    body: Vec<u8>,
    /// Bytes the message has (or would have had) so far.
    size: usize,
    /// The next byte starts a line.
    at_line_start: bool,
    /// The previous line ended with CRLF (or this is the first line).
    previous_crlf: bool,
    /// The current line began with a dot, which was removed.
    dot_line: bool,
    /// The current line has content (after a removed dot).
    line_has_content: bool,
    /// A CR was seen and not yet written: it may be part of the line's CRLF.
    pending_cr: bool,
    /// [`DataReader::drop_body`] was called: bytes are only counted.
    dropped: bool,
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            body: Vec::new(),
            size: 0,
            at_line_start: true,
            previous_crlf: true,
            dot_line: false,
            line_has_content: false,
            pending_cr: false,
            dropped: false,
        }
    }

    /// Message bytes held in memory now.
    pub fn held(&self) -> usize {
        self.body.len()
    }

    /// Whether the message was dropped (and only its end is awaited).
    pub fn is_dropped(&self) -> bool {
        self.dropped
    }

    /// Frees the message read so far and keeps nothing more; reading goes on to the end marker,
    /// which then gives [`DataOutcome::Dropped`].
    pub fn drop_body(&mut self) {
        self.dropped = true;
        self.body = Vec::new();
    }

    /// Consumes input up to and including the end marker. Returns how many bytes were used and,
    /// when the end marker was among them, the outcome. Bytes after the marker are the next
    /// commands (pipelining) and are left to the caller.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        for (i, &b) in input.iter().enumerate() {
            if self.at_line_start {
                self.at_line_start = false;
                self.line_has_content = false;
                self.dot_line = b == b'.';
                if self.dot_line {
                    continue;
                }
            }
            match b {
                b'\n' => {
                    let crlf = std::mem::take(&mut self.pending_cr);
                    if self.dot_line && !self.line_has_content && crlf && self.previous_crlf {
                        return (i + 1, Some(self.finish()));
                    }
                    self.push(b"\r\n");
                    self.at_line_start = true;
                    self.previous_crlf = crlf;
                }
                b'\r' => {
                    // A CR followed by another CR is a bare CR: keep it as is.
                    if self.pending_cr {
                        self.push(b"\r");
                        self.line_has_content = true;
                    }
                    self.pending_cr = true;
                }
                _ => {
                    if std::mem::take(&mut self.pending_cr) {
                        self.push(b"\r");
                    }
                    self.push(&[b]);
                    self.line_has_content = true;
                }
            }
        }
        (input.len(), None)
    }

    fn push(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.dropped {
            return;
        }
        if self.size > self.max_size {
            // Free what we held; we only count from now on.
            if !self.body.is_empty() {
                self.body = Vec::new();
            }
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    fn finish(&mut self) -> DataOutcome {
        if self.size > self.max_size {
            DataOutcome::TooBig { size: self.size }
        } else if self.dropped {
            DataOutcome::Dropped { size: self.size }
        } else {
            DataOutcome::Complete(std::mem::take(&mut self.body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> (usize, Option<DataOutcome>) {
        DataReader::new(max).feed(input)
    }

    fn complete(input: &[u8]) -> Vec<u8> {
        match read_all(input, 1 << 20) {
            (_, Some(DataOutcome::Complete(m))) => m,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn plain_message_kept_exactly() {
        let msg = b"Subject: hi\r\n\r\nbody line\r\n";
        let mut wire = msg.to_vec();
        wire.extend_from_slice(b".\r\n");
        assert_eq!(complete(&wire), msg);
    }

    #[test]
    fn dot_unstuffing() {
        assert_eq!(
            complete(b"..leading\r\n...\r\nmid.dot\r\n..\r\n.\r\n"),
            b".leading\r\n..\r\nmid.dot\r\n.\r\n"
        );
    }

    #[test]
    fn empty_message() {
        assert_eq!(complete(b".\r\n"), b"");
    }

    #[test]
    fn bare_lf_normalised_but_never_ends_data() {
        // `\n.\n` is content (the dot line unstuffed to an empty line), not the end.
        assert_eq!(complete(b"a\nb\n.\nc\r\n.\r\n"), b"a\r\nb\r\n\r\nc\r\n");
        // A dot line after a bare LF is not the end marker either.
        assert_eq!(complete(b"a\n.\r\nb\r\n.\r\n"), b"a\r\n\r\nb\r\n");
        // `.` line ending in a bare LF is not the end marker.
        let (_, outcome) = read_all(b"a\r\n.\n", 100);
        assert_eq!(outcome, None);
    }

    #[test]
    fn bare_cr_is_kept() {
        assert_eq!(complete(b"a\rb\r\r\n.\r\n"), b"a\rb\r\r\n");
    }

    #[test]
    fn pipelined_bytes_after_the_end_are_left() {
        let input = b"x\r\n.\r\nQUIT\r\n";
        let (used, outcome) = read_all(input, 100);
        assert_eq!(&input[used..], b"QUIT\r\n");
        assert_eq!(outcome, Some(DataOutcome::Complete(b"x\r\n".to_vec())));
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_result() {
        let input = b"..a\r\nb\nc\rd\r\n.x\r\n.\r\nNEXT";
        let mut reader = DataReader::new(1000);
        let mut result = None;
        let mut used_total = 0;
        for chunk in input.chunks(1) {
            let (used, outcome) = reader.feed(chunk);
            used_total += used;
            if outcome.is_some() {
                result = outcome;
                break;
            }
        }
        assert_eq!(&input[used_total..], b"NEXT");
        assert_eq!(
            result,
            Some(DataOutcome::Complete(b".a\r\nb\r\nc\rd\r\nx\r\n".to_vec()))
        );
    }

    #[test]
    fn a_dropped_body_is_read_to_the_end_and_not_kept() {
        let mut reader = DataReader::new(100);
        assert_eq!(reader.feed(b"Subject: x\r\n\r\nfirst\r\n"), (21, None));
        assert_eq!(reader.held(), 21);
        reader.drop_body();
        assert_eq!(reader.held(), 0);
        let (used, outcome) = reader.feed(b"second\r\n.\r\nQUIT\r\n");
        assert_eq!(used, 11);
        assert_eq!(outcome, Some(DataOutcome::Dropped { size: 29 }));
        assert_eq!(reader.held(), 0);
    }

    #[test]
    fn size_limit_reads_to_the_end() {
        let (used, outcome) = read_all(b"0123456789\r\nmore\r\n.\r\nQUIT\r\n", 10);
        assert_eq!(used, 21);
        assert_eq!(outcome, Some(DataOutcome::TooBig { size: 18 }));
        // Exactly at the limit is fine.
        let (_, outcome) = read_all(b"01234567\r\n.\r\n", 10);
        assert_eq!(
            outcome,
            Some(DataOutcome::Complete(b"01234567\r\n".to_vec()))
        );
    }
}
