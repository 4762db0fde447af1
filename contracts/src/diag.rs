//! Diagnostics: an error with the byte span it is about, rendered with file, line,
//! column and the offending line underlined.

use alloc::format;
use alloc::string::String;

/// A half-open byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// 1-based line and column (in characters) of byte `at` of `source`: how every Cordon
/// diagnostic, in contracts and in manifests, names a position.
pub fn line_col(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[line_start..at].chars().count() + 1)
}

/// A compile error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub span: Span,
    pub message: String,
}

impl Error {
    pub fn new(span: Span, message: String) -> Error {
        Error { span, message }
    }

    /// 1-based line and column of the error's start in `source`.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// `file:line:col: error: message`, then the line with the span underlined.
    pub fn render(&self, file: &str, source: &str) -> String {
        self.render_as("error", file, source)
    }

    /// As [`Error::render`], with `kind` (`error`, `warning`) after the position.
    pub fn render_as(&self, kind: &str, file: &str, source: &str) -> String {
        let (line, col) = self.line_col(source);
        let at = self.span.start.min(source.len());
        let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[at..].find('\n').map_or(source.len(), |i| at + i);
        let text = &source[line_start..line_end];
        let width = self.span.end.clamp(at + 1, line_end.max(at + 1)) - at;
        let gutter = format!("{line}").len();
        let pad = " ".repeat(gutter);
        format!(
            "{file}:{line}:{col}: {kind}: {msg}\n{pad} |\n{line} | {text}\n{pad} | {spaces}{carets}\n",
            msg = self.message,
            spaces = " ".repeat(col - 1),
            carets = "^".repeat(width.max(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_column_and_caret() {
        let source = "contract A {\n    message Pnig;\n}\n";
        let start = source.find("Pnig").unwrap();
        let err = Error::new(Span::new(start, start + 4), "oops".into());
        assert_eq!(err.line_col(source), (2, 13));
        assert_eq!(
            err.render("a.contract", source),
            "a.contract:2:13: error: oops\n  |\n2 |     message Pnig;\n  |             ^^^^\n"
        );
    }
}
