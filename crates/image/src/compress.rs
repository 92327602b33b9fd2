//! How a layer blob is compressed, told by its media type, and the decoder that turns it
//! back into a tar stream. The one place layer extraction asks (the "decoder hook"), so a
//! new compression is added here and nowhere else.
//!
//! zstd is decoded by the `zstd` crate (the reference C library, zstd-sys): it reads
//! multi-frame streams and skips skippable frames (as `zstd:chunked` layers carry), which
//! a single-frame decoder does not, and it is the fastest decoder at hand.

use std::io::{self, BufRead, Read};

/// A layer blob's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer media type minnow cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unsupported layer media type {0:?} (minnow reads tar layers: uncompressed, gzip or zstd)")]
pub struct UnsupportedMediaType(pub String);

impl Compression {
    /// The compression a layer media type names: OCI `...layer.v1.tar[+gzip|+zstd]`
    /// (and their `nondistributable` forms), Docker `...rootfs.diff.tar[.gzip|.zstd]`.
    pub fn of(media_type: &str) -> Result<Compression, UnsupportedMediaType> {
        let oci = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
        ];
        let docker = [
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let rest = oci
            .iter()
            .chain(docker.iter())
            .find_map(|p| media_type.strip_prefix(p));
        match rest {
            Some("") => Ok(Compression::None),
            Some("+gzip" | ".gzip") => Ok(Compression::Gzip),
            Some("+zstd" | ".zstd") => Ok(Compression::Zstd),
            _ => Err(UnsupportedMediaType(media_type.to_string())),
        }
    }

    /// A reader that yields the uncompressed tar stream of `r`.
    pub fn decoder<'a>(self, r: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_types() {
        use Compression::*;
        for (t, c) in [
            ("application/vnd.oci.image.layer.v1.tar", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
            ("application/vnd.docker.image.rootfs.diff.tar", None),
        ] {
            assert_eq!(Compression::of(t).unwrap(), c, "{t}");
        }
        for t in [
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.oci.image.config.v1+json",
            "text/plain",
        ] {
            assert!(Compression::of(t).is_err(), "{t}");
        }
    }

    /// Two zstd frames with a skippable frame between them decode to both payloads.
    #[test]
    fn zstd_multi_frame_and_skippable() {
        let mut data = zstd::encode_all(&b"hello "[..], 3).unwrap();
        // A skippable frame: magic 0x184D2A50, 4-byte length, payload.
        data.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        data.extend_from_slice(&3u32.to_le_bytes());
        data.write_all(b"xyz").unwrap();
        data.extend(zstd::encode_all(&b"world"[..], 3).unwrap());
        let mut out = String::new();
        Compression::Zstd
            .decoder(&data[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
        // Corrupt input is an error, not a panic or silent truncation.
        let mut bad = zstd::encode_all(&b"hello"[..], 3).unwrap();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        let r = Compression::Zstd
            .decoder(&bad[..])
            .and_then(|mut d| d.read_to_end(&mut Vec::new()));
        assert!(r.is_err());
    }
}
