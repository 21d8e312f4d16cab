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
use wide::u8x16;

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
pub fn decompressing<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
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

#[derive(Debug, PartialEq, Eq)]
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

impl JsonSplitter<io::Empty> {
    /// Splits a whole stream already in memory (a trail object inflated in one call), in place: no read
    /// buffer, no copy. The same values and errors as [`JsonSplitter::new`] over the same bytes.
    pub fn whole(bytes: Vec<u8>) -> Self {
        JsonSplitter {
            src: io::empty(),
            end: bytes.len(),
            buf: bytes,
            pos: 0,
            eof: true,
            consumed_before: 0,
            state: State::Top,
        }
    }
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

    /// Hands the buffer back, for the next [`JsonSplitter::whole`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
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
            // Never further than one value may reach, so that a whole buffer (`JsonSplitter::whole`)
            // refuses an oversized value as a stream does.
            let end = self.end.min(self.pos + MAX_VALUE + 1);
            match scan_value(&self.buf[self.pos..end], self.eof && end == self.end) {
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
                    if self.eof {
                        return Err(
                            self.syntax(self.end - self.pos, "unexpected end of input inside a value")
                        );
                    }
                    // Scanned again even when this finds the end: a number is complete only once
                    // nothing follows it, which a whole buffer knows from the start.
                    self.fill()?;
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

/// Finds the end of the object or array at the start of `bytes`, 64 bytes at a time: each block becomes
/// bitmasks of its quotes, backslashes and brackets (16-byte SIMD compares), the quotes become a mask of
/// what lies inside strings (a prefix XOR), and only the brackets outside strings are visited one by one.
/// A CloudTrail record has thousands of bytes, a hundred strings and a few dozen brackets, so this reads
/// at several GB/s where a byte-by-byte walk with a search per string reads at two.
///
/// Same answers as the byte-by-byte definition for every input, invalid JSON included (the property
/// tests hold it to the byte-by-byte scan kept beside them): a backslash escapes the next byte inside a string
/// and means nothing outside one.
fn scan_nested(bytes: &[u8]) -> Scan {
    let (blocks, tail) = bytes.as_chunks::<64>();
    // The last partial block, padded with spaces, which change nothing.
    let mut last = [b' '; 64];
    last[..tail.len()].copy_from_slice(tail);
    let mut nesting = Nesting::default();
    // All ones when the previous block ended inside a string.
    let mut in_string = 0u64;
    // The previous block ended in a backslash inside a string: this block's first byte is escaped.
    let mut escape_carry = false;
    for (n, block) in blocks.iter().chain(std::iter::once(&last)).enumerate() {
        let masks = Masks::of(block);
        let quotes = if masks.backslashes == 0 && !escape_carry {
            masks.quotes
        } else {
            string_quotes(block, &masks, in_string != 0, &mut escape_carry)
        };
        let strings = prefix_xor(quotes) ^ in_string;
        in_string = if strings >> 63 == 1 { u64::MAX } else { 0 };
        let mut brackets = masks.brackets & !strings;
        while brackets != 0 {
            let i = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            match nesting.step(block[i]) {
                Step::Deeper => {}
                Step::Closed => return Scan::Complete(n * 64 + i + 1),
                Step::Invalid(reason) => return Scan::Invalid(n * 64 + i, reason),
            }
        }
    }
    Scan::Incomplete
}

/// One 64-byte block as bitmasks (bit `i` is byte `i`).
struct Masks {
    quotes: u64,
    backslashes: u64,
    /// `{`, `[`, `}` and `]`.
    brackets: u64,
}

impl Masks {
    fn of(block: &[u8; 64]) -> Masks {
        let (quote, backslash) = (u8x16::splat(b'"'), u8x16::splat(b'\\'));
        // `{` and `[` differ only in bit 0x20, as do `}` and `]`: one compare each after setting it.
        let (case, open, close) = (u8x16::splat(0x20), u8x16::splat(b'{'), u8x16::splat(b'}'));
        let mut masks = Masks {
            quotes: 0,
            backslashes: 0,
            brackets: 0,
        };
        for (k, lane) in block.as_chunks::<16>().0.iter().enumerate() {
            let v = u8x16::new(*lane);
            let folded = v | case;
            let shift = 16 * k;
            masks.quotes |= u64::from(v.simd_eq(quote).to_bitmask()) << shift;
            masks.backslashes |= u64::from(v.simd_eq(backslash).to_bitmask()) << shift;
            masks.brackets |= u64::from((folded.simd_eq(open) | folded.simd_eq(close)).to_bitmask()) << shift;
        }
        masks
    }
}

/// The quotes that open or close strings in a block that has backslashes (or starts escaped): walks its
/// quotes and backslashes in order, as a byte-by-byte scan would.
fn string_quotes(block: &[u8; 64], masks: &Masks, mut inside: bool, escape_carry: &mut bool) -> u64 {
    let mut events = masks.quotes | masks.backslashes;
    if std::mem::take(escape_carry) {
        events &= !1;
    }
    let mut quotes = 0;
    while events != 0 {
        let i = events.trailing_zeros();
        events &= events - 1;
        if block[i as usize] == b'"' {
            quotes |= 1 << i;
            inside = !inside;
        } else if inside {
            // An escape: the next byte is taken literally, whatever it is.
            if i == 63 {
                *escape_carry = true;
            } else {
                events &= !(1 << (i + 1));
            }
        }
    }
    quotes
}

/// Bit `i` of the result is the XOR of bits `0..=i`: set from an opening quote up to its closing one.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The open containers of a value being scanned: one bit per level, set for an object.
#[derive(Default)]
struct Nesting {
    depth: usize,
    objects: [u64; MAX_DEPTH / 64],
}

enum Step {
    Deeper,
    Closed,
    Invalid(&'static str),
}

impl Nesting {
    /// Takes one bracket outside a string; `Closed` when it closes the outermost container.
    fn step(&mut self, bracket: u8) -> Step {
        let (word, bit) = (self.depth / 64, 1u64 << (self.depth % 64));
        match bracket {
            b'{' | b'[' => {
                let Some(slot) = self.objects.get_mut(word) else {
                    return Step::Invalid("nested too deeply");
                };
                if bracket == b'{' {
                    *slot |= bit;
                } else {
                    *slot &= !bit;
                }
                self.depth += 1;
                Step::Deeper
            }
            _ => {
                let Some(depth) = self.depth.checked_sub(1) else {
                    return Step::Invalid("mismatched bracket");
                };
                let object = self.objects[depth / 64] >> (depth % 64) & 1 == 1;
                if object != (bracket == b'}') {
                    return Step::Invalid("mismatched bracket");
                }
                self.depth = depth;
                if depth == 0 { Step::Closed } else { Step::Deeper }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte-by-byte definition the block scanner is held to.
    fn scan_nested_bytewise(bytes: &[u8]) -> Scan {
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

    /// Bytes that are mostly JSON structure, so random inputs reach deep, escaped and unbalanced cases.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b"{}[]\"\\:, ax0".to_vec()),
            1 => any::<u8>(),
        ];
        (
            prop::sample::select(b"{[".to_vec()),
            prop::collection::vec(byte, 0..400),
        )
            .prop_map(|(first, rest)| {
                let mut v = vec![first];
                v.extend(rest);
                v
            })
    }

    /// Strings full of what a scanner must skip: quotes, backslashes, brackets, multi-byte characters.
    fn text() -> impl Strategy<Value = String> {
        prop::string::string_regex(r#"([a-z{}\[\]"\\/:,\u{e9}\u{1F600}\n\t ]|\\){0,80}"#)
            .expect("valid regex")
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((text(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Every value a splitter hands out, and the error that stopped it (at most `limit + 1` values).
    fn drain<R: Read>(mut s: JsonSplitter<R>, limit: usize) -> (Vec<Vec<u8>>, Option<String>) {
        let mut values = Vec::new();
        for _ in 0..=limit {
            match s.next_value() {
                Ok(Some(v)) => values.push(v.to_vec()),
                Ok(None) => return (values, None),
                Err(e) => return (values, Some(e.to_string())),
            }
        }
        (values, Some("more values than bytes".to_owned()))
    }

    /// Hands out its bytes a few at a time, so values straddle reads.
    struct Trickle<'a> {
        bytes: &'a [u8],
        sizes: Vec<usize>,
        n: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.n % self.sizes.len()];
            self.n += 1;
            let k = size.min(buf.len()).min(self.bytes.len());
            buf[..k].copy_from_slice(&self.bytes[..k]);
            self.bytes = &self.bytes[k..];
            Ok(k)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_block_scan_agrees_with_the_bytewise_scan_on_any_bytes(bytes in jsonish()) {
            prop_assert_eq!(scan_nested(&bytes), scan_nested_bytewise(&bytes));
        }

        #[test]
        fn the_block_scan_agrees_on_arbitrary_bytes(first in prop::sample::select(b"{[".to_vec()),
                                                   rest in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = vec![first];
            bytes.extend(rest);
            prop_assert_eq!(scan_nested(&bytes), scan_nested_bytewise(&bytes));
        }
    }

    // The splitter reads through a 1 MB buffer, slow to fill a few bytes at a time in a debug build.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        #[test]
        fn arbitrary_bytes_never_panic_the_splitter(bytes in prop::collection::vec(any::<u8>(), 0..600),
                                                    sizes in prop::collection::vec(1usize..70, 1..5)) {
            let streamed = drain(JsonSplitter::new(Trickle { bytes: &bytes, sizes, n: 0 }), bytes.len());
            let whole = drain(JsonSplitter::whole(bytes.clone()), bytes.len());
            prop_assert_eq!(whole, streamed);
        }

        #[test]
        fn every_record_of_a_random_stream_comes_out_whole(
            records in prop::collection::vec(json_value(), 0..12),
            shape in 0..3u8,
            pretty in any::<bool>(),
            sizes in prop::collection::vec(1usize..200, 1..6),
        ) {
            let text = |v: &serde_json::Value| if pretty {
                serde_json::to_string_pretty(v).expect("serialisable")
            } else {
                serde_json::to_string(v).expect("serialisable")
            };
            // Top-level NDJSON takes objects only: a bare string or number is not a record on its own.
            let records: Vec<_> = records
                .into_iter()
                .map(|r| if shape == 2 && !r.is_object() { serde_json::json!({ "v": r }) } else { r })
                .collect();
            let parts: Vec<String> = records.iter().map(text).collect();
            let stream = match shape {
                0 => format!("{{\"Records\":[{}]}}", parts.join(",")),
                1 => format!("[{}]", parts.join(" ,\n")),
                _ => parts.join("\n"),
            };
            let want: Vec<_> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
            let streamed = drain(JsonSplitter::new(Trickle { bytes: stream.as_bytes(), sizes, n: 0 }), stream.len());
            prop_assert_eq!(&streamed, &(want.clone(), None));
            let whole = drain(JsonSplitter::whole(stream.clone().into_bytes()), stream.len());
            prop_assert_eq!(&whole, &(want, None));
        }
    }

    #[test]
    fn a_stream_cut_after_an_array_and_a_stray_byte_ends_as_a_whole_buffer_does() {
        // Found by the splitter's property test: `[-` read a byte at a time.
        for sizes in [vec![1], vec![2], vec![1, 2]] {
            let bytes = b"[-";
            let streamed = drain(JsonSplitter::new(Trickle { bytes, sizes, n: 0 }), bytes.len());
            let whole = drain(JsonSplitter::whole(bytes.to_vec()), bytes.len());
            assert_eq!(whole, streamed);
        }
    }

    #[test]
    fn an_escape_across_a_block_boundary_is_followed() {
        // The backslash is byte 63 of the first block; the quote it escapes opens the second.
        let mut v = br#"{"a":""#.to_vec();
        v.resize(63, b'x');
        v.extend_from_slice(br#"\"}"}"#);
        assert_eq!(scan_nested(&v), Scan::Complete(v.len()));
        assert_eq!(scan_nested_bytewise(&v), Scan::Complete(v.len()));
        // Two backslashes: the second is the escaped byte, the quote after it closes the string.
        let mut w = br#"{"a":""#.to_vec();
        w.resize(62, b'x');
        w.extend_from_slice(br#"\\"}"#);
        assert_eq!(scan_nested(&w), Scan::Complete(w.len()));
    }

    #[test]
    fn a_backslash_outside_a_string_escapes_nothing() {
        let v = br#"[\"]"]"#;
        assert_eq!(scan_nested(v), scan_nested_bytewise(v));
        assert_eq!(scan_nested(v), Scan::Complete(6));
    }

    #[test]
    fn nesting_is_limited_and_checked_across_blocks() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            scan_nested(deep(MAX_DEPTH).as_bytes()),
            Scan::Complete(2 * MAX_DEPTH)
        );
        assert_eq!(
            scan_nested(deep(MAX_DEPTH + 1).as_bytes()),
            Scan::Invalid(MAX_DEPTH, "nested too deeply")
        );
        let mut mixed = "{\"k\":[".repeat(40);
        mixed.push_str(&"}]".repeat(40));
        assert_eq!(
            scan_nested(mixed.as_bytes()),
            Scan::Invalid(240, "mismatched bracket")
        );
        assert_eq!(
            scan_nested(mixed.as_bytes()),
            scan_nested_bytewise(mixed.as_bytes())
        );
        assert_eq!(scan_nested(b"{\"a\":[1,2"), Scan::Incomplete);
    }

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
    fn a_whole_buffer_gives_its_values_and_its_buffer_back() {
        let bytes = br#"{"Records":[{"a":1},{"b":2}]} trailing"#.to_vec();
        let mut s = JsonSplitter::whole(bytes.clone());
        assert_eq!(s.next_value().unwrap().unwrap(), br#"{"a":1}"#);
        assert_eq!(s.next_value().unwrap().unwrap(), br#"{"b":2}"#);
        assert!(matches!(
            s.next_value(),
            Err(ReadError::Syntax { offset: 30, .. })
        ));
        assert_eq!(s.into_buffer(), bytes);
    }

    #[test]
    fn a_value_over_the_limit_is_refused_from_a_whole_buffer_too() {
        let big = format!("[{{\"s\":\"{}\"}}]", "x".repeat(MAX_VALUE));
        let mut s = JsonSplitter::whole(big.into_bytes());
        assert!(matches!(
            s.next_value(),
            Err(ReadError::TooLarge { offset: 1, .. })
        ));
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
