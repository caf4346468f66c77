//! A small Wadler-style document algebra and its printer: groups print on one line when they fit
//! in the width, otherwise every `Line` of the group becomes a line break.

/// A document to lay out.
#[derive(Clone, Debug)]
pub enum Doc {
    Text(String),
    /// A space when the enclosing group is flat, a line break when it is broken.
    Line,
    /// Nothing when flat, a line break when broken.
    SoftLine,
    /// Always a line break; a group that contains one is broken.
    HardLine,
    /// A line break with no indentation on the empty line (a blank line between items).
    BlankLine,
    /// Prints nothing; the enclosing group is broken (after a trailing `//` comment).
    BreakParent,
    /// Text printed only when the enclosing group is broken (a trailing comma).
    IfBroken(&'static str),
    /// Indents the lines inside by two spaces.
    Nest(Box<Doc>),
    Group(Box<Doc>),
    Concat(Vec<Doc>),
}

pub fn text(s: impl Into<String>) -> Doc {
    Doc::Text(s.into())
}

pub fn nest(d: Doc) -> Doc {
    Doc::Nest(Box::new(d))
}

pub fn group(d: Doc) -> Doc {
    Doc::Group(Box::new(d))
}

pub fn concat(ds: Vec<Doc>) -> Doc {
    Doc::Concat(ds)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flat,
    Break,
}

/// Lays `doc` out in `width` columns.
pub fn render(doc: &Doc, width: usize) -> String {
    let mut out = String::new();
    let mut col = 0usize;
    let mut stack: Vec<(usize, Mode, &Doc)> = vec![(0, Mode::Break, doc)];
    while let Some((indent, mode, d)) = stack.pop() {
        match d {
            Doc::Text(s) => {
                out.push_str(s);
                col += s.chars().count();
            }
            Doc::Line | Doc::SoftLine if mode == Mode::Flat => {
                if matches!(d, Doc::Line) {
                    out.push(' ');
                    col += 1;
                }
            }
            Doc::Line | Doc::SoftLine | Doc::HardLine => {
                newline(&mut out, indent);
                col = indent;
            }
            Doc::BlankLine => {
                trim_trailing_spaces(&mut out);
                out.push('\n');
                newline(&mut out, indent);
                col = indent;
            }
            Doc::BreakParent => {}
            Doc::IfBroken(s) => {
                if mode == Mode::Break {
                    out.push_str(s);
                    col += s.len();
                }
            }
            Doc::Nest(inner) => stack.push((indent + 2, mode, inner)),
            Doc::Concat(parts) => {
                for p in parts.iter().rev() {
                    stack.push((indent, mode, p));
                }
            }
            Doc::Group(inner) => {
                let flat = mode == Mode::Flat || fits(width as isize - col as isize, inner, &stack);
                let m = if flat { Mode::Flat } else { Mode::Break };
                stack.push((indent, m, inner));
            }
        }
    }
    trim_trailing_spaces(&mut out);
    out
}

fn newline(out: &mut String, indent: usize) {
    trim_trailing_spaces(out);
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

fn trim_trailing_spaces(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
}

/// Whether `doc` printed flat, followed by the rest up to its next line break, fits in `room`.
fn fits(mut room: isize, doc: &Doc, rest: &[(usize, Mode, &Doc)]) -> bool {
    let mut stack: Vec<(Mode, &Doc)> = vec![(Mode::Flat, doc)];
    let mut rest_index = rest.len();
    loop {
        if room < 0 {
            return false;
        }
        let (mode, d) = match stack.pop() {
            Some(x) => x,
            None => {
                if rest_index == 0 {
                    return true;
                }
                rest_index -= 1;
                let (_, m, d) = rest[rest_index];
                (m, d)
            }
        };
        match d {
            Doc::Text(s) => room -= s.chars().count() as isize,
            Doc::Line | Doc::SoftLine => {
                if mode == Mode::Break {
                    return true;
                }
                if matches!(d, Doc::Line) {
                    room -= 1;
                }
            }
            Doc::HardLine | Doc::BlankLine => return mode == Mode::Break,
            Doc::BreakParent => {
                if mode == Mode::Flat {
                    return false;
                }
            }
            Doc::IfBroken(s) => {
                if mode == Mode::Break {
                    room -= s.len() as isize
                }
            }
            Doc::Nest(inner) => stack.push((mode, inner)),
            // A group after this one is measured flat: the one that breaks is the first that
            // does not fit, so a long header breaks its parameters before its outputs.
            Doc::Group(inner) => stack.push((Mode::Flat, inner)),
            Doc::Concat(parts) => {
                for p in parts.iter().rev() {
                    stack.push((mode, p));
                }
            }
        }
    }
}
