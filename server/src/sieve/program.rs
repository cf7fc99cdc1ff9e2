//! The compiled script: what validation produces and the interpreter runs. Every argument is
//! already typed and checked, so evaluation can't meet a malformed command.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `if`/`elsif` branches in order, then the `else` block.
    If {
        branches: Vec<(Test, Vec<Command>)>,
        otherwise: Option<Vec<Command>>,
    },
    Stop,
    /// `flags` is the `:flags` argument; `None` means "the current internal flags".
    Keep {
        flags: Option<Vec<String>>,
    },
    Discard,
    FileInto {
        mailbox: String,
        copy: bool,
        flags: Option<Vec<String>>,
    },
    SetFlag(Vec<String>),
    AddFlag(Vec<String>),
    RemoveFlag(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Header {
        headers: Vec<String>,
        keys: Vec<String>,
        matcher: Matcher,
    },
    Address {
        headers: Vec<String>,
        keys: Vec<String>,
        part: AddressPart,
        matcher: Matcher,
    },
    Envelope {
        parts: Vec<EnvelopePart>,
        keys: Vec<String>,
        part: AddressPart,
        matcher: Matcher,
    },
    Exists(Vec<String>),
    Size {
        over: bool,
        limit: u64,
    },
    Body {
        transform: BodyTransform,
        keys: Vec<String>,
        matcher: Matcher,
    },
    HasFlag {
        keys: Vec<String>,
        matcher: Matcher,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Matcher {
    pub kind: MatchType,
    pub comparator: Comparator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum MatchType {
    #[default]
    Is,
    Contains,
    Matches,
}

/// RFC 4790 comparators; `i;ascii-casemap` is the default (RFC 5228 section 2.7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Comparator {
    Octet,
    #[default]
    AsciiCasemap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AddressPart {
    #[default]
    All,
    LocalPart,
    Domain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvelopePart {
    From,
    To,
}

/// RFC 5173 body transforms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum BodyTransform {
    /// The body as it is on the wire, after the header block.
    Raw,
    /// The decoded text of every `text/*` part.
    #[default]
    Text,
    /// Decoded parts whose content type matches one of these (`"text"`, `"text/plain"`, `""`).
    Content(Vec<String>),
}
