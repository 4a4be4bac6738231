//! Content decoding on the side copy: gzip, deflate (zlib-wrapped or raw),
//! br and zstd, fed in small steps so one step's output stays small.

use std::io::Write;

/// Input is handed to a decoder in steps this big, so one step's output stays
/// small whatever the compression ratio.
const DECODE_STEP: usize = 512;

pub(super) enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Deflate(flate2::write::DeflateDecoder<Vec<u8>>),
    /// `deflate` whose first bytes have not shown zlib or raw yet.
    DeflatePending(Vec<u8>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    pub(super) fn for_encoding(enc: &str) -> Option<Option<Decoder>> {
        let enc = enc.trim().to_ascii_lowercase();
        Some(match enc.as_str() {
            "" | "identity" => None,
            "gzip" | "x-gzip" => Some(Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Some(Decoder::DeflatePending(Vec::new())),
            "br" => Some(Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))),
            "zstd" => {
                // RFC 8878: a window of at most 8 MiB (log 23) for
                // `Content-Encoding: zstd`; a frame asking for more is not
                // decoded (its usage is lost, the client still gets it).
                let mut d = zstd::stream::write::Decoder::new(Vec::new()).ok()?;
                d.window_log_max(23).ok()?;
                Some(Decoder::Zstd(d))
            }
            _ => return None,
        })
    }

    /// Decode one step; the decoded bytes are handed to `out`.
    pub(super) fn write(&mut self, data: &[u8], out: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
        if let Decoder::DeflatePending(seen) = self {
            seen.extend_from_slice(data);
            if seen.len() < 2 {
                return Ok(());
            }
            // zlib: CMF/FLG with CM=8 and a header checksum (RFC 1950).
            let zlib = seen[0] & 0x0f == 8 && (u16::from(seen[0]) << 8 | u16::from(seen[1])) % 31 == 0;
            let buffered = std::mem::take(seen);
            *self = if zlib {
                Decoder::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Decoder::Deflate(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.write(&buffered, out);
        }
        for step in data.chunks(DECODE_STEP) {
            let sink = match self {
                Decoder::Gzip(d) => {
                    d.write_all(step)?;
                    d.get_mut()
                }
                Decoder::Zlib(d) => {
                    d.write_all(step)?;
                    d.get_mut()
                }
                Decoder::Deflate(d) => {
                    d.write_all(step)?;
                    d.get_mut()
                }
                Decoder::Brotli(d) => {
                    d.write_all(step)?;
                    d.get_mut()
                }
                Decoder::Zstd(d) => {
                    d.write_all(step)?;
                    d.get_mut()
                }
                Decoder::DeflatePending(_) => unreachable!("resolved above"),
            };
            if !sink.is_empty() {
                out(sink);
                sink.clear();
                if sink.capacity() > 256 * 1024 {
                    sink.shrink_to(64 * 1024);
                }
            }
        }
        Ok(())
    }

    pub(super) fn flush(&mut self, out: &mut dyn FnMut(&[u8])) {
        let sink = match self {
            Decoder::Gzip(d) => d.try_finish().ok().map(|_| d.get_mut()),
            Decoder::Zlib(d) => d.try_finish().ok().map(|_| d.get_mut()),
            Decoder::Deflate(d) => d.try_finish().ok().map(|_| d.get_mut()),
            Decoder::Brotli(d) => d.flush().ok().map(|_| d.get_mut()),
            Decoder::Zstd(d) => d.flush().ok().map(|_| d.get_mut()),
            Decoder::DeflatePending(_) => None,
        };
        if let Some(s) = sink {
            if !s.is_empty() {
                out(s);
                s.clear();
            }
        }
    }

    pub(super) fn state_bytes(&self) -> usize {
        match self {
            Decoder::Gzip(d) => d.get_ref().capacity(),
            Decoder::Zlib(d) => d.get_ref().capacity(),
            Decoder::Deflate(d) => d.get_ref().capacity(),
            Decoder::DeflatePending(v) => v.capacity(),
            Decoder::Brotli(d) => d.get_ref().capacity(),
            Decoder::Zstd(d) => d.get_ref().capacity(),
        }
    }
}
