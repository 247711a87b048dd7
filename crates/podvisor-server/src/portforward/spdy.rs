//! SPDY/3.1 framing, as Kubernetes' streaming protocols use it between kubectl and the API
//! server: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
//! WINDOW_UPDATE) and data frames, with header blocks compressed by one zlib stream per
//! direction over the protocol's dictionary.
//!
//! [`Decoder`] takes bytes as they come (in any chunks) and gives whole frames; [`Encoder`]
//! makes the frames a server sends. Neither does IO. Kubernetes' peers do no SPDY flow control
//! (they send no WINDOW_UPDATE and honour none), so neither does this.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The zlib dictionary of SPDY/3 header blocks (the protocol's constant, 1423 bytes).
const DICTIONARY: &[u8] = include_bytes!("spdy3-dictionary.bin");

/// The largest frame accepted: data frames of Kubernetes' peers are at most 32 KiB; a bigger
/// one is refused rather than buffered.
pub const MAX_FRAME: usize = 1 << 20;

/// The most a header block may decompress to.
const MAX_HEADERS: usize = 64 * 1024;

/// The FIN flag: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status: the stream is refused (too many, or not understood).
pub const REFUSED_STREAM: u32 = 3;

/// RST_STREAM status: the peer sent more than the stream could take.
pub const FLOW_CONTROL_ERROR: u32 = 7;

/// A SPDY frame, as this server reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream from the peer, with its headers (names lower-case).
    SynStream {
        /// The stream.
        id: u32,
        /// Flags (`FLAG_FIN`: nothing will follow from the peer).
        flags: u8,
        /// Its headers, in order.
        headers: Vec<(String, String)>,
    },
    /// The peer's answer to a stream this side opened (this server opens none).
    SynReply {
        /// The stream.
        id: u32,
    },
    /// The peer ends a stream abnormally.
    RstStream {
        /// The stream.
        id: u32,
        /// Why.
        status: u32,
    },
    /// A PING: answered with the same ID.
    Ping(u32),
    /// The peer ends the session.
    GoAway,
    /// Data on a stream.
    Data {
        /// The stream.
        id: u32,
        /// `FLAG_FIN`: the peer's last data on it.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// SETTINGS, HEADERS, WINDOW_UPDATE and frames of unknown type: nothing to do.
    Ignored,
}

/// Why the bytes are not SPDY this server can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    /// A frame longer than [`MAX_FRAME`].
    #[error("a SPDY frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// A control frame of another version than 3.
    #[error("SPDY version {0} is not supported (3 is)")]
    Version(u16),
    /// A frame shorter than its fixed fields.
    #[error("a SPDY {0} frame is too short")]
    Short(&'static str),
    /// A header block that does not decompress, or does not parse.
    #[error("a SPDY header block is invalid: {0}")]
    Headers(String),
}

/// Reads frames from the bytes of a session.
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf` (what is before it is read).
    start: usize,
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { buf: Vec::new(), start: 0, inflate: Decompress::new(true) }
    }
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    /// Takes the next bytes of the session.
    pub fn push(&mut self, bytes: &[u8]) {
        // What was read goes once per push, not once per frame.
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if the bytes taken hold one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 8 {
            return Ok(None);
        }
        let length = (word(&rest[4..8]) & 0x00ff_ffff) as usize;
        if length > MAX_FRAME {
            return Err(SpdyError::TooLarge(length));
        }
        if rest.len() < 8 + length {
            return Ok(None);
        }
        let frame: Vec<u8> = rest[..8 + length].to_vec();
        self.start += 8 + length;
        let flags = frame[4];
        let body = &frame[8..];
        if frame[0] & 0x80 == 0 {
            let id = word(&frame[0..4]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { id, fin: flags & FLAG_FIN != 0, data: body.to_vec() }));
        }
        let version = u16::from_be_bytes([frame[0] & 0x7f, frame[1]]);
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let stream = |min: usize, what: &'static str| {
            if body.len() < min { Err(SpdyError::Short(what)) } else { Ok(word(body) & 0x7fff_ffff) }
        };
        Ok(Some(match u16::from_be_bytes([frame[2], frame[3]]) {
            1 => {
                let id = stream(10, "SYN_STREAM")?;
                let headers = self.headers(&body[10..])?;
                Frame::SynStream { id, flags, headers }
            }
            2 => {
                let id = stream(4, "SYN_REPLY")?;
                self.headers(&body[4..])?;
                Frame::SynReply { id }
            }
            3 => Frame::RstStream { id: stream(8, "RST_STREAM")?, status: word(&body[4..8]) },
            6 => Frame::Ping(stream(4, "PING").map(|_| word(body))?),
            7 => Frame::GoAway,
            8 => {
                // HEADERS share the compression context: they must be inflated even if unused.
                stream(4, "HEADERS")?;
                self.headers(&body[4..])?;
                Frame::Ignored
            }
            _ => Frame::Ignored,
        }))
    }

    /// Inflates a header block (continuing the session's zlib stream) and parses it.
    fn headers(&mut self, mut input: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let bad = |m: String| SpdyError::Headers(m);
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADERS {
                    return Err(bad(format!("over {MAX_HEADERS} bytes")));
                }
                out.reserve(out.len());
            }
            let before = self.inflate.total_in();
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - before) as usize;
            input = &input[consumed..];
            match result {
                Ok(Status::Ok | Status::BufError) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(DICTIONARY).map_err(|e| bad(e.to_string()))?;
                }
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        parse_block(&out).ok_or_else(|| bad("truncated name/value block".into()))
    }
}

/// A name/value block: a count, then each name and value with its length.
fn parse_block(b: &[u8]) -> Option<Vec<(String, String)>> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = b.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let count = word(take(4)?);
    let mut out = Vec::new();
    for _ in 0..count {
        let n = word(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = word(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        out.push((name, value));
    }
    Some(out)
}

/// Makes the frames this side sends.
pub struct Encoder {
    deflate: Compress,
    dictionary_set: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { deflate: Compress::new(Compression::best(), true), dictionary_set: false }
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8003u16).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

impl Encoder {
    /// SYN_REPLY accepting stream `id`, without headers.
    pub fn syn_reply(&mut self, id: u32) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend(self.compress(&0u32.to_be_bytes()));
        control(2, 0, &body)
    }

    /// RST_STREAM of stream `id` with `status`.
    pub fn rst_stream(id: u32, status: u32) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        control(3, 0, &body)
    }

    /// PING with `id` (the answer to the peer's).
    pub fn ping(id: u32) -> Vec<u8> {
        control(6, 0, &id.to_be_bytes())
    }

    /// GOAWAY, status OK, naming `last` the last stream accepted.
    pub fn go_away(last: u32) -> Vec<u8> {
        let mut body = last.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        control(7, 0, &body)
    }

    /// A data frame on stream `id`; `fin` ends this side of it.
    pub fn data(id: u32, data: &[u8], fin: bool) -> Vec<u8> {
        let mut f = Vec::with_capacity(8 + data.len());
        f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        let flags = if fin { FLAG_FIN } else { 0 };
        f.extend_from_slice(&((u32::from(flags) << 24) | data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    /// Deflates a header block, continuing this side's zlib stream, flushed so that the peer
    /// can read it whole.
    fn compress(&mut self, mut input: &[u8]) -> Vec<u8> {
        if !self.dictionary_set {
            // A dictionary on a fresh stream cannot fail.
            let _ = self.deflate.set_dictionary(DICTIONARY);
            self.dictionary_set = true;
        }
        let mut out = Vec::with_capacity(64);
        loop {
            if out.len() == out.capacity() {
                out.reserve(64);
            }
            let before = self.deflate.total_in();
            if self.deflate.compress_vec(input, &mut out, FlushCompress::Sync).is_err() {
                return out;
            }
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Deflates a name/value block of `headers` (for tests: this server sends none).
    #[cfg(test)]
    fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut b = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            b.extend_from_slice(&(n.len() as u32).to_be_bytes());
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        self.compress(&b)
    }

    /// SYN_STREAM opening `id` with `headers`, as a client opens one (for tests).
    #[cfg(test)]
    pub fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend(self.block(headers));
        control(1, 0, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Its Adler-32 is the dictionary ID a peer's zlib checks.
        let (mut a, mut b) = (1u32, 0u32);
        for x in DICTIONARY {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((DICTIONARY.len(), (b << 16) | a), (1423, 0xe3c6_a7c2));
    }

    #[test]
    fn streams_replies_and_data_go_through_in_any_chunks_with_one_zlib_context() {
        let mut client = Encoder::default();
        let mut wire = client.syn_stream(1, &[("streamtype", "error"), ("port", "8080"), ("requestid", "0")]);
        wire.extend(client.syn_stream(3, &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]));
        wire.extend(Encoder::data(3, b"GET / HTTP/1.0\r\n\r\n", true));
        wire.extend(Encoder::ping(1));
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for chunk in wire.chunks(7) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        let h = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".into(), "8080".into()),
                ("requestid".into(), "0".into()),
            ]
        };
        assert_eq!(
            frames,
            [
                Frame::SynStream { id: 1, flags: 0, headers: h("error") },
                Frame::SynStream { id: 3, flags: 0, headers: h("data") },
                Frame::Data { id: 3, fin: true, data: b"GET / HTTP/1.0\r\n\r\n".to_vec() },
                Frame::Ping(1),
            ]
        );
        // The server's replies continue its own zlib stream: a second decoder reads them.
        let mut server = Encoder::default();
        let mut back = Decoder::default();
        for id in [1, 3] {
            back.push(&server.syn_reply(id));
            assert_eq!(back.next_frame().unwrap(), Some(Frame::SynReply { id }));
        }
    }

    #[test]
    fn hostile_frames_are_refused_not_buffered_or_panicked_on() {
        let mut d = Decoder::default();
        d.push(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(SpdyError::TooLarge(0xff_ffff)));
        let mut d = Decoder::default();
        d.push(&control(1, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3]));
        assert!(matches!(d.next_frame(), Err(SpdyError::Headers(_))));
        let mut d = Decoder::default();
        d.push(&control(3, 0, &[0, 0]));
        assert_eq!(d.next_frame(), Err(SpdyError::Short("RST_STREAM")));
        let mut d = Decoder::default();
        d.push(&[0x80, 2, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(SpdyError::Version(2)));
        assert_eq!(parse_block(&[0, 0, 0, 9, 0, 0, 0, 200]), None, "counts past the block end");
    }
}
