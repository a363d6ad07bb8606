//! TAP output, and the line protocol between a case's child and the runner.
//!
//! The child writes diagnostic lines (already `# `-prefixed) and, last, one
//! result line: `@ok`, `@fail` or `@skip REASON`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip(String),
}

/// One line, without newline, with the reason kept on one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The TAP test line: `ok - NAME`, `not ok - NAME`, `ok - NAME # SKIP why`.
pub fn test_line(name: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => format!("ok - {name}"),
        Outcome::Fail => format!("not ok - {name}"),
        Outcome::Skip(why) => format!("ok - {name} # SKIP {}", one_line(why)),
    }
}

/// A diagnostic, one `# ` line per line of `text`, each ending in a newline.
pub fn diag(text: &str) -> String {
    let mut out = String::new();
    for l in text.trim_end_matches('\n').split('\n') {
        let l = l.trim_end_matches('\r');
        if l.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The child's last line, with its newline.
pub fn encode_result(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "@ok\n".into(),
        Outcome::Fail => "@fail\n".into(),
        Outcome::Skip(why) => format!("@skip {}\n", one_line(why)),
    }
}

/// What the runner makes of one line from the child (without newline).
#[derive(Debug, PartialEq, Eq)]
pub enum ChildLine {
    Result(Outcome),
    /// To be printed as it is (a `#` line, or stray output made into one).
    Diag(String),
}

pub fn decode_line(line: &str) -> ChildLine {
    match line {
        "@ok" => ChildLine::Result(Outcome::Pass),
        "@fail" => ChildLine::Result(Outcome::Fail),
        _ => {
            if let Some(why) = line.strip_prefix("@skip ") {
                ChildLine::Result(Outcome::Skip(why.to_string()))
            } else if line == "#" || line.starts_with("# ") {
                ChildLine::Diag(line.to_string())
            } else {
                ChildLine::Diag(diag(line).trim_end().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lines() {
        assert_eq!(test_line("a_case", &Outcome::Pass), "ok - a_case");
        assert_eq!(test_line("a_case", &Outcome::Fail), "not ok - a_case");
        assert_eq!(
            test_line("a_case", &Outcome::Skip("no counters".into())),
            "ok - a_case # SKIP no counters"
        );
        assert_eq!(
            test_line("a", &Outcome::Skip("two\nlines\n".into())),
            "ok - a # SKIP two lines"
        );
    }

    #[test]
    fn diagnostics() {
        assert_eq!(
            diag("entries_flushed: expected +10, got +11"),
            "# entries_flushed: expected +10, got +11\n"
        );
        assert_eq!(diag("a\n\nb\n"), "# a\n#\n# b\n");
        assert_eq!(diag(""), "#\n");
    }

    #[test]
    fn child_protocol_round_trips() {
        for o in [
            Outcome::Pass,
            Outcome::Fail,
            Outcome::Skip("why not".into()),
        ] {
            let line = encode_result(&o);
            assert!(line.ends_with('\n'));
            assert_eq!(decode_line(line.trim_end()), ChildLine::Result(o));
        }
        assert_eq!(decode_line("# x"), ChildLine::Diag("# x".into()));
        assert_eq!(decode_line("#"), ChildLine::Diag("#".into()));
        assert_eq!(decode_line("stray"), ChildLine::Diag("# stray".into()));
        assert_eq!(decode_line("@okay"), ChildLine::Diag("# @okay".into()));
    }
}
