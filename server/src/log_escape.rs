//! Log lines never carry raw control bytes: client input (user names, mailbox names, commands)
//! reaches many log fields, and an ESC or a backspace in a log file rewrites what a terminal or
//! a pager shows. Every control byte except tab, and every C1 control (U+0080-U+009F), is
//! written as `\xNN`; the newline that ends each line stays.

use std::io::Write;

/// Escapes one formatted log event (its final newline kept).
pub fn escape(buf: &[u8]) -> Vec<u8> {
    let (body, newline) = match buf.split_last() {
        Some((b'\n', body)) => (body, true),
        _ => (buf, false),
    };
    let mut out = Vec::with_capacity(buf.len() + 8);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else if b == 0xc2 && body.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) {
            // U+0080-U+009F in UTF-8: C1 controls (e.g. CSI) some terminals obey.
            out.extend_from_slice(format!("\\u{{{:x}}}", body[i + 1]).as_bytes());
            i += 1;
        } else {
            out.push(b);
        }
        i += 1;
    }
    if newline {
        out.push(b'\n');
    }
    out
}

/// A writer that escapes what it is given; the fmt layer writes one whole event per call.
pub struct EscapingWriter<W: Write>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escape(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_escaped_and_the_line_end_kept() {
        assert_eq!(
            escape(b"user=\x1b[31mroot\x08\x00 ok\ttab\x7f\n"),
            b"user=\\x1b[31mroot\\x08\\x00 ok\ttab\\x7f\n".to_vec()
        );
        assert_eq!(
            escape(b"a\nb\n"),
            b"a\\x0ab\n".to_vec(),
            "inner newlines too"
        );
        assert_eq!(escape(b"no newline\r"), b"no newline\\x0d".to_vec());
        assert_eq!(
            escape("csi \u{9b}2J é ü\n".as_bytes()),
            "csi \\u{9b}2J é ü\n".as_bytes().to_vec(),
            "C1 controls escaped, other UTF-8 untouched"
        );
        assert_eq!(escape(b""), Vec::<u8>::new());
    }

    #[test]
    fn the_writer_reports_the_input_length() {
        let mut w = EscapingWriter(Vec::new());
        assert_eq!(w.write(b"\x1b\n").expect("write"), 2);
        assert_eq!(w.0, b"\\x1b\n".to_vec());
    }
}
