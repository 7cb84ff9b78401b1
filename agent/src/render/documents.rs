//! Splitting a manifest file into YAML documents while it is read, so that one document at a
//! time is in memory rather than the whole file.
//!
//! libyaml takes a line that starts with `---` followed by a blank (space, tab, line break
//! or the end of the input) as the start of a new document wherever it appears: inside a
//! quoted or block scalar it is an error or ends the scalar. So the text before such a line
//! parses on its own exactly as it does as part of the whole file, and each piece is handed
//! to the YAML parser separately. The one exception is a directive (`%YAML`, `%TAG`), which
//! belongs to the document after it: a `---` right after a directive line does not split.
//!
//! A piece may hold no document (only comments) or several (documents ended by `...`); the
//! caller parses each piece as a stream, as it would the whole file. Error positions are
//! relative to the piece, so [`Chunk::line`] says how many line breaks came before it.

use std::io::BufRead;

/// Part of a manifest file made of whole YAML documents.
#[derive(Debug)]
pub(super) struct Chunk {
    /// The bytes, not yet checked to be UTF-8.
    pub text: Vec<u8>,
    /// Line breaks in the file before this chunk (as libyaml counts them).
    pub line: u64,
    /// True when the chunk is the whole file.
    pub whole: bool,
}

/// Why the next chunk could not be produced.
#[derive(Debug)]
pub(super) enum SplitError {
    /// Reading the file failed.
    Io(std::io::Error),
    /// One document is larger than the limit.
    TooLarge,
}

impl From<std::io::Error> for SplitError {
    fn from(e: std::io::Error) -> Self {
        SplitError::Io(e)
    }
}

/// The chunks of one manifest file, in order.
pub(super) struct Documents<R> {
    reader: R,
    max: usize,
    /// A document-start line already read: it begins the next chunk.
    carry: Vec<u8>,
    lines: u64,
    started: bool,
}

impl<R: BufRead> Documents<R> {
    /// Splits what `reader` yields; a chunk longer than `max` bytes is an error.
    pub fn new(reader: R, max: u64) -> Self {
        Documents {
            reader,
            max: usize::try_from(max).unwrap_or(usize::MAX - 1),
            carry: Vec::new(),
            lines: 0,
            started: false,
        }
    }

    /// The next chunk, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, SplitError> {
        let mut chunk = std::mem::take(&mut self.carry);
        let mut after_directive = false;
        loop {
            if chunk.len() > self.max {
                return Err(SplitError::TooLarge);
            }
            let start = chunk.len();
            // A line longer than a whole document is refused by the check above on the
            // next turn, so no line is read past that.
            read_line(&mut self.reader, &mut chunk, self.max + 1)?;
            let line = &chunk[start..];
            if line.is_empty() {
                break;
            }
            if start > 0 && is_document_start(line) && !after_directive {
                self.carry = chunk.split_off(start);
                break;
            }
            if let Some(first) = line
                .iter()
                .copied()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                if first != b'#' {
                    after_directive = line[0] == b'%';
                }
            }
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        let line = self.lines;
        let whole = line == 0 && self.carry.is_empty() && !self.started;
        self.started = true;
        self.lines += count_line_breaks(&chunk);
        Ok(Some(Chunk {
            text: chunk,
            line,
            whole,
        }))
    }
}

/// Appends one line (up to and including `\n`) to `out`, or at most `cap` bytes of it.
fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>, cap: usize) -> std::io::Result<()> {
    let mut taken = 0;
    while taken < cap {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let window = &buf[..buf.len().min(cap - taken)];
        let (n, end_of_line) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (window.len(), false),
        };
        out.extend_from_slice(&window[..n]);
        reader.consume(n);
        taken += n;
        if end_of_line {
            break;
        }
    }
    Ok(())
}

/// `---` at the start of a line, followed by a blank or the end of the input.
fn is_document_start(line: &[u8]) -> bool {
    line.starts_with(b"---") && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Line breaks as libyaml counts them: LF, CR LF, a lone CR, NEL, LS and PS.
fn count_line_breaks(text: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\n' => n += 1,
            b'\r' if text.get(i + 1) != Some(&b'\n') => n += 1,
            0xC2 if text.get(i + 1) == Some(&0x85) => n += 1,
            0xE2 if text.get(i + 1) == Some(&0x80) && matches!(text.get(i + 2), Some(0xA8 | 0xA9)) => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

/// Rewrites the `line N column M` positions in a YAML error message about a chunk so they
/// count from the start of the file: adds `offset` to each N.
pub(super) fn shift_lines(message: &str, offset: u64) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<u64>() {
            Ok(n) if after[digits..].starts_with(" column ") => {
                out.push_str(&(n + offset).to_string());
                rest = &after[digits..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str, max: u64) -> Result<Vec<(String, u64)>, SplitError> {
        let mut docs = Documents::new(text.as_bytes(), max);
        let mut out = Vec::new();
        while let Some(c) = docs.next_chunk()? {
            assert_eq!(c.whole, out.is_empty() && c.text.len() == text.len(), "{text:?}");
            out.push((String::from_utf8(c.text).expect("utf-8"), c.line));
        }
        Ok(out)
    }

    #[test]
    fn splits_before_each_document_start_line() {
        let text = "# head\na: 1\n---\nb: 2\n--- # c\nc: |\n  ---x\n---\n";
        let got = chunks(text, 1 << 20).expect("chunks");
        let want = [
            ("# head\na: 1\n", 0),
            ("---\nb: 2\n", 2),
            ("--- # c\nc: |\n  ---x\n", 4),
            ("---\n", 7),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(t, l)| (t.to_string(), *l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn dashes_that_do_not_start_a_document_do_not_split() {
        let text = "a: ---\n----\n---x: 1\n  ---\n";
        assert_eq!(chunks(text, 1 << 20).expect("chunks").len(), 1);
    }

    #[test]
    fn a_directive_stays_with_the_document_it_introduces() {
        let text = "a: 1\n...\n%YAML 1.1\n# c\n---\nb: 2\n---\nc: 3\n";
        let got = chunks(text, 1 << 20).expect("chunks");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].0.ends_with("---\nb: 2\n"), "{got:?}");
    }

    #[test]
    fn a_document_over_the_limit_is_refused_but_a_long_file_is_not() {
        let doc = format!("---\nk: {}\n", "x".repeat(50));
        let file = doc.repeat(100);
        assert_eq!(chunks(&file, 100).expect("small documents").len(), 100);
        let big = format!("---\nk: {}\n", "x".repeat(200));
        assert!(matches!(chunks(&big, 100), Err(SplitError::TooLarge)));
        let one_line = "x".repeat(1000);
        assert!(matches!(chunks(&one_line, 100), Err(SplitError::TooLarge)));
    }

    #[test]
    fn counts_line_breaks_like_libyaml() {
        assert_eq!(count_line_breaks(b"a\nb\r\nc\rd\xC2\x85e\xE2\x80\xA8f"), 5);
    }

    #[test]
    fn shifts_line_numbers_in_messages() {
        let msg = "did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1";
        assert_eq!(
            shift_lines(msg, 10),
            "did not find expected key at line 13 column 1, while parsing a block mapping at line 11 column 1"
        );
        assert_eq!(
            shift_lines("no position: line of text", 10),
            "no position: line of text"
        );
    }
}
