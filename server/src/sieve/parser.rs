//! Sieve grammar (RFC 5228 section 8.2) into a syntax tree. The parser knows no command's
//! meaning except where the grammar alone can't report a useful error: only `if`/`elsif`
//! take a test, and only `not` nests a single test, so an identifier anywhere else means a
//! missing `;` or `{`. Nesting is bounded here, before anything recurses on the tree.

use super::CompileError;
use super::lexer::{Spanned, Token};

/// Blocks plus nested tests on any path through the script (`if` inside `if` counts two,
/// `not allof(not ...)` counts three).
pub const MAX_NESTING_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub name: String,
    pub line: usize,
    pub args: Vec<Argument>,
    pub tests: Vec<Test>,
    /// Whether `tests` came as a parenthesised test-list.
    pub test_list: bool,
    pub block: Option<Vec<Command>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Test {
    pub name: String,
    pub line: usize,
    pub args: Vec<Argument>,
    pub tests: Vec<Test>,
    pub test_list: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Argument {
    pub value: ArgValue,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgValue {
    Tag(String),
    Number(u64),
    /// `bracketed` is false for a lone string, which is also a one-element string list.
    Strings {
        values: Vec<String>,
        bracketed: bool,
    },
}

pub(crate) fn parse(tokens: Vec<Spanned>) -> Result<Vec<Command>, CompileError> {
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let commands = parser.commands()?;
    match parser.peek() {
        None => Ok(commands),
        Some(t) => Err(CompileError::new(
            t.line,
            format!(
                "unexpected {} where a command should start",
                t.token.describe()
            ),
        )),
    }
}

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.pos)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.peek().map(|t| &t.token)
    }

    fn next(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.pos).cloned();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    /// Line of the last consumed token: a missing `;` belongs to the line it should end.
    fn last_line(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(1, |t| t.line)
    }

    fn enter(&mut self, line: usize) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(CompileError::new(
                line,
                format!("nesting deeper than {MAX_NESTING_DEPTH} blocks and tests"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Commands up to a `}` or the end.
    fn commands(&mut self) -> Result<Vec<Command>, CompileError> {
        let mut commands = Vec::new();
        while let Some(t) = self.peek() {
            match &t.token {
                Token::RBrace => break,
                Token::Identifier(_) => commands.push(self.command()?),
                other => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "unexpected {} where a command should start",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        Ok(commands)
    }

    fn command(&mut self) -> Result<Command, CompileError> {
        let Some(Spanned {
            token: Token::Identifier(name),
            line,
        }) = self.next()
        else {
            return Err(CompileError::new(self.last_line(), "expected a command"));
        };
        let args = self.arguments()?;
        let takes_test = name == "if" || name == "elsif";
        let (tests, test_list) = match self.peek_token() {
            Some(Token::Identifier(_)) if takes_test => (vec![self.test()?], false),
            Some(Token::LParen) => (self.test_list()?, true),
            _ => (Vec::new(), false),
        };
        if takes_test && tests.is_empty() {
            let found = self
                .peek()
                .map_or("the end of the script".to_owned(), |t| t.token.describe());
            return Err(CompileError::new(
                self.peek().map_or(line, |t| t.line),
                format!("{name} needs a test, found {found}"),
            ));
        }
        let block = match self.peek() {
            Some(Spanned {
                token: Token::Semicolon,
                ..
            }) => {
                self.next();
                None
            }
            Some(Spanned {
                token: Token::LBrace,
                line: brace_line,
            }) => {
                let brace_line = *brace_line;
                self.next();
                self.enter(brace_line)?;
                let body = self.commands()?;
                self.leave();
                match self.next() {
                    Some(Spanned {
                        token: Token::RBrace,
                        ..
                    }) => Some(body),
                    _ => {
                        return Err(CompileError::new(
                            brace_line,
                            "block opened here is never closed with '}'",
                        ));
                    }
                }
            }
            Some(t) if takes_test => {
                return Err(CompileError::new(
                    t.line,
                    format!(
                        "expected '{{' after the test of {name}, found {}",
                        t.token.describe()
                    ),
                ));
            }
            _ => {
                return Err(CompileError::new(
                    self.last_line(),
                    format!("missing ';' after {name}"),
                ));
            }
        };
        Ok(Command {
            name,
            line,
            args,
            tests,
            test_list,
            block,
        })
    }

    fn arguments(&mut self) -> Result<Vec<Argument>, CompileError> {
        let mut args = Vec::new();
        while let Some(t) = self.peek() {
            let line = t.line;
            let value = match &t.token {
                Token::Tag(tag) => ArgValue::Tag(tag.clone()),
                Token::Number(n) => ArgValue::Number(*n),
                Token::String(s) => ArgValue::Strings {
                    values: vec![s.clone()],
                    bracketed: false,
                },
                Token::LBracket => {
                    args.push(Argument {
                        value: self.string_list()?,
                        line,
                    });
                    continue;
                }
                _ => break,
            };
            self.next();
            args.push(Argument { value, line });
        }
        Ok(args)
    }

    fn string_list(&mut self) -> Result<ArgValue, CompileError> {
        let open_line = self.peek().map_or(1, |t| t.line);
        self.next();
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Spanned {
                    token: Token::String(s),
                    ..
                }) => values.push(s),
                Some(t) => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected a string in the list, found {}",
                            t.token.describe()
                        ),
                    ));
                }
                None => {
                    return Err(CompileError::new(
                        open_line,
                        "string list is never closed with ']'",
                    ));
                }
            }
            match self.next() {
                Some(Spanned {
                    token: Token::Comma,
                    ..
                }) => {}
                Some(Spanned {
                    token: Token::RBracket,
                    ..
                }) => break,
                Some(t) => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected ',' or ']' in the string list, found {}",
                            t.token.describe()
                        ),
                    ));
                }
                None => {
                    return Err(CompileError::new(
                        open_line,
                        "string list is never closed with ']'",
                    ));
                }
            }
        }
        Ok(ArgValue::Strings {
            values,
            bracketed: true,
        })
    }

    fn test(&mut self) -> Result<Test, CompileError> {
        let (name, line) = match self.next() {
            Some(Spanned {
                token: Token::Identifier(name),
                line,
            }) => (name, line),
            Some(t) => {
                return Err(CompileError::new(
                    t.line,
                    format!("expected a test, found {}", t.token.describe()),
                ));
            }
            None => return Err(CompileError::new(self.last_line(), "expected a test")),
        };
        self.enter(line)?;
        let args = self.arguments()?;
        let (tests, test_list) = match self.peek_token() {
            Some(Token::Identifier(_)) if name == "not" => (vec![self.test()?], false),
            Some(Token::LParen) => (self.test_list()?, true),
            _ if name == "not" => {
                let found = self
                    .peek()
                    .map_or("the end of the script".to_owned(), |t| t.token.describe());
                return Err(CompileError::new(
                    self.peek().map_or(line, |t| t.line),
                    format!("not needs a test, found {found}"),
                ));
            }
            _ => (Vec::new(), false),
        };
        self.leave();
        Ok(Test {
            name,
            line,
            args,
            tests,
            test_list,
        })
    }

    fn test_list(&mut self) -> Result<Vec<Test>, CompileError> {
        let open_line = self.peek().map_or(1, |t| t.line);
        self.next();
        self.enter(open_line)?;
        let mut tests = Vec::new();
        loop {
            tests.push(self.test()?);
            match self.next() {
                Some(Spanned {
                    token: Token::Comma,
                    ..
                }) => {}
                Some(Spanned {
                    token: Token::RParen,
                    ..
                }) => break,
                Some(t) => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected ',' or ')' in the test list, found {}",
                            t.token.describe()
                        ),
                    ));
                }
                None => {
                    return Err(CompileError::new(
                        open_line,
                        "test list is never closed with ')'",
                    ));
                }
            }
        }
        self.leave();
        Ok(tests)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse_str(source: &str) -> Result<Vec<Command>, CompileError> {
        parse(tokenize(source)?)
    }

    fn error(source: &str) -> CompileError {
        match parse_str(source) {
            Ok(tree) => panic!("expected an error, got {tree:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn if_with_nested_tests_and_block() {
        let tree =
            parse_str("if anyof (not exists \"x\", size :over 1K) { keep; }").unwrap_or_default();
        assert_eq!(tree.len(), 1);
        let cmd = &tree[0];
        assert_eq!(cmd.name, "if");
        assert_eq!(cmd.tests.len(), 1);
        let anyof = &cmd.tests[0];
        assert!(anyof.test_list);
        assert_eq!(anyof.tests.len(), 2);
        assert_eq!(anyof.tests[0].name, "not");
        assert_eq!(anyof.tests[0].tests[0].name, "exists");
        assert_eq!(
            anyof.tests[1].args,
            vec![
                Argument {
                    value: ArgValue::Tag("over".into()),
                    line: 1
                },
                Argument {
                    value: ArgValue::Number(1024),
                    line: 1
                },
            ]
        );
        assert_eq!(cmd.block.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn string_lists_and_lone_strings() {
        let tree = parse_str("require [\"a\", \"b\"];\nfileinto \"x\";").unwrap_or_default();
        assert_eq!(
            tree[0].args[0].value,
            ArgValue::Strings {
                values: vec!["a".into(), "b".into()],
                bracketed: true
            }
        );
        assert_eq!(
            tree[1].args[0],
            Argument {
                value: ArgValue::Strings {
                    values: vec!["x".into()],
                    bracketed: false
                },
                line: 2
            }
        );
    }

    #[test]
    fn missing_semicolon_names_the_line_it_belongs_to() {
        let e = error("keep;\nfileinto \"a\"\nstop;");
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "missing ';' after fileinto")
        );
        let e = error("keep");
        assert_eq!((e.line, e.message.as_str()), (1, "missing ';' after keep"));
    }

    #[test]
    fn structural_errors() {
        assert_eq!(error("if true\n\nkeep;").line, 3);
        assert_eq!(
            error("if true\n\nkeep;").message,
            "expected '{' after the test of if, found 'keep'"
        );
        assert_eq!(error("if ;").message, "if needs a test, found ';'");
        assert_eq!(
            error("if\n{ keep; }").to_string(),
            "line 2: if needs a test, found '{'"
        );
        assert_eq!(
            error("if").message,
            "if needs a test, found the end of the script"
        );
        assert_eq!(error("if true {\n keep;\n").line, 1);
        assert_eq!(error("keep;\n}").line, 2);
        assert_eq!(error("require [\"a\",\n];").line, 2);
        assert_eq!(
            error("require [\"a\"").message,
            "string list is never closed with ']'"
        );
        assert_eq!(
            error("require [];").message,
            "expected a string in the list, found ']'"
        );
        assert_eq!(error("if anyof(true,\nfalse keep").line, 2);
        assert_eq!(
            error("\"a\";").message,
            "unexpected a string where a command should start"
        );
        assert_eq!(error("if not ;").message, "not needs a test, found ';'");
        assert_eq!(error("if anyof(;").message, "expected a test, found ';'");
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "if true {".repeat(16), "}".repeat(16));
        assert!(parse_str(&ok).is_ok());
        let deep = format!("{}{}", "if true {".repeat(40), "}".repeat(40));
        let e = error(&deep);
        assert!(e.message.starts_with("nesting deeper than"), "{e}");
        let tests = format!("if {}true {{}}", "not ".repeat(100));
        assert!(error(&tests).message.starts_with("nesting deeper than"));
        let lists = format!("if {}true{} {{}}", "anyof(".repeat(100), ")".repeat(100));
        assert!(error(&lists).message.starts_with("nesting deeper than"));
    }
}
