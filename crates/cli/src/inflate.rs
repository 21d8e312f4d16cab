//! Reading one input for `analyze` as cheaply as it can be read.
//!
//! A trail log file is one gzip member of a few MB. Such a file is read whole, inflated in one call by
//! libdeflate (about 2.5 times the speed of streaming zlib-rs, and faster than ISA-L's `igzip`), and split
//! in place with no copy. Everything else is streamed exactly as before (zlib-rs for gzip): standard
//! input, files too large to hold, gzip that is not a single plain member, and anything whose trailer does
//! not check out, so a damaged file is reported by the streaming reader with the records before the
//! damage analysed. Inflating whole is an optimisation only: the values handed to the analyzer are the
//! same bytes either way.

use std::io::{self, Read};

use libdeflater::Decompressor;
use memchr::memmem;
use tokenwatch_core::reader::decompressing;

/// Files up to this size are read whole; larger ones are streamed.
const MAX_WHOLE_FILE: usize = 16 << 20;
/// A gzip file is inflated whole only if its JSON is at most this large; memory then holds at most this
/// plus the file per worker, whatever the number of files.
const MAX_WHOLE_JSON: usize = 64 << 20;

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 8];
const FLAG_HEADER_CRC: u8 = 0x02;
const FLAG_EXTRA: u8 = 0x04;
const FLAG_NAME: u8 = 0x08;
const FLAG_COMMENT: u8 = 0x10;
/// Flag bits RFC 1952 reserves; a header with any of them set is invalid.
const FLAG_RESERVED: u8 = 0xe0;

/// An input opened for reading: its whole decompressed text, or a stream of it.
pub enum Opened {
    /// The whole stream in memory, to split in place
    /// ([`JsonSplitter::whole`](tokenwatch_core::reader::JsonSplitter::whole)); hand the buffer back
    /// with [`Inflater::recycle`].
    Whole(Vec<u8>),
    /// A decompressed stream.
    Stream(Box<dyn Read>),
}

/// What one worker keeps from file to file: libdeflate's tables and two buffers that only grow (the
/// largest file comes first), so that no file pays for fresh pages.
pub struct Inflater {
    decompressor: Decompressor,
    file: Vec<u8>,
    json: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            decompressor: Decompressor::new(),
            file: Vec::new(),
            json: Vec::new(),
        }
    }
}

impl Inflater {
    /// Opens `src` (plain or gzip) for reading. `size` is the file's length, 0 when unknown (a pipe,
    /// standard input), which streams. The error is that of the very first read.
    pub fn open(&mut self, mut src: impl Read + 'static, size: u64) -> io::Result<Opened> {
        if size == 0 || size > MAX_WHOLE_FILE as u64 {
            return decompressing(src).map(Opened::Stream);
        }
        self.file.clear();
        // The file may have grown since its size was taken: never hold more than the limit.
        let read = src
            .by_ref()
            .take(MAX_WHOLE_FILE as u64 + 1)
            .read_to_end(&mut self.file);
        match read {
            Err(e) if self.file.is_empty() => return Err(e),
            // What was read is analysed before the error is reported, as when streaming.
            Err(e) => {
                return decompressing(self.take_file().chain(Failing(Some(e)))).map(Opened::Stream);
            }
            Ok(_) if self.file.len() > MAX_WHOLE_FILE => {
                return decompressing(self.take_file().chain(src)).map(Opened::Stream);
            }
            Ok(_) => {}
        }
        if !self.file.starts_with(&GZIP_MAGIC[..2]) {
            // Plain JSON: the file is the text; the buffers trade roles.
            std::mem::swap(&mut self.file, &mut self.json);
            return Ok(Opened::Whole(std::mem::take(&mut self.json)));
        }
        match inflate_member(&mut self.decompressor, &self.file, &mut self.json) {
            Some(len) => {
                self.json.truncate(len);
                Ok(Opened::Whole(std::mem::take(&mut self.json)))
            }
            None => decompressing(self.take_file()).map(Opened::Stream),
        }
    }

    /// The file read so far, to stream from (a rare path: its buffer is not kept).
    fn take_file(&mut self) -> io::Cursor<Vec<u8>> {
        io::Cursor::new(std::mem::take(&mut self.file))
    }

    /// Takes back the buffer of an [`Opened::Whole`], for the next file.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() > self.json.capacity() {
            self.json = buffer;
        }
    }
}

/// Inflates `gz` into `out[..len]` and returns `len` when `gz` is one gzip member whose trailer (CRC-32
/// and length, the file's last 8 bytes) matches what came out; `None` leaves it to the stream.
fn inflate_member(decompressor: &mut Decompressor, gz: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let body = member_body(gz)?;
    let trailer = gz.len().checked_sub(8).filter(|&t| t >= body)?;
    // Every further member starts with the magic and a valid flag byte. Compressed bytes hold that
    // pattern by chance about once in 128 MB; such a file is streamed, which is only slower.
    let another = memmem::find_iter(&gz[body..], &GZIP_MAGIC).any(|at| {
        gz.get(body + at + 3)
            .is_some_and(|flags| flags & FLAG_RESERVED == 0)
    });
    if another {
        return None;
    }
    let word = |at: usize| {
        gz.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let (crc, len) = (word(trailer)?, word(trailer + 4)? as usize);
    if len > MAX_WHOLE_JSON {
        return None;
    }
    // Grown with zeros only past its longest use so far: libdeflate takes an initialised slice.
    if out.len() < len {
        out.resize(len, 0);
    }
    let n = decompressor
        .deflate_decompress(&gz[body..trailer], &mut out[..len])
        .ok()?;
    (n == len && libdeflater::crc32(&out[..n]) == crc).then_some(n)
}

/// Where the deflate data of the gzip member at the start of `gz` begins (RFC 1952, 2.3), or `None` for
/// anything this path does not take: another method than deflate, reserved flags, a header CRC (left to
/// the streaming reader, which checks it), or a header cut short.
fn member_body(gz: &[u8]) -> Option<usize> {
    if !gz.starts_with(&GZIP_MAGIC) {
        return None;
    }
    let flags = *gz.get(3)?;
    if flags & (FLAG_RESERVED | FLAG_HEADER_CRC) != 0 {
        return None;
    }
    let mut at = 10;
    if flags & FLAG_EXTRA != 0 {
        let xlen = u16::from_le_bytes(gz.get(at..at + 2)?.try_into().ok()?);
        at += 2 + usize::from(xlen);
    }
    for flag in [FLAG_NAME, FLAG_COMMENT] {
        if flags & flag != 0 {
            at += memchr::memchr(0, gz.get(at..)?)? + 1;
        }
    }
    (at <= gz.len()).then_some(at)
}

/// A reader that fails with the error it holds once it is reached.
struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use tokenwatch_core::Analyzer;
    use tokenwatch_core::reader::JsonSplitter;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn record(id: usize) -> String {
        format!(
            r#"{{"eventTime":"2026-11-02T09:00:{:02}Z","eventID":"e{id}","eventName":"GetObject","errorCode":"ExpiredToken",
            "userIdentity":{{"type":"AssumedRole","accessKeyId":"ASIAKEY{id}","arn":"arn:aws:sts::123456789012:assumed-role/etl/job"}}}}"#,
            id % 60
        )
    }

    fn trail(ids: std::ops::Range<usize>) -> String {
        let records: Vec<_> = ids.map(record).collect();
        format!(r#"{{"Records":[{}]}}"#, records.join(","))
    }

    /// What the CLI does with an input: open it, read it whole or streamed. Records and failures read,
    /// whether it was read whole, and the error's text.
    fn run(inflater: &mut Inflater, src: impl Read + 'static, size: u64) -> (u64, u64, bool, Option<String>) {
        let mut a = Analyzer::default();
        let (whole, result) = match inflater.open(src, size) {
            Err(e) => (false, Err(e.to_string())),
            Ok(Opened::Whole(json)) => {
                let mut splitter = JsonSplitter::whole(json);
                let read = a.read_values(&mut splitter);
                inflater.recycle(splitter.into_buffer());
                (true, read.map_err(|e| e.to_string()))
            }
            Ok(Opened::Stream(src)) => (false, a.read(src).map_err(|e| e.to_string())),
        };
        let records = a.records();
        (records, a.report().failures, whole, result.err())
    }

    /// Records and failures read, and the error's text.
    fn analyse(bytes: &[u8], inflater: &mut Inflater) -> (u64, u64, Option<String>) {
        let (records, failures, _, error) =
            run(inflater, io::Cursor::new(bytes.to_vec()), bytes.len() as u64);
        (records, failures, error)
    }

    /// The same input read by the plain streaming path.
    fn streamed(bytes: &[u8]) -> (u64, u64, Option<String>) {
        use tokenwatch_core::reader::ReadError;
        let mut a = Analyzer::default();
        let result = decompressing(bytes)
            .map_err(ReadError::from)
            .and_then(|src| a.read(src));
        let records = a.records();
        (records, a.report().failures, result.err().map(|e| e.to_string()))
    }

    #[test]
    fn a_single_member_is_inflated_whole() {
        let gz = gzip(trail(0..50).as_bytes());
        let mut out = Vec::new();
        let n = inflate_member(&mut Decompressor::new(), &gz, &mut out).expect("taken whole");
        assert_eq!(&out[..n], trail(0..50).as_bytes());
        assert_eq!(analyse(&gz, &mut Inflater::default()), (50, 50, None));
    }

    #[test]
    fn a_header_with_name_extra_and_comment_is_parsed() {
        let mut gz = flate2::GzBuilder::new()
            .filename("trail.json")
            .comment("from a test")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        gz.write_all(trail(0..3).as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(inflate_member(&mut Decompressor::new(), &gz, &mut Vec::new()).is_some());
        assert_eq!(analyse(&gz, &mut Inflater::default()), (3, 3, None));
    }

    #[test]
    fn several_members_are_all_read() {
        // `cat a.gz b.gz a.gz`: the first and last members alike, so their trailers agree.
        let (a, b) = (gzip(trail(0..5).as_bytes()), gzip(trail(5..9).as_bytes()));
        let gz = [a.clone(), b, a].concat();
        assert_eq!(
            inflate_member(&mut Decompressor::new(), &gz, &mut Vec::new()),
            None
        );
        // Concatenated trail files are concatenated documents: 5 + 4 + 5 records, 9 distinct failures.
        assert_eq!(analyse(&gz, &mut Inflater::default()), (14, 9, None));
    }

    #[test]
    fn damaged_gzip_is_reported_as_the_stream_reports_it() {
        let gz = gzip(trail(0..40).as_bytes());
        let truncated = gz[..gz.len() * 2 / 3].to_vec();
        let mut corrupt = gz.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0x55;
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"junk after the member");
        let mut bad_crc = gz.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        for bytes in [truncated, corrupt, trailing, bad_crc] {
            assert_eq!(
                inflate_member(&mut Decompressor::new(), &bytes, &mut Vec::new()),
                None
            );
            let got = analyse(&bytes, &mut Inflater::default());
            assert!(got.2.is_some(), "an error is reported");
            assert_eq!(got, streamed(&bytes));
        }
    }

    #[test]
    fn plain_json_is_split_whole() {
        let json = trail(0..7);
        assert_eq!(analyse(json.as_bytes(), &mut Inflater::default()), (7, 7, None));
        let cut = &json.as_bytes()[..json.len() - 10];
        assert_eq!(analyse(cut, &mut Inflater::default()), streamed(cut));
    }

    #[test]
    fn buffers_are_reused_from_file_to_file_without_leaking_bytes() {
        let mut inflater = Inflater::default();
        let (big, small) = (gzip(trail(0..200).as_bytes()), gzip(trail(0..2).as_bytes()));
        assert_eq!(analyse(&big, &mut inflater), (200, 200, None));
        // A smaller file after a larger one sees only its own bytes.
        assert_eq!(analyse(&small, &mut inflater), (2, 2, None));
        assert_eq!(analyse(trail(0..1).as_bytes(), &mut inflater), (1, 1, None));
    }

    #[test]
    fn a_read_error_part_way_keeps_what_came_before() {
        struct Breaks(io::Cursor<Vec<u8>>);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.position() == self.0.get_ref().len() as u64 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = buf.len().min(100);
                self.0.read(&mut buf[..n])
            }
        }
        let json = trail(0..10);
        let half = &json.as_bytes()[..json.len() / 2];
        let (records, _, whole, error) = run(
            &mut Inflater::default(),
            Breaks(io::Cursor::new(half.to_vec())),
            json.len() as u64,
        );
        assert!(records > 0, "the records before the error were analysed");
        assert!(!whole);
        assert_eq!(error.as_deref(), Some("disk gone"));
        let (records, _, _, error) = run(&mut Inflater::default(), Breaks(io::Cursor::new(Vec::new())), 10);
        assert_eq!((records, error.as_deref()), (0, Some("disk gone")));
    }

    #[test]
    fn unknown_sizes_and_large_files_stream() {
        let gz = gzip(trail(0..20).as_bytes());
        let mut inflater = Inflater::default();
        assert_eq!(
            run(&mut inflater, io::Cursor::new(gz.clone()), gz.len() as u64),
            (20, 20, true, None)
        );
        assert_eq!(
            run(&mut inflater, io::Cursor::new(gz.clone()), 0),
            (20, 20, false, None)
        );
        let huge = MAX_WHOLE_FILE as u64 + 1;
        assert_eq!(
            run(&mut inflater, io::Cursor::new(gz.clone()), huge),
            (20, 20, false, None)
        );
    }
}
