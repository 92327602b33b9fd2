//! Image references as users type them, in the distribution reference grammar Docker
//! uses (`alpine` is `docker.io/library/alpine:latest`), split here and handed to
//! `oci-spec`'s `Reference` as parts. (`Reference::from_str` compiles a large regex on
//! first use: about 25 ms of CPU, which was most of a warm pull's.)

use std::net::IpAddr;
use std::str::FromStr;

use oci_client::Reference;

use crate::Error;

/// What is wrong with a reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty or longer than 255 bytes")]
    Length,
    #[error("bad registry host {0:?}")]
    Host(String),
    #[error("bad repository path component {0:?} (lowercase letters, digits and . _ __ -)")]
    Path(String),
    #[error("bad tag {0:?} (at most 128 of letters, digits, _ . -, not starting with . or -)")]
    Tag(String),
    #[error("bad digest {0:?} (sha256: and 64 lowercase hex digits)")]
    Digest(String),
}

/// A parsed reference and the text it came from (the name a pull gives the image).
#[derive(Clone, Debug)]
pub struct ImageRef {
    pub given: String,
    pub reference: Reference,
}

fn host_ok(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip6, after)) => {
                if ip6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                ("", after.strip_prefix(':'))
            }
            None => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        },
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host_ok = h.starts_with('[') || host.split('.').all(label_ok);
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn component_ok(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !t.is_empty()
        && t.len() <= 128
        && word(t.as_bytes()[0])
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// Splits `s` as `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`.
pub fn parse_reference(s: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() || s.len() > 255 {
        return Err(ReferenceError::Length);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            minnow_image::digest::Digest::parse(d).map_err(|_| ReferenceError::Digest(d.into()))?;
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    let slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(c) if slash.is_none_or(|sl| c > sl) => (&rest[..c], Some(&rest[c + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        if !tag_ok(t) {
            return Err(ReferenceError::Tag(t.into()));
        }
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if !host_ok(first) {
                return Err(ReferenceError::Host(first.into()));
            }
            (first.to_string(), path.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if let Some(bad) = path.split('/').find(|c| !component_ok(c)) {
        return Err(ReferenceError::Path(bad.into()));
    }
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t.into(), d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").into()),
    })
}

impl ImageRef {
    pub fn parse(given: &str) -> Result<ImageRef, Error> {
        let reference = parse_reference(given).map_err(|source| Error::BadReference {
            reference: given.to_string(),
            source,
        })?;
        Ok(ImageRef {
            given: given.to_string(),
            reference,
        })
    }

    /// The registry as written (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The host that is contacted (`index.docker.io` for Docker Hub).
    pub fn host(&self) -> &str {
        self.reference.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// The key of this registry in Docker's `config.json` `auths`.
    pub fn auth_key(&self) -> String {
        auth_key(self.registry())
    }

    /// Whether the registry is on this host's loopback (127.0.0.0/8, ::1, localhost),
    /// where plain HTTP is allowed without `--insecure`, as Docker allows it.
    pub fn is_loopback(&self) -> bool {
        is_loopback(self.host())
    }

    /// The same repository at `digest` (for a manifest picked from an index).
    pub fn at_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        )
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.given)
    }
}

/// Docker's `config.json` key for a registry: Docker Hub's is its v1 URL.
pub fn auth_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".into()
        }
        r => r.to_string(),
    }
}

/// `host[:port]` is a loopback address or `localhost`.
pub fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost" || IpAddr::from_str(host).is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.reference.tag(), Some("1.0"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:1.0");
        let hub = ImageRef::parse("alpine").unwrap();
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.repository(), "library/alpine");
        assert_eq!(hub.auth_key(), "https://index.docker.io/v1/");
        assert!(!hub.is_loopback());
        let d = format!("localhost:5000/x@sha256:{}", "a".repeat(64));
        assert!(ImageRef::parse(&d).unwrap().reference.digest().is_some());
        assert!(ImageRef::parse("repo@sha256:abc").is_err());
        assert!(ImageRef::parse("a b").is_err());
        for bad in [
            "",
            "a//b",
            "ex ample.com/x",
            "example.com:port/x",
            "x:-tag",
            "Upper",
            "example.com/",
            "a/-b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        let r = ImageRef::parse("localhost/a__b/c-d.e:v1.2_3").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.reference.tag()),
            ("localhost", "a__b/c-d.e", Some("v1.2_3"))
        );
        let r = ImageRef::parse("[::1]:5000/x").unwrap();
        assert_eq!(
            (r.registry(), r.reference.tag()),
            ("[::1]:5000", Some("latest"))
        );
        let r = ImageRef::parse("team/app").unwrap();
        assert_eq!((r.registry(), r.repository()), ("docker.io", "team/app"));
    }

    /// The same parts as oci-spec's own parser, on references of every shape.
    #[test]
    fn agrees_with_oci_spec() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        for s in [
            "alpine".to_string(),
            "alpine:3.20".into(),
            "team/app:1.0".into(),
            "127.0.0.1:5000/team/app:1.0".into(),
            "localhost:5000/a/b/c".into(),
            "registry.example.com/x".into(),
            format!("registry.example.com/x@{d}"),
            format!("registry.example.com/x:t@{d}"),
            "docker.io/library/busybox:latest".into(),
        ] {
            let ours = parse_reference(&s).unwrap();
            let theirs = Reference::from_str(&s).unwrap();
            assert_eq!(
                (
                    ours.registry(),
                    ours.repository(),
                    ours.tag(),
                    ours.digest()
                ),
                (
                    theirs.registry(),
                    theirs.repository(),
                    theirs.tag(),
                    theirs.digest()
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn loopback() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "example.com",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
