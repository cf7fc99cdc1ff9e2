//! The report of a `check` run: progress lines (stderr), a summary, JSON and JUnit XML.

use serde_json::{Value, json};

use crate::suites::{Check, Level, Verdict};

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub pass: usize,
    pub fail: usize,
    pub deviation: usize,
    pub skip: usize,
    /// Failed MUST checks (what makes the exit code 1).
    pub must_fail: usize,
}

pub fn tally(checks: &[Check]) -> Tally {
    let mut t = Tally::default();
    for c in checks {
        match c.verdict {
            Verdict::Pass => t.pass += 1,
            Verdict::Fail => {
                t.fail += 1;
                if c.is_must() {
                    t.must_fail += 1;
                }
            }
            Verdict::Deviation { .. } => t.deviation += 1,
            Verdict::Skip { .. } => t.skip += 1,
        }
    }
    t
}

fn protocol(c: &Check) -> &str {
    c.spec.as_ref().map_or("other", |s| s.protocol.as_str())
}

fn level(c: &Check) -> &'static str {
    match c.spec.as_ref().map(|s| s.level) {
        Some(Level::Should) => "SHOULD",
        _ => "MUST",
    }
}

fn title(c: &Check) -> &str {
    c.spec.as_ref().map_or(&c.name, |s| &s.title)
}

/// The header line of a protocol's group in the table.
pub fn group_header(protocol: &str) -> String {
    format!("── {protocol} ──")
}

/// One row of the table (and what shows a failure, indented under it).
pub fn row(c: &Check) -> String {
    let verdict = match &c.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Deviation { .. } => "deviation",
        Verdict::Skip { .. } => "skip",
    };
    let section = c.spec.as_ref().map_or("", |s| s.section.as_str());
    let mut line = format!(
        "  {verdict:<9} {:<6} {}  {} [{section}]",
        level(c),
        c.id(),
        title(c)
    );
    match &c.verdict {
        Verdict::Skip { reason } => line.push_str(&format!("\n              skipped: {reason}")),
        Verdict::Deviation { source } => {
            line.push_str(&format!("\n              known deviation: {source}"))
        }
        _ => {}
    }
    if c.verdict != Verdict::Pass
        && let Some(e) = &c.evidence
    {
        for l in e.lines() {
            line.push_str(&format!("\n              | {l}"));
        }
    }
    line
}

/// The whole table, grouped by protocol in order of first appearance.
pub fn table(checks: &[Check]) -> String {
    let mut groups: Vec<&str> = Vec::new();
    for c in checks {
        if !groups.contains(&protocol(c)) {
            groups.push(protocol(c));
        }
    }
    let mut out = String::new();
    for g in groups {
        out.push_str(&group_header(g));
        out.push('\n');
        for c in checks.iter().filter(|c| protocol(c) == g) {
            out.push_str(&row(c));
            out.push('\n');
        }
    }
    out
}

pub fn summary(t: &Tally, profile: &str) -> String {
    format!(
        "{} pass, {} fail ({} MUST), {} deviation, {} skip (profile {profile})",
        t.pass, t.fail, t.must_fail, t.deviation, t.skip
    )
}

/// The run as JSON: profile, exit code, counts, and every check.
pub fn json(checks: &[Check], profile: &str, exit_code: u8) -> Value {
    let t = tally(checks);
    let rows: Vec<Value> = checks
        .iter()
        .map(|c| {
            let mut v = json!({
                "id": c.id(),
                "title": title(c),
                "protocol": protocol(c),
                "section": c.spec.as_ref().map(|s| s.section.clone()),
                "level": level(c),
                "verdict": c.verdict.word(),
                "evidence": c.evidence,
            });
            match &c.verdict {
                Verdict::Skip { reason } => v["reason"] = json!(reason),
                Verdict::Deviation { source } => v["source"] = json!(source),
                _ => {}
            }
            v
        })
        .collect();
    json!({
        "profile": profile,
        "exit_code": exit_code,
        "summary": {
            "pass": t.pass, "fail": t.fail, "must_fail": t.must_fail,
            "deviation": t.deviation, "skip": t.skip,
        },
        "checks": rows,
    })
}

/// XML-escapes text and attribute values; drops characters XML 1.0 cannot carry.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per protocol, one testcase per check; failures with their
/// evidence, skips and deviations as `skipped` with the reason or source.
pub fn junit(checks: &[Check], profile: &str) -> String {
    let t = tally(checks);
    let mut groups: Vec<&str> = Vec::new();
    for c in checks {
        if !groups.contains(&protocol(c)) {
            groups.push(protocol(c));
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"mail-oidc check ({})\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        xml_escape(profile),
        checks.len(),
        t.fail,
        t.skip + t.deviation
    ));
    for g in groups {
        let members: Vec<&Check> = checks.iter().filter(|c| protocol(c) == g).collect();
        let gt = tally(&members.iter().map(|c| (*c).clone()).collect::<Vec<_>>());
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
            xml_escape(g),
            members.len(),
            gt.fail,
            gt.skip + gt.deviation
        ));
        for c in members {
            let section = c.spec.as_ref().map_or("", |s| s.section.as_str());
            out.push_str(&format!(
                "    <testcase classname=\"mail-oidc.{}\" name=\"{}: {} [{} {}]\"",
                xml_escape(g),
                xml_escape(c.id()),
                xml_escape(title(c)),
                level(c),
                xml_escape(section)
            ));
            match &c.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Fail => out.push_str(&format!(
                    ">\n      <failure message=\"{} failed\">{}</failure>\n    </testcase>\n",
                    level(c),
                    xml_escape(c.evidence.as_deref().unwrap_or(""))
                )),
                Verdict::Skip { reason } => out.push_str(&format!(
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_escape(reason)
                )),
                Verdict::Deviation { source } => out.push_str(&format!(
                    ">\n      <skipped message=\"known deviation: {}\"/>\n    </testcase>\n",
                    xml_escape(source)
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

pub mod xml {
    //! A small XML reader for the tests (and anyone checking a JUnit file): elements,
    //! attributes, text and the five predefined entities; rejects anything not well-formed.

    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Element {
        pub name: String,
        pub attrs: Vec<(String, String)>,
        pub children: Vec<Element>,
        pub text: String,
    }

    impl Element {
        pub fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
        pub fn all(&self, name: &str) -> Vec<&Element> {
            self.children.iter().filter(|c| c.name == name).collect()
        }
    }

    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find(';').ok_or("unterminated entity")? + i;
            out.push(match &rest[i + 1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                e => return Err(format!("unknown entity &{e};")),
            });
            rest = &rest[end + 1..];
        }
        if rest.contains('<') {
            return Err("raw '<' in text".into());
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Parses a document with one root element (after an optional `<?xml ...?>`).
    pub fn parse(doc: &str) -> Result<Element, String> {
        let mut s = doc.trim_start();
        if s.starts_with("<?xml") {
            let end = s.find("?>").ok_or("unterminated declaration")?;
            s = s[end + 2..].trim_start();
        }
        let (root, rest) = element(s)?;
        if !rest.trim().is_empty() {
            return Err(format!("content after the root: {rest:.40}"));
        }
        Ok(root)
    }

    fn element(s: &str) -> Result<(Element, &str), String> {
        let s = s.strip_prefix('<').ok_or("expected '<'")?;
        let name_end = s
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .ok_or("unterminated tag")?;
        let mut el = Element {
            name: s[..name_end].to_string(),
            ..Element::default()
        };
        if el.name.is_empty() {
            return Err("empty tag name".into());
        }
        let mut s = s[name_end..].trim_start();
        loop {
            if let Some(rest) = s.strip_prefix("/>") {
                return Ok((el, rest));
            }
            if let Some(rest) = s.strip_prefix('>') {
                s = rest;
                break;
            }
            let eq = s.find('=').ok_or("attribute without '='")?;
            let key = s[..eq].trim().to_string();
            let after = s[eq + 1..].trim_start();
            let after = after
                .strip_prefix('"')
                .ok_or("attribute value not quoted")?;
            let close = after.find('"').ok_or("unterminated attribute")?;
            if el.attrs.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate attribute {key}"));
            }
            el.attrs.push((key, unescape(&after[..close])?));
            s = after[close + 1..].trim_start();
        }
        loop {
            let lt = s.find('<').ok_or("unclosed element")?;
            el.text.push_str(&unescape(&s[..lt])?);
            s = &s[lt..];
            if let Some(rest) = s.strip_prefix("</") {
                let gt = rest.find('>').ok_or("unterminated end tag")?;
                if rest[..gt].trim() != el.name {
                    return Err(format!("</{}> closes <{}>", &rest[..gt], el.name));
                }
                return Ok((el, &rest[gt + 1..]));
            }
            let (child, rest) = element(s)?;
            el.children.push(child);
            s = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suites::{Report, Spec};

    fn sample() -> Vec<Check> {
        let mut r = Report::new("t");
        r.check_spec(
            Spec::must("sasl.imap.a", "A <passes>", "imap", "RFC 7628 §3.1"),
            "a",
            Ok(()),
        );
        r.check_spec(
            Spec::must("sasl.imap.b", "B & fails", "imap", "RFC 7628 §3.2.2"),
            "b",
            Err(anyhow::anyhow!(
                "got \"NO\" <x> after Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0. \u{1}"
            )),
        );
        r.check_spec(
            Spec::should("sasl.smtp.c", "C", "smtp", "RFC 4954 §4"),
            "c",
            Err(anyhow::anyhow!("535")),
        );
        r.skip(
            Spec::must("jmap.d", "D", "jmap", "RFC 6750 §3"),
            "d",
            "no --jmap given",
        );
        r.checks
    }

    #[test]
    fn junit_parses_back_with_failures_and_skips() {
        let checks = sample();
        let xml = junit(&checks, "strict");
        let root = xml::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert_eq!(root.name, "testsuites");
        assert_eq!(root.attr("tests"), Some("4"));
        assert_eq!(root.attr("failures"), Some("2"));
        assert_eq!(root.attr("skipped"), Some("1"));
        let suites = root.all("testsuite");
        let names: Vec<_> = suites.iter().filter_map(|s| s.attr("name")).collect();
        assert_eq!(names, ["imap", "smtp", "jmap"]);
        let imap = suites[0].all("testcase");
        assert_eq!(imap.len(), 2);
        assert!(
            imap[0].attr("name").unwrap_or("").contains("A <passes>"),
            "{xml}"
        );
        let failure = imap[1].all("failure");
        assert_eq!(failure.len(), 1, "{xml}");
        // Evidence is escaped, redacted, and carries no control characters.
        assert!(failure[0].text.contains("got \"NO\" <x>"), "{xml}");
        assert!(!failure[0].text.contains("eyJ"), "{xml}");
        let skipped = suites[2].all("testcase")[0].all("skipped");
        assert_eq!(skipped[0].attr("message"), Some("no --jmap given"));
    }

    #[test]
    fn the_xml_reader_refuses_what_is_not_well_formed() {
        for bad in [
            "<a><b></a></b>",
            "<a x=1/>",
            "<a>&bogus;</a>",
            "<a>1 < 2</a>",
            "<a></a><b/>",
            "<a x=\"1\" x=\"2\"/>",
        ] {
            assert!(xml::parse(bad).is_err(), "{bad}");
        }
        let el = xml::parse("<a k=\"&lt;&amp;\">t<b/></a>").expect("well-formed");
        assert_eq!(el.attr("k"), Some("<&"));
        assert_eq!(el.text, "t");
    }

    #[test]
    fn json_and_table_say_everything() {
        let checks = sample();
        let v = json(&checks, "strict", 1);
        assert_eq!(v["summary"]["fail"], 2);
        assert_eq!(v["summary"]["must_fail"], 1);
        assert_eq!(v["checks"][3]["verdict"], "skip");
        assert_eq!(v["checks"][3]["reason"], "no --jmap given");
        assert_eq!(v["checks"][1]["level"], "MUST");
        assert_eq!(v["checks"][1]["section"], "RFC 7628 §3.2.2");
        let text = table(&checks);
        assert!(text.contains("── imap ──"), "{text}");
        assert!(text.contains("FAIL      MUST   sasl.imap.b"), "{text}");
        assert!(text.contains("skipped: no --jmap given"), "{text}");
        assert_eq!(
            summary(&tally(&checks), "strict"),
            "1 pass, 2 fail (1 MUST), 0 deviation, 1 skip (profile strict)"
        );
    }
}
