//! Sieve tokens (RFC 5228 section 8.1). Every token carries the line it starts on, so later
//! stages can name the line of an error.

use super::CompileError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// Lowercased: Sieve identifiers are case-insensitive (RFC 5228 section 8.2).
    Identifier(String),
    /// Without the colon, lowercased.
    Tag(String),
    Number(u64),
    /// A quoted or `text:` string, escapes and dot-stuffing already removed.
    String(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
}

impl Token {
    /// How an error message shows this token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Token::Identifier(name) => format!("'{name}'"),
            Token::Tag(name) => format!("':{name}'"),
            Token::Number(n) => format!("number {n}"),
            Token::String(_) => "a string".to_owned(),
            Token::LBracket => "'['".to_owned(),
            Token::RBracket => "']'".to_owned(),
            Token::LParen => "'('".to_owned(),
            Token::RParen => "')'".to_owned(),
            Token::LBrace => "'{'".to_owned(),
            Token::RBrace => "'}'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::Semicolon => "';'".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned {
    pub token: Token,
    pub line: usize,
}

/// Splits a whole script into tokens.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Spanned>, CompileError> {
    let mut lexer = Lexer {
        src: source.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token()? {
        tokens.push(token);
    }
    Ok(tokens)
}

struct Lexer<'s> {
    src: &'s [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    /// Consumes one byte, counting lines.
    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        if byte == b'\n' {
            self.line += 1;
        }
        Some(byte)
    }

    fn error(&self, line: usize, message: impl Into<String>) -> CompileError {
        CompileError::new(line, message)
    }

    fn next_token(&mut self) -> Result<Option<Spanned>, CompileError> {
        self.skip_whitespace_and_comments()?;
        let line = self.line;
        let Some(byte) = self.peek() else {
            return Ok(None);
        };
        let token = match byte {
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b';' => {
                self.bump();
                match byte {
                    b'[' => Token::LBracket,
                    b']' => Token::RBracket,
                    b'(' => Token::LParen,
                    b')' => Token::RParen,
                    b'{' => Token::LBrace,
                    b'}' => Token::RBrace,
                    b',' => Token::Comma,
                    _ => Token::Semicolon,
                }
            }
            b'"' => Token::String(self.quoted_string()?),
            b':' => {
                self.bump();
                match self.peek() {
                    Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                        Token::Tag(self.identifier())
                    }
                    _ => return Err(self.error(line, "':' must be followed by a tag name")),
                }
            }
            b'0'..=b'9' => Token::Number(self.number()?),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let name = self.identifier();
                if name == "text" && self.peek() == Some(b':') {
                    self.bump();
                    Token::String(self.multiline_string(line)?)
                } else {
                    Token::Identifier(name)
                }
            }
            other => {
                return Err(self.error(line, format!("unexpected character {}", show_byte(other))));
            }
        };
        Ok(Some(Spanned { token, line }))
    }

    fn skip_whitespace_and_comments(&mut self) -> Result<(), CompileError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'#') => self.skip_line(),
                Some(b'/') if self.peek_at(1) == Some(b'*') => {
                    let start = self.line;
                    self.pos += 2;
                    loop {
                        match self.bump() {
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => {}
                            None => {
                                return Err(self.error(start, "unterminated /* comment"));
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Skips to just after the next line feed (or to the end).
    fn skip_line(&mut self) {
        while let Some(byte) = self.bump() {
            if byte == b'\n' {
                return;
            }
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.pos += 1;
        }
        // Only ASCII bytes were consumed, so this is always valid UTF-8.
        String::from_utf8_lossy(&self.src[start..self.pos]).to_ascii_lowercase()
    }

    fn number(&mut self) -> Result<u64, CompileError> {
        let line = self.line;
        let too_large = || CompileError::new(line, "number too large");
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            self.pos += 1;
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or_else(too_large)?;
        }
        let multiplier: u64 = match self.peek() {
            Some(b'k' | b'K') => 1 << 10,
            Some(b'm' | b'M') => 1 << 20,
            Some(b'g' | b'G') => 1 << 30,
            _ => 1,
        };
        if multiplier != 1 {
            self.pos += 1;
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            return Err(self.error(line, "invalid number: only K, M or G may follow the digits"));
        }
        value.checked_mul(multiplier).ok_or_else(too_large)
    }

    /// A `"..."` string: `\"` and `\\` are escapes, any other backslash is dropped (RFC 5228
    /// section 2.4.2: undefined escapes mean the character itself). Line breaks are allowed.
    fn quoted_string(&mut self) -> Result<String, CompileError> {
        let start = self.line;
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(escaped) => out.push(escaped),
                    None => return Err(self.error(start, "unterminated string")),
                },
                Some(byte) => out.push(byte),
                None => return Err(self.error(start, "unterminated string")),
            }
        }
        // Only ASCII backslashes were removed, so valid UTF-8 in stays valid UTF-8 out.
        String::from_utf8(out).map_err(|_| self.error(start, "string is not valid UTF-8"))
    }

    /// The body of a `text:` string, after the colon: the rest of the line may hold only
    /// blanks and a `#` comment; then lines up to a line holding a single `.`. A leading
    /// dot is removed from the other lines (dot-unstuffing).
    fn multiline_string(&mut self, start: usize) -> Result<String, CompileError> {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'#') => self.skip_line(),
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                self.bump();
                self.bump();
            }
            Some(b'\n') => {
                self.bump();
            }
            _ => {
                return Err(self.error(start, "text: must be followed by the end of the line"));
            }
        }
        let mut out = Vec::new();
        loop {
            if self.pos >= self.src.len() {
                return Err(self.error(
                    start,
                    "unterminated text: string (no line with a single '.')",
                ));
            }
            let line_start = self.pos;
            let line_end = self.src[line_start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.src.len(), |i| line_start + i + 1);
            let line = &self.src[line_start..line_end];
            let content = line
                .strip_suffix(b"\n")
                .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
            self.pos = line_end;
            if line.ends_with(b"\n") {
                self.line += 1;
            }
            if content == b"." {
                break;
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        String::from_utf8(out).map_err(|_| self.error(start, "string is not valid UTF-8"))
    }
}

fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("0x{byte:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(source: &str) -> Vec<Token> {
        match tokenize(source) {
            Ok(tokens) => tokens.into_iter().map(|s| s.token).collect(),
            Err(e) => panic!("tokenize failed: {e}"),
        }
    }

    fn error(source: &str) -> CompileError {
        match tokenize(source) {
            Ok(tokens) => panic!("expected an error, got {tokens:?}"),
            Err(e) => e,
        }
    }

    fn s(text: &str) -> Token {
        Token::String(text.to_owned())
    }

    #[test]
    fn punctuation_identifiers_and_tags() {
        assert_eq!(
            tokens("IF Header:IS [\"a\",\"b\"] (x) {stop;}"),
            vec![
                Token::Identifier("if".into()),
                Token::Identifier("header".into()),
                Token::Tag("is".into()),
                Token::LBracket,
                s("a"),
                Token::Comma,
                s("b"),
                Token::RBracket,
                Token::LParen,
                Token::Identifier("x".into()),
                Token::RParen,
                Token::LBrace,
                Token::Identifier("stop".into()),
                Token::Semicolon,
                Token::RBrace,
            ]
        );
    }

    #[test]
    fn numbers_with_quantifiers() {
        assert_eq!(
            tokens("0 42 1K 1k 2M 3G"),
            vec![
                Token::Number(0),
                Token::Number(42),
                Token::Number(1024),
                Token::Number(1024),
                Token::Number(2 * 1024 * 1024),
                Token::Number(3 * 1024 * 1024 * 1024),
            ]
        );
        assert_eq!(
            error("size :over 10X;").message,
            "invalid number: only K, M or G may follow the digits"
        );
        assert_eq!(error("99999999999999999999999").message, "number too large");
        assert_eq!(error("\n18446744073709551615G").line, 2);
    }

    #[test]
    fn quoted_string_escapes() {
        assert_eq!(tokens(r#""a\"b""#), vec![s("a\"b")]);
        assert_eq!(tokens(r#""a\\b""#), vec![s("a\\b")]);
        // An undefined escape stands for the character itself.
        assert_eq!(tokens(r#""\a\*""#), vec![s("a*")]);
        assert_eq!(tokens(r#""\\*""#), vec![s("\\*")]);
        assert_eq!(tokens("\"two\r\nlines\""), vec![s("two\r\nlines")]);
        assert_eq!(tokens("\"caf\u{e9}\""), vec![s("caf\u{e9}")]);
        assert_eq!(tokens("\"\""), vec![s("")]);
    }

    #[test]
    fn unterminated_string_names_its_first_line() {
        let e = error("keep;\nif header \"a\n\nb");
        assert_eq!((e.line, e.message.as_str()), (2, "unterminated string"));
        assert_eq!(error("\"abc\\").line, 1);
        assert_eq!(error("\"abc\\\"").message, "unterminated string");
    }

    #[test]
    fn multiline_strings_unstuff_dots() {
        let source = "text: # comment\r\nline one\r\n..dotted\r\n.\r\n;";
        assert_eq!(
            tokens(source),
            vec![s("line one\r\n.dotted\r\n"), Token::Semicolon]
        );
        assert_eq!(tokens("text:\n.\n"), vec![s("")]);
        assert_eq!(tokens("TEXT:  \n a\n.x\n."), vec![s(" a\nx\n")]);
        // A line of two dots is content (one dot), not the terminator.
        assert_eq!(tokens("text:\n..\n.\n"), vec![s(".\n")]);
    }

    #[test]
    fn multiline_string_lines_are_counted() {
        let all = tokenize("text:\na\nb\n.\nstop;").unwrap_or_default();
        let stop = all
            .iter()
            .find(|t| t.token == Token::Identifier("stop".into()));
        assert_eq!(stop.map(|t| t.line), Some(5));
    }

    #[test]
    fn multiline_string_errors() {
        assert_eq!(error("\ntext: x\n.\n").line, 2);
        let e = error("keep;\ntext:\nabc\n");
        assert_eq!(
            (e.line, e.message.contains("unterminated text:")),
            (2, true)
        );
    }

    #[test]
    fn comments_are_skipped_and_lines_counted() {
        let all =
            tokenize("# hash\n/* bracket\n * comment */ keep; /**/\n# end").unwrap_or_default();
        assert_eq!(
            all,
            vec![
                Spanned {
                    token: Token::Identifier("keep".into()),
                    line: 3
                },
                Spanned {
                    token: Token::Semicolon,
                    line: 3
                },
            ]
        );
        assert_eq!(
            tokens("keep;#no newline at end"),
            vec![Token::Identifier("keep".into()), Token::Semicolon]
        );
        let e = error("keep;\n/* never closed\n");
        assert_eq!((e.line, e.message.as_str()), (2, "unterminated /* comment"));
        // `#` inside a string is not a comment.
        assert_eq!(tokens("\"a#b\""), vec![s("a#b")]);
    }

    #[test]
    fn stray_characters_are_errors() {
        assert_eq!(error("keep;\n  @").line, 2);
        assert_eq!(error("/ keep").message, "unexpected character '/'");
        assert_eq!(error(": is").message, "':' must be followed by a tag name");
        assert_eq!(error("k\u{e9}ep").message, "unexpected character 0xc3");
    }
}
