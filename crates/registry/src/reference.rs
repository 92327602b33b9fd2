//! Image references as users type them, parsed by `oci-spec`'s distribution reference
//! grammar (the one Docker uses: `alpine` is `docker.io/library/alpine:latest`).

use std::net::IpAddr;
use std::str::FromStr;

use oci_client::Reference;

use crate::Error;

/// A parsed reference and the text it came from (the name a pull gives the image).
#[derive(Clone, Debug)]
pub struct ImageRef {
    pub given: String,
    pub reference: Reference,
}

impl ImageRef {
    pub fn parse(given: &str) -> Result<ImageRef, Error> {
        let reference = Reference::from_str(given).map_err(|source| Error::BadReference {
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
