//! Reaching a registry: TLS (system roots plus `--ca-file`) or plain HTTP, decided as
//! Docker does (HTTPS first; plain HTTP only for loopback registries or with
//! `--insecure`), the `oci-client` client, and turning its errors into ours.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::Client;

use crate::reference::ImageRef;
use crate::{Error, Options};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const USER_AGENT: &str = concat!("minnow/", env!("CARGO_PKG_VERSION"));

/// A registry, reached: the scheme that works and clients for it.
pub struct Transport {
    pub client: Client,
    pub scheme: &'static str,
    pub registry: String,
    /// Whether `/v2/` answered with a `WWW-Authenticate` challenge (see [`Probe`]).
    pub challenged: bool,
    opts: Options,
    certs: Vec<Vec<u8>>,
}

impl Transport {
    /// `SCHEME://HOST/v2/`.
    pub fn base_url(&self, r: &ImageRef) -> String {
        format!("{}://{}/v2/", self.scheme, r.host())
    }

    /// A plain HTTP client with the same TLS settings, for what `oci-client` does not do
    /// (checking credentials at `login`). Made on demand: loading the system's roots
    /// costs milliseconds a pull does not need to spend twice.
    pub fn http(&self) -> Result<reqwest::Client, Error> {
        http_client(self.opts.insecure, &self.certs).map_err(|e| from_reqwest(e, &self.registry))
    }
}

fn ca_certs(opts: &Options) -> Result<Vec<Vec<u8>>, Error> {
    let Some(path) = &opts.ca_file else {
        return Ok(Vec::new());
    };
    let bad = |detail: String| Error::CaFile {
        path: path.clone(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    // One PEM block per certificate, as oci-client takes them.
    let text = String::from_utf8_lossy(&pem);
    let end = "-----END CERTIFICATE-----";
    let certs: Vec<Vec<u8>> = text
        .split_inclusive(end)
        .filter_map(|chunk| {
            let start = chunk.find("-----BEGIN CERTIFICATE-----")?;
            chunk
                .ends_with(end)
                .then(|| chunk.as_bytes()[start..].to_vec())
        })
        .collect();
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

fn install_crypto() {
    // Only the first call in a process installs it; later ones get Err, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every message in an error's source chain, joined: rustls and hyper put the useful
/// part (`invalid peer certificate: UnknownIssuer`, `dns error`) deep in it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn is_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "peer",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A transport-level failure (no HTTP answer).
pub(crate) fn from_reqwest(e: reqwest::Error, registry: &str) -> Error {
    let text = chain(&e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        Error::UnknownHost {
            registry: registry.into(),
            source: e,
        }
    } else if is_tls(&text) {
        Error::Tls {
            registry: registry.into(),
            detail: last_part(&text),
        }
    } else if e.is_connect() || e.is_timeout() {
        Error::Unreachable {
            registry: registry.into(),
            detail: last_part(&text),
            source: Some(e),
        }
    } else {
        Error::Registry {
            registry: registry.into(),
            detail: text.replace('\n', " "),
        }
    }
}

fn last_part(text: &str) -> String {
    text.rsplit(": ").next().unwrap_or(text).replace('\n', " ")
}

/// An `oci-client` error, for reference `r` (`had_credentials`: whether a 401 means the
/// stored credentials are wrong rather than missing).
pub(crate) fn classify(e: OciDistributionError, r: &ImageRef, had_credentials: bool) -> Error {
    let registry = r.registry().to_string();
    let reference = r.to_string();
    let unauthorized = || {
        if had_credentials {
            Error::BadCredentials {
                registry: registry.clone(),
                reference: reference.clone(),
            }
        } else {
            Error::Unauthorized {
                registry: registry.clone(),
                reference: reference.clone(),
            }
        }
    };
    match e {
        OciDistributionError::RequestError(e) => from_reqwest(e, &registry),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::ImageManifestNotFoundError(_) => Error::NotFound {
            registry,
            reference,
            what: "manifest unknown".into(),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let what = |c: &OciErrorCode| match c {
                OciErrorCode::ManifestUnknown => Some("manifest unknown"),
                OciErrorCode::NameUnknown => Some("repository unknown"),
                OciErrorCode::BlobUnknown | OciErrorCode::ManifestBlobUnknown => {
                    Some("blob unknown")
                }
                OciErrorCode::NotFound => Some("not found"),
                _ => None,
            };
            if let Some(w) = codes.iter().find_map(|c| what(c)) {
                Error::NotFound {
                    registry,
                    reference,
                    what: w.into(),
                }
            } else if codes.contains(&&OciErrorCode::Unauthorized) {
                unauthorized()
            } else if codes.contains(&&OciErrorCode::Denied) {
                Error::Denied {
                    registry,
                    reference,
                }
            } else {
                let msgs: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect();
                Error::Registry {
                    registry,
                    detail: msgs.join(", ").replace('\n', " "),
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 => unauthorized(),
            403 => Error::Denied {
                registry,
                reference,
            },
            404 => Error::NotFound {
                registry,
                reference,
                what: "not found".into(),
            },
            _ => Error::Registry {
                registry,
                detail: format!(
                    "HTTP {code}: {}",
                    message
                        .chars()
                        .take(200)
                        .collect::<String>()
                        .replace('\n', " ")
                ),
            },
        },
        other => Error::Registry {
            registry,
            detail: chain(&other).replace('\n', " "),
        },
    }
}

fn http_client(insecure: bool, certs: &[Vec<u8>]) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(USER_AGENT)
        .danger_accept_invalid_certs(insecure);
    let mut extra = Vec::new();
    for c in certs {
        extra.push(reqwest::Certificate::from_pem(c)?);
    }
    if !extra.is_empty() {
        b = b.tls_certs_merge(extra);
    }
    b.build()
}

/// Whether a plain-HTTP answer on `/v2/` is a registry's (200, or 401 asking to log in;
/// a TLS-only server answers 400 to plain HTTP).
fn is_registry_answer(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::OK || status == reqwest::StatusCode::UNAUTHORIZED
}

/// Finds how to talk to `r`'s registry and builds the clients.
pub async fn connect(r: &ImageRef, opts: &Options) -> Result<Transport, Error> {
    probe(r, opts).await?.connect(r)
}

/// What the probe found: the scheme, and what the clients need.
pub struct Probe {
    pub scheme: &'static str,
    pub registry: String,
    /// Whether `/v2/` answered with a `WWW-Authenticate` challenge. Without one,
    /// `oci-client`'s `auth` finds no token to get, yet, once called, asks `/v2/` again
    /// before every later request: a registry that does not challenge is not asked.
    pub challenged: bool,
    opts: Options,
    certs: Vec<Vec<u8>>,
    plain: reqwest::Client,
}

impl Probe {
    /// A client for single requests minnow makes itself (the HEAD of a warm pull):
    /// over plain HTTP the probe's (nothing to verify), over TLS one that verifies.
    pub fn http(&self) -> Result<reqwest::Client, Error> {
        if self.scheme == "http" {
            Ok(self.plain.clone())
        } else {
            http_client(self.opts.insecure, &self.certs)
                .map_err(|e| from_reqwest(e, &self.registry))
        }
    }
}

/// Finds whether `r`'s registry speaks TLS, or plain HTTP where that is allowed.
pub async fn probe(r: &ImageRef, opts: &Options) -> Result<Probe, Error> {
    install_crypto();
    let registry = r.registry().to_string();
    let certs = ca_certs(opts)?;
    // The probe only asks whether the registry speaks TLS, so it does not verify (and
    // does not load the system's roots); the client below verifies, and a bad
    // certificate fails its first request with the same TLS error.
    let probe = http_client(true, &[]).map_err(|e| from_reqwest(e, &registry))?;
    let http_allowed = opts.insecure || r.is_loopback();
    let https = probe.get(format!("https://{}/v2/", r.host())).send().await;
    let challenge = |resp: &reqwest::Response| {
        resp.headers()
            .contains_key(reqwest::header::WWW_AUTHENTICATE)
    };
    let (scheme, challenged) = match https {
        Ok(resp) => ("https", challenge(&resp)),
        Err(e) => {
            let text = chain(&e);
            if !is_tls(&text) {
                return Err(from_reqwest(e, &registry));
            }
            let plain = if http_allowed {
                probe
                    .get(format!("http://{}/v2/", r.host()))
                    .send()
                    .await
                    .ok()
            } else {
                None
            };
            match plain {
                Some(resp) if is_registry_answer(resp.status()) => ("http", challenge(&resp)),
                _ if !http_allowed && text.to_ascii_lowercase().contains("invalidcontenttype") => {
                    return Err(Error::PlainHttp { registry });
                }
                _ => {
                    return Err(Error::Tls {
                        registry,
                        detail: last_part(&text),
                    })
                }
            }
        }
    };
    log::debug!("registry {registry}: {scheme}");
    Ok(Probe {
        scheme,
        registry,
        challenged,
        opts: opts.clone(),
        certs,
        plain: probe,
    })
}

impl Probe {
    /// Builds the `oci-client` client for the scheme found.
    pub fn connect(self, r: &ImageRef) -> Result<Transport, Error> {
        let Probe {
            scheme,
            registry,
            challenged,
            opts,
            certs,
            ..
        } = self;
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Over plain HTTP no certificate is ever checked: skip loading the roots. (They
            // are loaded all the same, ~5 ms, by the default `reqwest` client that
            // `oci-client` 0.18's `Client::try_from` builds with `..Default::default()`
            // and drops.)
            accept_invalid_certificates: opts.insecure || scheme == "http",
            extra_root_certificates: certs
                .iter()
                .cloned()
                .map(|data| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                })
                .collect(),
            // Indexes are resolved here (pull.rs), so that a missing platform can be named.
            platform_resolver: None,
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| classify(e, r, false))?;
        Ok(Transport {
            client,
            scheme,
            registry,
            challenged,
            opts,
            certs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_words() {
        assert!(is_tls("error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"));
        assert!(is_tls(
            "received corrupt message of type InvalidContentType"
        ));
        assert!(!is_tls(
            "tcp connect error: Connection refused (os error 111)"
        ));
        assert_eq!(last_part("a: b: c d"), "c d");
    }

    #[test]
    fn ca_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let opts = Options {
            ca_file: Some(f),
            ..Default::default()
        };
        let e = ca_certs(&opts).unwrap_err().to_string();
        assert!(e.contains("--ca-file"), "{e}");
        let opts = Options {
            ca_file: Some(dir.path().join("missing.pem")),
            ..Default::default()
        };
        assert!(matches!(ca_certs(&opts), Err(Error::CaFile { .. })));
    }
}
