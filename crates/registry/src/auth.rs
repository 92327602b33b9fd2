//! Credentials, in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so `docker login` and `minnow login` share them.
//!
//! Reading goes through the `docker_credential` crate (`auths` entries, `credHelpers`
//! and `credsStore` helpers). Writing (`login`, `logout`) is here: a helper configured
//! for the registry gets `store`/`erase`, else the `auths` entry is written; every other
//! field of the file is kept. Secrets never reach a log line or an error message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Map, Value};

use crate::reference::ImageRef;
use crate::transport::{self, Transport};
use crate::{Error, Options};

/// What can go wrong with stored credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read Docker's config {path}: {detail}; fix the file, or point DOCKER_CONFIG at another directory")]
    Config { path: PathBuf, detail: String },
    #[error("credential helper {helper} failed for {registry}; check the helper (or remove it from {path}) and run `minnow login {registry}`")]
    Helper {
        helper: String,
        registry: String,
        path: PathBuf,
    },
    #[error("cannot write Docker's config {path}: {source}; check that its directory is writable (or set DOCKER_CONFIG)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry {registry} refused the credentials of user {user:?}; check the user name and password")]
    Refused { registry: String, user: String },
    #[error("no Docker config directory: neither DOCKER_CONFIG nor HOME is set; set one of them")]
    NoConfigDir,
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path() -> Result<PathBuf, CredentialError> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .map(|d| d.join("config.json"))
        .ok_or(CredentialError::NoConfigDir)
}

/// The credentials stored for a registry (its `config.json` key), or anonymous.
/// Returns whether there were any.
pub fn lookup(key: &str) -> Result<(RegistryAuth, bool), CredentialError> {
    let path = config_path()?;
    if !path.is_file() {
        return Ok((RegistryAuth::Anonymous, false));
    }
    let bad = |detail: &str| CredentialError::Config {
        path: path.clone(),
        detail: detail.into(),
    };
    match docker_credential::get_credential(key) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok((RegistryAuth::Basic(u, p), true)),
        Ok(DockerCredential::IdentityToken(_)) => {
            log::warn!("the credentials for {key} are an identity token, which minnow cannot use; pulling anonymously");
            Ok((RegistryAuth::Anonymous, false))
        }
        Err(CredentialRetrievalError::NoCredentialConfigured)
        | Err(CredentialRetrievalError::ConfigNotFound) => Ok((RegistryAuth::Anonymous, false)),
        Err(CredentialRetrievalError::ConfigReadError) => Err(bad("not valid JSON")),
        Err(CredentialRetrievalError::CredentialDecodingError)
        | Err(CredentialRetrievalError::CredentialMismatchError) => {
            Err(bad(&format!("its auths entry for {key} cannot be decoded")))
        }
        // The helper's output may hold the secret: none of it goes into the message.
        Err(_) => Err(CredentialError::Helper {
            helper: helper_for(&path, key).unwrap_or_else(|| "(credsStore)".into()),
            registry: key.into(),
            path,
        }),
    }
}

fn read_config(path: &Path) -> Result<Map<String, Value>, CredentialError> {
    match std::fs::read(path) {
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(CredentialError::Config {
                path: path.into(),
                detail: "not a JSON object".into(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(CredentialError::Config {
            path: path.into(),
            detail: e.to_string(),
        }),
    }
}

/// The helper program (`docker-credential-NAME`) that holds `key`'s credentials.
fn helper_for(path: &Path, key: &str) -> Option<String> {
    let conf = read_config(path).ok()?;
    let name = conf
        .get("credHelpers")
        .and_then(|h| h.get(key))
        .or_else(|| conf.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    Some(format!("docker-credential-{name}"))
}

fn run_helper(
    helper: &str,
    verb: &str,
    input: &[u8],
    key: &str,
    path: &Path,
) -> Result<(), CredentialError> {
    let failed = || CredentialError::Helper {
        helper: helper.into(),
        registry: key.into(),
        path: path.into(),
    };
    let mut child = Command::new(helper)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| failed())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|_| failed())?;
    }
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        _ => Err(failed()),
    }
}

fn write_config(path: &Path, conf: &Map<String, Value>) -> Result<(), CredentialError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let werr = |source| CredentialError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(werr)?;
    }
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let text = serde_json::to_vec_pretty(conf).map_err(|e| werr(std::io::Error::other(e)))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.write_all(b"\n")))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        werr(e)
    })
}

/// Saves credentials for `key`: through its credential helper if one is configured,
/// else as an `auths` entry.
pub fn store(key: &str, user: &str, password: &str) -> Result<PathBuf, CredentialError> {
    let path = config_path()?;
    if let Some(helper) = helper_for(&path, key) {
        let input = json!({"ServerURL": key, "Username": user, "Secret": password}).to_string();
        run_helper(&helper, "store", input.as_bytes(), key, &path)?;
        return Ok(path);
    }
    let mut conf = read_config(&path)?;
    let auths = conf
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    if let Some(a) = auths.as_object_mut() {
        a.insert(key.into(), json!({ "auth": encoded }));
    }
    write_config(&path, &conf)?;
    Ok(path)
}

/// Forgets `key`'s credentials; returns whether there were any.
pub fn forget(key: &str) -> Result<bool, CredentialError> {
    let path = config_path()?;
    let mut had = false;
    if let Some(helper) = helper_for(&path, key) {
        run_helper(&helper, "erase", key.as_bytes(), key, &path)?;
        had = true;
    }
    let mut conf = read_config(&path)?;
    let removed = conf
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(key))
        .is_some();
    if removed {
        write_config(&path, &conf)?;
    }
    Ok(had || removed)
}

/// Checks the credentials against the registry as `docker login` does: `/v2/`, and
/// with a bearer challenge the token endpoint, both with HTTP basic auth.
async fn verify(t: &Transport, r: &ImageRef, user: &str, password: &str) -> Result<(), Error> {
    let url = t.base_url(r);
    let reach = |e| transport::from_reqwest(e, &t.registry);
    let http = t.http()?;
    let resp = http.get(&url).send().await.map_err(reach)?;
    let refused = || {
        Error::from(CredentialError::Refused {
            registry: t.registry.clone(),
            user: user.into(),
        })
    };
    if resp.status().is_success() {
        return Ok(());
    }
    if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Registry {
            registry: t.registry.clone(),
            detail: format!("GET {url} answered {}", resp.status()),
        });
    }
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bearer = http_auth::ChallengeParser::new(&challenge)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
    let check = match bearer {
        Some(c) => {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let realm = param("realm").ok_or_else(|| Error::Registry {
                registry: t.registry.clone(),
                detail: "its bearer challenge has no realm".into(),
            })?;
            let mut query = vec![("account".to_string(), user.to_string())];
            if let Some(s) = param("service") {
                query.push(("service".into(), s));
            }
            http.get(realm).query(&query)
        }
        None => http.get(&url),
    };
    let resp = check
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(reach)?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(refused()),
        s => Err(Error::Registry {
            registry: t.registry.clone(),
            detail: format!("its login endpoint answered {s}"),
        }),
    }
}

/// `minnow login REGISTRY`: checks the credentials with the registry, then stores them.
/// Returns the file they went to.
pub fn login(registry: &str, user: &str, password: &str, opts: &Options) -> Result<PathBuf, Error> {
    let r = ImageRef::parse(&format!("{registry}/minnow-login-check"))?;
    crate::runtime()?.block_on(async {
        let t = transport::connect(&r, opts).await?;
        verify(&t, &r, user, password).await
    })?;
    Ok(store(&r.auth_key(), user, password)?)
}

/// `minnow logout REGISTRY`; returns whether credentials were stored.
pub fn logout(registry: &str) -> Result<bool, Error> {
    let r = ImageRef::parse(&format!("{registry}/minnow-login-check"))?;
    Ok(forget(&r.auth_key())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored, read back through docker_credential, other fields kept, removed.
    /// (DOCKER_CONFIG is process-wide: this is the only test that sets it.)
    #[test]
    fn store_lookup_forget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"other.example":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        // SAFETY-free: set_var is safe in edition 2021; no other test reads DOCKER_CONFIG.
        std::env::set_var("DOCKER_CONFIG", dir.path());
        assert!(matches!(
            lookup("r.example:5000").unwrap(),
            (RegistryAuth::Anonymous, false)
        ));
        store("r.example:5000", "alice", "s3cr:t").unwrap();
        match lookup("r.example:5000").unwrap() {
            (RegistryAuth::Basic(u, p), true) => {
                assert_eq!((u.as_str(), p.as_str()), ("alice", "s3cr:t"))
            }
            other => panic!("{other:?}"),
        }
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(
            text.contains("psFormat") && text.contains("other.example"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "config.json is private");
        assert!(forget("r.example:5000").unwrap());
        assert!(!forget("r.example:5000").unwrap());
        assert!(matches!(
            lookup("r.example:5000").unwrap(),
            (RegistryAuth::Anonymous, false)
        ));
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = lookup("r.example:5000").unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("; "), "{e}");
    }
}
