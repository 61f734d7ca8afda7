//! SQL errors that point at the text: line, column, and the line with a caret under the
//! offending part.

use sqlparser::tokenizer::{Location, Span};

/// A mistake in a SQL pipeline, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// 1-based; 0 when the mistake is not in one place (an empty file).
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// What is wrong, naming the object and what was expected.
    pub message: String,
    /// The line of text and a caret line under the span, ready to print.
    pub excerpt: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}", self.message);
        }
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if !self.excerpt.is_empty() {
            write!(f, "\n{}", self.excerpt)?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

/// Builds errors against one text.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// An error at `span` (an empty span: the whole statement is meant, so no caret).
    pub(crate) fn error(&self, span: Span, message: impl Into<String>) -> SqlError {
        let message = message.into();
        if span.start.line == 0 {
            return SqlError {
                line: 0,
                column: 0,
                message,
                excerpt: String::new(),
            };
        }
        SqlError {
            line: span.start.line,
            column: span.start.column,
            excerpt: self.excerpt(span.start, span.end),
            message,
        }
    }

    /// The line of `start` and carets from `start` to `end` (or to the end of that line).
    fn excerpt(&self, start: Location, end: Location) -> String {
        let Some(line) = self.text.lines().nth(start.line as usize - 1) else {
            return String::new();
        };
        let width = line.chars().count() as u64;
        let from = start.column.clamp(1, width.max(1));
        let to = if end == start {
            from + 1
        } else if end.line == start.line && end.column > from {
            end.column.min(width + 1)
        } else {
            width + 1
        };
        let number = start.line.to_string();
        let pad = " ".repeat(number.len());
        let gutter: String = line
            .chars()
            .take(from as usize - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat((to - from).max(1) as usize);
        format!("{number} | {line}\n{pad} | {gutter}{carets}")
    }

    /// A parser or tokenizer error, whose message ends in `at Line: L, Column: C`.
    pub(crate) fn parse_error(&self, message: &str) -> SqlError {
        let message = message
            .trim_start_matches("sql parser error: ")
            .trim_start_matches("sql tokenizer error: ");
        let located = message.rsplit_once(" at Line: ").and_then(|(text, at)| {
            let (line, column) = at.split_once(", Column: ")?;
            Some((text, line.trim().parse().ok()?, column.trim().parse().ok()?))
        });
        match located {
            Some((text, line, column)) => {
                let at = Location::new(line, column);
                self.error(Span::new(at, at), text.replace("Expected: ", "expected "))
            }
            None => self.error(Span::empty(), message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_shows_its_line_with_carets_under_the_span() {
        let text = "SELECT a,\n  amout FROM t";
        let source = Source { text };
        let span = Span::new(Location::new(2, 3), Location::new(2, 8));
        let e = source.error(span, "unknown column `amout`");
        assert_eq!(
            e.to_string(),
            "2:3: unknown column `amout`\n2 |   amout FROM t\n  |   ^^^^^"
        );
    }

    #[test]
    fn parser_messages_lose_their_location_suffix_to_the_caret() {
        let source = Source {
            text: "CREATE TABLE t (a BIGINT b)",
        };
        let e = source.parse_error(
            "sql parser error: Expected: ',' or ')' after column definition, found: b at Line: 1, Column: 26",
        );
        assert_eq!((e.line, e.column), (1, 26));
        assert!(e.message.starts_with("expected ',' or ')'"), "{e}");
        assert!(
            e.to_string().ends_with("|                          ^"),
            "{e}"
        );
    }
}
