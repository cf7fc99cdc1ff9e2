//! Semantic checks: known commands and tests, argument counts and types, which tags each one
//! takes, `require` rules, and `if`/`elsif`/`else` chains. Turns the syntax tree into the typed
//! program the interpreter runs.

use std::collections::BTreeSet;

use super::CompileError;
use super::flags::parse_flag_list;
use super::parser::{ArgValue, Argument, Command as Cmd, Test as TestNode};
use super::program::{
    AddressPart, BodyTransform, Command, Comparator, EnvelopePart, MatchType, Matcher, Test,
};

/// Extensions this server implements, as named in `require` (ManageSieve's `SIEVE` capability).
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "fileinto",
    "envelope",
    "copy",
    "imap4flags",
    "body",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
];

/// Headers whose values are free text or other non-address structures. An address test on
/// them is a script mistake (RFC 5228 section 5.1 restricts the test to address headers);
/// unlisted headers are parsed as address lists, so custom `X-` address headers still work.
const NON_ADDRESS_HEADERS: &[&str] = &[
    "subject",
    "comments",
    "keywords",
    "date",
    "resent-date",
    "message-id",
    "resent-message-id",
    "in-reply-to",
    "references",
    "received",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-id",
    "content-description",
];

pub(crate) fn validate(commands: &[Cmd]) -> Result<Vec<Command>, CompileError> {
    let mut extensions = BTreeSet::new();
    let mut rest = commands;
    while let Some((first, tail)) = rest.split_first() {
        if first.name != "require" {
            break;
        }
        require(first, &mut extensions)?;
        rest = tail;
    }
    let ctx = Context { extensions };
    ctx.block(rest)
}

fn require(cmd: &Cmd, extensions: &mut BTreeSet<String>) -> Result<(), CompileError> {
    no_block_no_tests(cmd)?;
    let mut args = Args::new(&cmd.args, &cmd.name, cmd.line);
    let names = args.string_list("the list of extensions")?;
    args.finish()?;
    for name in names {
        let name = name.to_ascii_lowercase();
        if !SUPPORTED_EXTENSIONS.contains(&name.as_str()) {
            return Err(CompileError::new(
                cmd.line,
                format!("unsupported extension {name}"),
            ));
        }
        extensions.insert(name);
    }
    Ok(())
}

fn no_block_no_tests(cmd: &Cmd) -> Result<(), CompileError> {
    if !cmd.tests.is_empty() {
        return Err(CompileError::new(
            cmd.line,
            format!("{} takes no test", cmd.name),
        ));
    }
    if cmd.block.is_some() {
        return Err(CompileError::new(
            cmd.line,
            format!("{} takes no block", cmd.name),
        ));
    }
    Ok(())
}

struct Context {
    extensions: BTreeSet<String>,
}

impl Context {
    /// Fails on the first use of an extension the script didn't `require`.
    fn need(&self, extension: &str, what: &str, line: usize) -> Result<(), CompileError> {
        if self.extensions.contains(extension) {
            Ok(())
        } else {
            Err(CompileError::new(
                line,
                format!("{what} needs require \"{extension}\""),
            ))
        }
    }

    fn block(&self, commands: &[Cmd]) -> Result<Vec<Command>, CompileError> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(cmd) = commands.get(i) {
            i += 1;
            match cmd.name.as_str() {
                "if" => {
                    let mut branches = vec![self.branch(cmd)?];
                    let mut otherwise = None;
                    while let Some(next) = commands.get(i) {
                        match next.name.as_str() {
                            "elsif" => branches.push(self.branch(next)?),
                            "else" => {
                                otherwise = Some(self.else_block(next)?);
                                i += 1;
                                break;
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    out.push(Command::If {
                        branches,
                        otherwise,
                    });
                }
                "elsif" | "else" => {
                    return Err(CompileError::new(
                        cmd.line,
                        format!("{} without a preceding if", cmd.name),
                    ));
                }
                "require" => {
                    return Err(CompileError::new(
                        cmd.line,
                        "require is only allowed at the start of the script",
                    ));
                }
                _ => out.push(self.action(cmd)?),
            }
        }
        Ok(out)
    }

    fn branch(&self, cmd: &Cmd) -> Result<(Test, Vec<Command>), CompileError> {
        Args::new(&cmd.args, &cmd.name, cmd.line).finish()?;
        let test = match (cmd.tests.as_slice(), cmd.test_list) {
            ([test], false) => self.test(test)?,
            _ => {
                return Err(CompileError::new(
                    cmd.line,
                    format!(
                        "{} needs exactly one test (use allof/anyof to combine)",
                        cmd.name
                    ),
                ));
            }
        };
        let Some(block) = &cmd.block else {
            return Err(CompileError::new(
                cmd.line,
                format!("{} needs a block", cmd.name),
            ));
        };
        Ok((test, self.block(block)?))
    }

    fn else_block(&self, cmd: &Cmd) -> Result<Vec<Command>, CompileError> {
        Args::new(&cmd.args, &cmd.name, cmd.line).finish()?;
        if !cmd.tests.is_empty() {
            return Err(CompileError::new(cmd.line, "else takes no test"));
        }
        match &cmd.block {
            Some(block) => self.block(block),
            None => Err(CompileError::new(cmd.line, "else needs a block")),
        }
    }

    fn action(&self, cmd: &Cmd) -> Result<Command, CompileError> {
        let name = cmd.name.as_str();
        let line = cmd.line;
        let mut args = Args::new(&cmd.args, name, line);
        let known = [
            "stop",
            "keep",
            "discard",
            "fileinto",
            "redirect",
            "setflag",
            "addflag",
            "removeflag",
        ];
        if !known.contains(&name) {
            return Err(CompileError::new(line, format!("unknown command {name}")));
        }
        no_block_no_tests(cmd)?;
        let command = match name {
            "stop" => Command::Stop,
            "discard" => Command::Discard,
            "keep" => {
                let mut flags = None;
                while let Some((tag, tag_line)) = args.tag() {
                    match tag {
                        "flags" => flags = Some(self.flags_tag(&mut args, &flags, tag_line)?),
                        other => return Err(args.unknown_tag(other, tag_line)),
                    }
                }
                Command::Keep { flags }
            }
            "fileinto" | "redirect" => {
                if name == "fileinto" {
                    self.need("fileinto", "fileinto", line)?;
                }
                let mut copy = false;
                let mut flags = None;
                while let Some((tag, tag_line)) = args.tag() {
                    match tag {
                        "copy" => {
                            self.need("copy", ":copy", tag_line)?;
                            if std::mem::replace(&mut copy, true) {
                                return Err(CompileError::new(tag_line, ":copy given twice"));
                            }
                        }
                        "flags" if name == "fileinto" => {
                            flags = Some(self.flags_tag(&mut args, &flags, tag_line)?);
                        }
                        other => return Err(args.unknown_tag(other, tag_line)),
                    }
                }
                let target = args.string(if name == "fileinto" {
                    "the mailbox"
                } else {
                    "the address"
                })?;
                args.finish()?;
                if name == "redirect" {
                    return Err(CompileError::new(
                        line,
                        "redirect is not supported by this server",
                    ));
                }
                if target.is_empty() {
                    return Err(CompileError::new(line, "fileinto needs a mailbox name"));
                }
                Command::FileInto {
                    mailbox: target,
                    copy,
                    flags,
                }
            }
            _ => {
                // setflag, addflag, removeflag
                self.need("imap4flags", name, line)?;
                let first = args.string_list("the list of flags")?;
                if args.has_more() {
                    return Err(CompileError::new(
                        line,
                        format!(
                            "{name} with a variable name needs the \"variables\" extension, which is not supported"
                        ),
                    ));
                }
                let flags = parse_flag_list(&first);
                match name {
                    "setflag" => Command::SetFlag(flags),
                    "addflag" => Command::AddFlag(flags),
                    _ => Command::RemoveFlag(flags),
                }
            }
        };
        args.finish()?;
        Ok(command)
    }

    /// `:flags <list>` on keep and fileinto (RFC 5232 section 5).
    fn flags_tag(
        &self,
        args: &mut Args<'_>,
        seen: &Option<Vec<String>>,
        line: usize,
    ) -> Result<Vec<String>, CompileError> {
        self.need("imap4flags", ":flags", line)?;
        if seen.is_some() {
            return Err(CompileError::new(line, ":flags given twice"));
        }
        Ok(parse_flag_list(
            &args.string_list("the list of flags after :flags")?,
        ))
    }

    fn test(&self, node: &TestNode) -> Result<Test, CompileError> {
        let name = node.name.as_str();
        let line = node.line;
        let mut args = Args::new(&node.args, name, line);
        match name {
            "not" => {
                args.finish()?;
                return match (node.tests.as_slice(), node.test_list) {
                    ([inner], false) => Ok(Test::Not(Box::new(self.test(inner)?))),
                    _ => Err(CompileError::new(line, "not needs exactly one test")),
                };
            }
            "allof" | "anyof" => {
                args.finish()?;
                if !node.test_list {
                    return Err(CompileError::new(
                        line,
                        format!("{name} needs a test list in parentheses"),
                    ));
                }
                let tests = node
                    .tests
                    .iter()
                    .map(|t| self.test(t))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if name == "allof" {
                    Test::AllOf(tests)
                } else {
                    Test::AnyOf(tests)
                });
            }
            _ => {}
        }
        if !node.tests.is_empty() {
            return Err(CompileError::new(
                line,
                format!("{name} takes no nested test"),
            ));
        }
        let test = match name {
            "true" => Test::True,
            "false" => Test::False,
            "header" => {
                let tags = self.tags(&mut args, TagSet::MATCH)?;
                Test::Header {
                    headers: args.string_list("the header names")?,
                    keys: args.string_list("the key list")?,
                    matcher: tags.matcher,
                }
            }
            "address" => {
                let tags = self.tags(&mut args, TagSet::ADDRESS)?;
                let headers = args.string_list("the header names")?;
                if let Some(bad) = headers
                    .iter()
                    .find(|h| NON_ADDRESS_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
                {
                    return Err(CompileError::new(
                        line,
                        format!("address test on header {bad}, which holds no addresses"),
                    ));
                }
                Test::Address {
                    headers,
                    keys: args.string_list("the key list")?,
                    part: tags.address_part,
                    matcher: tags.matcher,
                }
            }
            "envelope" => {
                self.need("envelope", "the envelope test", line)?;
                let tags = self.tags(&mut args, TagSet::ADDRESS)?;
                let parts = args
                    .string_list("the envelope parts")?
                    .iter()
                    .map(|p| match p.to_ascii_lowercase().as_str() {
                        "from" => Ok(EnvelopePart::From),
                        "to" => Ok(EnvelopePart::To),
                        _ => Err(CompileError::new(
                            line,
                            format!("unsupported envelope part {p:?} (only \"from\" and \"to\")"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Test::Envelope {
                    parts,
                    keys: args.string_list("the key list")?,
                    part: tags.address_part,
                    matcher: tags.matcher,
                }
            }
            "exists" => {
                args.no_tags()?;
                Test::Exists(args.string_list("the header names")?)
            }
            "size" => {
                let over = match args.tag() {
                    Some(("over", _)) => true,
                    Some(("under", _)) => false,
                    Some((other, tag_line)) => return Err(args.unknown_tag(other, tag_line)),
                    None => return Err(CompileError::new(line, "size needs :over or :under")),
                };
                Test::Size {
                    over,
                    limit: args.number("the size limit")?,
                }
            }
            "body" => {
                self.need("body", "the body test", line)?;
                let tags = self.tags(&mut args, TagSet::BODY)?;
                Test::Body {
                    transform: tags.transform,
                    keys: args.string_list("the key list")?,
                    matcher: tags.matcher,
                }
            }
            "hasflag" => {
                self.need("imap4flags", "hasflag", line)?;
                let tags = self.tags(&mut args, TagSet::MATCH)?;
                let keys = args.string_list("the list of flags")?;
                if args.has_more() {
                    return Err(CompileError::new(
                        line,
                        "hasflag with variable names needs the \"variables\" extension, which is not supported",
                    ));
                }
                Test::HasFlag {
                    keys,
                    matcher: tags.matcher,
                }
            }
            _ => return Err(CompileError::new(line, format!("unknown test {name}"))),
        };
        args.finish()?;
        Ok(test)
    }

    /// Reads the leading tagged arguments a test allows.
    fn tags(&self, args: &mut Args<'_>, allowed: TagSet) -> Result<Tags, CompileError> {
        let mut out = Tags::default();
        let (mut kind, mut comparator, mut part, mut transform) = (false, false, false, false);
        while let Some((tag, line)) = args.tag() {
            let once = |seen: &mut bool, what: &str| {
                if std::mem::replace(seen, true) {
                    Err(CompileError::new(line, format!("{what} given twice")))
                } else {
                    Ok(())
                }
            };
            match tag {
                "is" | "contains" | "matches" => {
                    once(&mut kind, "match type")?;
                    out.matcher.kind = match tag {
                        "is" => MatchType::Is,
                        "contains" => MatchType::Contains,
                        _ => MatchType::Matches,
                    };
                }
                "count" | "value" => {
                    return Err(CompileError::new(
                        line,
                        format!(
                            ":{tag} needs the \"relational\" extension, which is not supported"
                        ),
                    ));
                }
                "comparator" => {
                    once(&mut comparator, ":comparator")?;
                    let name = args.string("the comparator name")?;
                    out.matcher.comparator = match name.to_ascii_lowercase().as_str() {
                        "i;octet" => Comparator::Octet,
                        "i;ascii-casemap" => Comparator::AsciiCasemap,
                        _ => {
                            return Err(CompileError::new(
                                line,
                                format!("unknown comparator {name:?}"),
                            ));
                        }
                    };
                }
                "all" | "localpart" | "domain" if allowed.address_part => {
                    once(&mut part, "address part")?;
                    out.address_part = match tag {
                        "all" => AddressPart::All,
                        "localpart" => AddressPart::LocalPart,
                        _ => AddressPart::Domain,
                    };
                }
                "raw" | "text" | "content" if allowed.body_transform => {
                    once(&mut transform, "body transform")?;
                    out.transform = match tag {
                        "raw" => BodyTransform::Raw,
                        "text" => BodyTransform::Text,
                        _ => BodyTransform::Content(args.string_list("the content types")?),
                    };
                }
                other => return Err(args.unknown_tag(other, line)),
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
struct TagSet {
    address_part: bool,
    body_transform: bool,
}

impl TagSet {
    const MATCH: TagSet = TagSet {
        address_part: false,
        body_transform: false,
    };
    const ADDRESS: TagSet = TagSet {
        address_part: true,
        body_transform: false,
    };
    const BODY: TagSet = TagSet {
        address_part: false,
        body_transform: true,
    };
}

#[derive(Debug, Default)]
struct Tags {
    matcher: Matcher,
    address_part: AddressPart,
    transform: BodyTransform,
}

/// Walks one command's or test's arguments: tags first, then positional ones.
struct Args<'a> {
    list: &'a [Argument],
    pos: usize,
    owner: &'a str,
    line: usize,
}

impl<'a> Args<'a> {
    fn new(list: &'a [Argument], owner: &'a str, line: usize) -> Self {
        Self {
            list,
            pos: 0,
            owner,
            line,
        }
    }

    /// The next argument if it is a tag, consumed.
    fn tag(&mut self) -> Option<(&'a str, usize)> {
        match self.list.get(self.pos) {
            Some(Argument {
                value: ArgValue::Tag(tag),
                line,
            }) => {
                self.pos += 1;
                Some((tag.as_str(), *line))
            }
            _ => None,
        }
    }

    fn unknown_tag(&self, tag: &str, line: usize) -> CompileError {
        CompileError::new(line, format!("{} does not take :{tag}", self.owner))
    }

    /// For commands and tests that take no tags: names a stray one as unknown.
    fn no_tags(&mut self) -> Result<(), CompileError> {
        match self.tag() {
            Some((tag, line)) => Err(self.unknown_tag(tag, line)),
            None => Ok(()),
        }
    }

    fn has_more(&self) -> bool {
        self.pos < self.list.len()
    }

    fn next(&mut self, what: &str) -> Result<&'a Argument, CompileError> {
        let arg = self.list.get(self.pos).ok_or_else(|| {
            CompileError::new(self.line, format!("{} is missing {what}", self.owner))
        })?;
        self.pos += 1;
        Ok(arg)
    }

    fn wrong_type(&self, arg: &Argument, what: &str) -> CompileError {
        let found = match &arg.value {
            ArgValue::Tag(tag) => format!("tag :{tag}"),
            ArgValue::Number(n) => format!("number {n}"),
            ArgValue::Strings {
                bracketed: true, ..
            } => "a string list".to_owned(),
            ArgValue::Strings { .. } => "a string".to_owned(),
        };
        CompileError::new(
            arg.line,
            format!("{}: expected {what}, found {found}", self.owner),
        )
    }

    fn string_list(&mut self, what: &str) -> Result<Vec<String>, CompileError> {
        let arg = self.next(what)?;
        match &arg.value {
            ArgValue::Strings { values, .. } => Ok(values.clone()),
            _ => Err(self.wrong_type(arg, &format!("a string list ({what})"))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, CompileError> {
        let arg = self.next(what)?;
        match &arg.value {
            ArgValue::Strings {
                values,
                bracketed: false,
            } => Ok(values.concat()),
            _ => Err(self.wrong_type(arg, &format!("a string ({what})"))),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, CompileError> {
        let arg = self.next(what)?;
        match &arg.value {
            ArgValue::Number(n) => Ok(*n),
            _ => Err(self.wrong_type(arg, &format!("a number ({what})"))),
        }
    }

    /// Fails if arguments are left over.
    fn finish(&self) -> Result<(), CompileError> {
        match self.list.get(self.pos) {
            None => Ok(()),
            Some(Argument {
                value: ArgValue::Tag(tag),
                line,
            }) if self.list[..self.pos]
                .iter()
                .all(|a| matches!(a.value, ArgValue::Tag(_))) =>
            {
                Err(self.unknown_tag(tag, *line))
            }
            Some(Argument {
                value: ArgValue::Tag(tag),
                line,
            }) => Err(CompileError::new(
                *line,
                format!(
                    "{}: unexpected :{tag} (tags go before the other arguments)",
                    self.owner
                ),
            )),
            Some(arg) => Err(CompileError::new(
                arg.line,
                format!("{} has too many arguments", self.owner),
            )),
        }
    }
}
