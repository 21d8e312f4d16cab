//! Splits a byte stream into record-sized JSON values without parsing them.
//!
//! Inputs are CloudTrail log files (`{"Records":[…]}`), lookup-events output (`{"Events":[…]}`),
//! arrays, NDJSON, or concatenated documents, plain or gzip. The reader walks the structure only
//! (strings, brackets, depth) and hands out each element of the outer container as a byte slice, so
//! memory holds one read buffer and one record whatever the file size, and the engine decides from a
//! cheap substring test which few records are worth a full parse.

use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;
use memchr::memchr2;

/// Why a stream could not be read to its end. Values read before the error have been handed out.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The underlying reader (file, gzip stream, network) failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes are not JSON of a shape tokenwatch reads.
    #[error("not valid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset in the (decompressed) stream.
        offset: u64,
        /// What was wrong there.
        reason: &'static str,
    },
    /// One value is larger than the reader will hold in memory.
    #[error("a single JSON value at byte {offset} exceeds {limit} bytes")]
    TooLarge {
        /// Byte offset in the (decompressed) stream.
        offset: u64,
        /// The limit in bytes.
        limit: usize,
    },
}

/// The largest single record the reader holds. CloudTrail caps a record's parts at 100 KB each and
/// does not deliver events over 256 KB to EventBridge; this leaves room for wrappers.
pub const MAX_VALUE: usize = 16 << 20;
const READ_CHUNK: usize = 1 << 20;
const MAX_DEPTH: usize = 256;

/// Wraps a reader, transparently decompressing gzip (detected by its magic bytes, not the file name).
pub fn decompressing<R: Read + 'static>(reader: R) -> io::Result<Box<dyn Read>> {
    let mut buffered = BufReader::with_capacity(256 << 10, reader);
    let head = io::BufRead::fill_buf(&mut buffered)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Top,
    /// Inside an array whose elements are handed out; `in_object` when the array is the value of a
    /// container key and the rest of that object must be skipped after it.
    Elements {
        in_object: bool,
        first: bool,
    },
    Done,
}

enum Scan {
    Complete(usize),
    Incomplete,
    Invalid(usize, &'static str),
}

/// Hands out the record-sized values of a JSON stream one at a time.
pub struct JsonSplitter<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    consumed_before: u64,
    state: State,
}

impl<R: Read> JsonSplitter<R> {
    /// Reads from `src`, which should already be decompressed.
    pub fn new(src: R) -> Self {
        JsonSplitter {
            src,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            consumed_before: 0,
            state: State::Top,
        }
    }

    /// Bytes of the stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.consumed_before + self.pos as u64
    }

    /// The next value: an element of a `Records`/`Events` array or of a top-level array, or a whole
    /// top-level value otherwise. `None` at the end of the stream.
    pub fn next_value(&mut self) -> Result<Option<&[u8]>, ReadError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Top => {
                    if !self.skip_ws()? {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    match self.buf[self.pos] {
                        b'[' => {
                            self.pos += 1;
                            self.state = State::Elements {
                                in_object: false,
                                first: true,
                            };
                        }
                        b'{' => {
                            if let Some(after) = self.container_prefix()? {
                                self.pos = after;
                                self.state = State::Elements {
                                    in_object: true,
                                    first: true,
                                };
                            } else {
                                return self.take_value().map(Some);
                            }
                        }
                        _ => return Err(self.syntax(0, "expected a JSON object or array")),
                    }
                }
                State::Elements { in_object, first } => {
                    if !self.skip_ws()? {
                        return Err(self.syntax(0, "unexpected end inside an array"));
                    }
                    match self.buf[self.pos] {
                        b']' => {
                            self.pos += 1;
                            if in_object {
                                self.finish_container_object()?;
                            }
                            self.state = State::Top;
                        }
                        b',' if !first => {
                            self.pos += 1;
                            if !self.skip_ws()? {
                                return Err(self.syntax(0, "unexpected end inside an array"));
                            }
                            self.state = State::Elements {
                                in_object,
                                first: true,
                            };
                        }
                        _ if first => {
                            self.state = State::Elements {
                                in_object,
                                first: false,
                            };
                            return self.take_value().map(Some);
                        }
                        _ => return Err(self.syntax(0, "expected ',' or ']' between array elements")),
                    }
                }
            }
        }
    }

    fn syntax(&self, at: usize, reason: &'static str) -> ReadError {
        ReadError::Syntax {
            offset: self.offset() + at as u64,
            reason,
        }
    }

    /// Reads more input; returns false at the end of the stream. Keeps `buf[pos..end]`.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.consumed_before += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        // Grow by at least what is held, so a value spanning many reads is rescanned O(log n) times.
        let want = READ_CHUNK.max(self.end);
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Skips whitespace (and a byte-order mark at the very start); false if the stream ended.
    fn skip_ws(&mut self) -> Result<bool, ReadError> {
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                    0xEF if self.offset() == 0
                        && self.buf[self.pos..self.end].starts_with(&[0xEF, 0xBB, 0xBF]) =>
                    {
                        self.pos += 3
                    }
                    _ => return Ok(true),
                }
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    /// If the object at `pos` opens with `"Records": [` or `"Events": [`, the index just after `[`.
    fn container_prefix(&mut self) -> Result<Option<usize>, ReadError> {
        loop {
            match container_prefix(&self.buf[self.pos..self.end]) {
                Some(Some(n)) => return Ok(Some(self.pos + n)),
                Some(None) => return Ok(None),
                None => {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Hands out the value at `pos` and moves past it.
    fn take_value(&mut self) -> Result<&[u8], ReadError> {
        loop {
            match scan_value(&self.buf[self.pos..self.end], self.eof) {
                Scan::Complete(n) => {
                    let start = self.pos;
                    self.pos += n;
                    return Ok(&self.buf[start..start + n]);
                }
                Scan::Invalid(at, reason) => return Err(self.syntax(at, reason)),
                Scan::Incomplete => {
                    if self.end - self.pos > MAX_VALUE {
                        return Err(ReadError::TooLarge {
                            offset: self.offset(),
                            limit: MAX_VALUE,
                        });
                    }
                    if !self.fill()? {
                        return Err(
                            self.syntax(self.end - self.pos, "unexpected end of input inside a value")
                        );
                    }
                }
            }
        }
    }

    /// After the container array: skips the object's other members (`"NextToken": …`) and its `}`.
    fn finish_container_object(&mut self) -> Result<(), ReadError> {
        loop {
            if !self.skip_ws()? {
                return Err(self.syntax(0, "unexpected end inside an object"));
            }
            match self.buf[self.pos] {
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                b',' => {
                    self.pos += 1;
                    self.skip_ws()?;
                    self.take_value()?; // key
                    self.skip_ws()?;
                    if self.pos >= self.end || self.buf[self.pos] != b':' {
                        return Err(self.syntax(0, "expected ':' after an object key"));
                    }
                    self.pos += 1;
                    self.skip_ws()?;
                    self.take_value()?;
                }
                _ => return Err(self.syntax(0, "expected ',' or '}' in an object")),
            }
        }
    }
}

/// `Some(Some(n))`: `bytes` opens a container object and its array starts before `n`;
/// `Some(None)`: it does not; `None`: not enough bytes to tell.
fn container_prefix(bytes: &[u8]) -> Option<Option<usize>> {
    let mut i = 1; // past '{'
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    macro_rules! skip_ws {
        () => {
            while i < bytes.len() && ws(bytes[i]) {
                i += 1;
            }
            if i >= bytes.len() {
                return if bytes.len() > 4096 { Some(None) } else { None };
            }
        };
    }
    skip_ws!();
    if bytes[i] != b'"' {
        return Some(None);
    }
    let key_start = i + 1;
    let key_len = match memchr2(b'"', b'\\', &bytes[key_start..]) {
        Some(n) if bytes[key_start + n] == b'"' => n,
        Some(_) => return Some(None),
        None => return if bytes.len() > 4096 { Some(None) } else { None },
    };
    let key = &bytes[key_start..key_start + key_len];
    if key != b"Records" && key != b"Events" {
        return Some(None);
    }
    i = key_start + key_len + 1;
    skip_ws!();
    if bytes[i] != b':' {
        return Some(None);
    }
    i += 1;
    skip_ws!();
    if bytes[i] != b'[' {
        return Some(None);
    }
    Some(Some(i + 1))
}

/// Finds the end of the JSON value at the start of `bytes` by its structure alone.
fn scan_value(bytes: &[u8], eof: bool) -> Scan {
    let Some(&first) = bytes.first() else {
        return Scan::Incomplete;
    };
    match first {
        b'{' | b'[' => scan_nested(bytes),
        b'"' => match scan_string(bytes, 1) {
            Some(end) => Scan::Complete(end),
            None => Scan::Incomplete,
        },
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let n = bytes
                .iter()
                .position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(bytes.len());
            if n == bytes.len() && !eof {
                Scan::Incomplete
            } else {
                Scan::Complete(n)
            }
        }
        _ => Scan::Invalid(0, "expected a JSON value"),
    }
}

/// The index past the closing quote of the string whose body starts at `i`; `None` if the bytes end first.
fn scan_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let n = memchr2(b'"', b'\\', bytes.get(i..)?)?;
        i += n;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // an escape: skip the backslash and the escaped byte
        if i > bytes.len() {
            return None;
        }
    }
}

fn scan_nested(bytes: &[u8]) -> Scan {
    let mut stack: Vec<u8> = Vec::with_capacity(16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => match scan_string(bytes, i + 1) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return Scan::Incomplete,
            },
            open @ (b'{' | b'[') => {
                if stack.len() >= MAX_DEPTH {
                    return Scan::Invalid(i, "nested too deeply");
                }
                stack.push(if open == b'{' { b'}' } else { b']' });
            }
            close @ (b'}' | b']') => {
                if stack.pop() != Some(close) {
                    return Scan::Invalid(i, "mismatched bracket");
                }
                if stack.is_empty() {
                    return Scan::Complete(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Scan::Incomplete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8]) -> Result<Vec<String>, ReadError> {
        let mut s = JsonSplitter::new(input);
        let mut out = Vec::new();
        while let Some(v) = s.next_value()? {
            out.push(String::from_utf8_lossy(v).into_owned());
        }
        Ok(out)
    }

    #[test]
    fn trail_file_yields_each_record() {
        let v = split(br#"{"Records":[{"a":1},{"b":"x}]"}]}"#).unwrap();
        assert_eq!(v, [r#"{"a":1}"#, r#"{"b":"x}]"}"#]);
    }

    #[test]
    fn lookup_events_output_skips_the_next_token() {
        let v = split(
            br#"{ "Events" : [ {"CloudTrailEvent":"{\"a\":1}"} ], "NextToken": "abc", "n": [1,{"x":null}] }"#,
        )
        .unwrap();
        assert_eq!(v, [r#"{"CloudTrailEvent":"{\"a\":1}"}"#]);
    }

    #[test]
    fn ndjson_arrays_and_single_objects() {
        assert_eq!(
            split(b"{\"a\":1}\n{\"b\":2}\n").unwrap(),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            split(b"[{\"a\":1}, {\"b\":2}]").unwrap(),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            split(b"{\"version\":\"0\",\"detail\":{}}").unwrap(),
            [r#"{"version":"0","detail":{}}"#]
        );
        assert_eq!(split(b"\xEF\xBB\xBF[]").unwrap(), Vec::<String>::new());
        assert_eq!(split(b"  \n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_escaped_quote_does_not_end_a_string() {
        assert_eq!(split(br#"[{"a":"\"}\\"}]"#).unwrap(), [r#"{"a":"\"}\\"}"#]);
    }

    #[test]
    fn values_spanning_many_reads_are_whole() {
        let big = format!(
            "{{\"Records\":[{{\"s\":\"{}\"}},{{\"t\":1}}]}}",
            "x".repeat(3 * READ_CHUNK)
        );
        let v = split(big.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len(), 3 * READ_CHUNK + 8);
    }

    #[test]
    fn truncation_and_garbage_are_errors_after_what_was_whole() {
        let mut s = JsonSplitter::new(&br#"{"Records":[{"a":1},{"b":"#[..]);
        assert_eq!(s.next_value().unwrap().unwrap(), br#"{"a":1}"#);
        assert!(matches!(s.next_value(), Err(ReadError::Syntax { .. })));
        assert!(matches!(
            split(b"hello"),
            Err(ReadError::Syntax { offset: 0, .. })
        ));
        assert!(matches!(split(b"[{\"a\":1]"), Err(ReadError::Syntax { .. })));
        assert!(matches!(split(b"[{} {}]"), Err(ReadError::Syntax { .. })));
    }

    #[test]
    fn gzip_is_detected_by_content() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"Records":[{"a":1}]}"#).unwrap();
        let bytes = gz.finish().unwrap();
        let mut plain = Vec::new();
        decompressing(io::Cursor::new(bytes))
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, br#"{"Records":[{"a":1}]}"#);
    }
}
