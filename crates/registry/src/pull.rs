//! `minnow image pull`: manifest (through an image index to one platform's), config and
//! layers into the store, every blob's digest and size checked before anything is
//! named. Blobs the store has are not fetched; the others are fetched in parallel, each
//! to a temporary file that is hashed on the way and, once verified, moved to
//! `incoming/`. The image is named last ([`Store::name_manifest`]), so an interrupted
//! pull names nothing and leaves its verified blobs for the next pull.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use oci_client::RegistryOperation;
use sha2::{Digest as _, Sha256};

use minnow_image::compress::Compression;
use minnow_image::digest::Digest;
use minnow_image::ingest::{check_reference_name, IngestError};
use minnow_image::oci::{self, Descriptor, Manifest, PlatformIndex};
use minnow_image::Store;

use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::transport::{self, classify, Transport};
use crate::{auth, Error, Options};

/// The manifest media types a pull asks for.
const ACCEPT: &[&str] = &[
    oci::MEDIA_MANIFEST,
    oci::MEDIA_INDEX,
    oci::MEDIA_DOCKER_MANIFEST,
    oci::MEDIA_DOCKER_LIST,
];

/// What `pull` was asked for beyond the registry options.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// The name in the store [default: the reference as given].
    pub name: Option<String>,
    /// `os/arch[/variant]` picked from an image index [default: linux/amd64].
    pub platform: Option<String>,
}

/// What a pull did.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub name: String,
    pub manifest_digest: Digest,
    /// The image index the manifest was picked from, if the reference named one.
    pub index_digest: Option<String>,
    pub layers: usize,
    /// Blobs fetched (the others were in the store) and their bytes.
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Config and layer bytes of the image.
    pub total_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pulled {} {} ({} layers, {:.1} MiB; fetched {} blobs, {:.1} MiB, in {:.2} s)",
            self.name,
            self.manifest_digest,
            self.layers,
            self.total_bytes as f64 / (1u64 << 20) as f64,
            self.fetched,
            self.fetched_bytes as f64 / (1u64 << 20) as f64,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A platform as `--platform` gives it.
#[derive(Clone, Debug, PartialEq)]
struct Platform {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl Platform {
    fn parse(s: Option<&str>) -> Result<Platform, Error> {
        let s = s.unwrap_or("linux/amd64");
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(Error::BadPlatform(s.to_string())),
        }
    }

    fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    fn matches(&self, p: &oci::Platform) -> bool {
        p.os == self.os
            && p.architecture == self.arch
            && (self.variant.is_none() || p.variant == self.variant)
    }
}

/// The media type of a manifest document: its `mediaType`, else told by its shape.
fn media_type_of(doc: &serde_json::Value) -> String {
    if let Some(m) = doc.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if doc.get("manifests").is_some() {
        oci::MEDIA_INDEX.into()
    } else if doc
        .pointer("/config/mediaType")
        .and_then(|m| m.as_str())
        .is_some_and(|m| m == oci::MEDIA_DOCKER_CONFIG)
    {
        oci::MEDIA_DOCKER_MANIFEST.into()
    } else {
        oci::MEDIA_MANIFEST.into()
    }
}

/// Removes partial downloads (`tmp/pull-<pid>-<n>`) of pulls that were killed.
fn clean_stale(store: &Store) {
    let Some(tmp) = store.scratch_path("x").parent().map(PathBuf::from) else {
        return;
    };
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix("pull-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid {
            if !minnow_host::pid_alive(pid) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Removes a temporary file unless it was handed on (a dropped, cancelled or failed
/// download leaves nothing).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// What every blob download of one pull shares, owned: each download runs as a task of
/// its own, so the runtime's two workers hash and write blobs side by side (on the
/// `block_on` thread they took turns: one core hashed and wrote all of them).
struct Shared {
    store: Store,
    client: oci_client::Client,
    r: ImageRef,
    had_credentials: bool,
}

impl Shared {
    fn mismatch(&self, what: &'static str, expected: &str, actual: String) -> Error {
        Error::DigestMismatch {
            registry: self.r.registry().into(),
            what,
            expected: expected.into(),
            actual,
        }
    }

    fn malformed(&self, what: &'static str, detail: impl ToString) -> Error {
        Error::Malformed {
            reference: self.r.to_string(),
            what,
            detail: detail.to_string(),
        }
    }

    fn size_mismatch(&self, what: &'static str, desc: &Descriptor, got: u64) -> Error {
        Error::SizeMismatch {
            registry: self.r.registry().into(),
            what,
            digest: desc.digest.clone(),
            got,
            want: desc.size,
        }
    }
}

/// The pieces of one pull.
struct Ctx<'a> {
    s: Arc<Shared>,
    store: &'a Store,
    t: &'a Transport,
    r: &'a ImageRef,
    had_credentials: bool,
    progress: &'a Progress,
}

impl Ctx<'_> {
    fn mismatch(&self, what: &'static str, expected: &str, actual: String) -> Error {
        self.s.mismatch(what, expected, actual)
    }

    fn malformed(&self, what: &'static str, detail: impl ToString) -> Error {
        self.s.malformed(what, detail)
    }

    /// Downloads one blob as a task of its own (see [`Shared`]); returns the bytes fetched.
    async fn blob(&self, desc: &Descriptor, what: &'static str) -> Result<u64, Error> {
        let bar = self.progress.bar("pull", &desc.digest, desc.size);
        tokio::spawn(blob(self.s.clone(), desc.clone(), what, bar))
            .await
            .map_err(|e| Error::Registry {
                registry: self.r.registry().into(),
                detail: format!("the download of blob {} stopped: {e}", desc.digest),
            })?
    }

    /// Fetches a manifest (by the reference, or by digest) and checks its digest against
    /// the one asked for.
    async fn manifest(
        &self,
        reference: &oci_client::Reference,
        want: Option<&Descriptor>,
    ) -> Result<(Vec<u8>, Digest), Error> {
        let (body, _) = self
            .t
            .client
            .pull_manifest_raw(
                reference,
                &oci_client::secrets::RegistryAuth::Anonymous,
                ACCEPT,
            )
            .await
            .map_err(|e| match e {
                oci_client::errors::OciDistributionError::DigestError(d) => {
                    self.malformed("manifest", d)
                }
                e => classify(e, self.r, self.had_credentials),
            })?;
        let actual = Digest::of(&body);
        let expected = want
            .map(|d| d.digest.clone())
            .or(reference.digest().map(String::from));
        if let Some(expected) = expected {
            if expected != actual.to_string() {
                return Err(self.mismatch("manifest", &expected, actual.to_string()));
            }
        }
        if let Some(want) = want {
            if want.size != body.len() as u64 {
                return Err(Error::SizeMismatch {
                    registry: self.r.registry().into(),
                    what: "manifest",
                    digest: want.digest.clone(),
                    got: body.len() as u64,
                    want: want.size,
                });
            }
        }
        Ok((body.to_vec(), actual))
    }

    /// Stores bytes already verified (a manifest) in `incoming/`.
    fn small_blob(&self, data: &[u8], d: &Digest) -> Result<(), Error> {
        if self.store.has_blob(d) {
            return Ok(());
        }
        let tmp = self.store.scratch_path("pull");
        let mut guard = TmpGuard(Some(tmp.clone()));
        fs::write(&tmp, data).map_err(|e| Error::write(&tmp, &d.to_string(), e))?;
        self.store.put_verified(&tmp, d)?;
        guard.0 = None;
        Ok(())
    }
}

/// Downloads one blob to a temporary file, hashing and counting it; moves it to
/// `incoming/` once digest and size match. Returns the bytes fetched.
async fn blob(
    s: Arc<Shared>,
    desc: Descriptor,
    what: &'static str,
    bar: indicatif::ProgressBar,
) -> Result<u64, Error> {
    let d = Digest::parse(&desc.digest).map_err(|e| s.malformed("manifest", e))?;
    let tmp = s.store.scratch_path("pull");
    let mut guard = TmpGuard(Some(tmp.clone()));
    // Asked as the range from byte 0: a registry that answers 206 sends the whole blob
    // without oci-client hashing it a second time (this loop hashes every byte and
    // checks digest and size); one that answers 200 gets oci-client's check as well.
    let mut body = match s
        .client
        .pull_blob_stream_partial(&s.r.reference, desc.digest.as_str(), 0, None)
        .await
        .map_err(|e| classify(e, &s.r, s.had_credentials))?
    {
        oci_client::client::BlobResponse::Full(b)
        | oci_client::client::BlobResponse::Partial(b) => b,
    };
    let file = File::create(&tmp).map_err(|e| Error::write(&tmp, &desc.digest, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut n: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // oci-client's own check fails the stream's end on a digest mismatch;
                // say what the content hashed to.
                let actual = format!("sha256:{}", hex::encode(hasher.clone().finalize()));
                if n == desc.size && actual != desc.digest {
                    return Err(s.mismatch(what, &desc.digest, actual));
                }
                return Err(
                    match e.into_inner().map(|b| b.downcast::<reqwest::Error>()) {
                        Some(Ok(re)) => transport::from_reqwest(*re, s.r.registry()),
                        Some(Err(other)) => Error::Registry {
                            registry: s.r.registry().into(),
                            detail: format!("while sending blob {}: {other}", desc.digest),
                        },
                        None => Error::Registry {
                            registry: s.r.registry().into(),
                            detail: format!("while sending blob {}: stream failed", desc.digest),
                        },
                    },
                );
            }
        };
        n += chunk.len() as u64;
        if n > desc.size {
            return Err(s.size_mismatch(what, &desc, n));
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| Error::write(&tmp, &desc.digest, e))?;
        bar.inc(chunk.len() as u64);
    }
    out.flush()
        .map_err(|e| Error::write(&tmp, &desc.digest, e))?;
    drop(out);
    bar.finish_and_clear();
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest {
        return Err(s.mismatch(what, &desc.digest, actual));
    }
    if n != desc.size {
        return Err(s.size_mismatch(what, &desc, n));
    }
    s.store.put_verified(&tmp, &d)?;
    guard.0 = None;
    Ok(n)
}

/// Refuses an image whose config names another platform than the one asked for.
fn check_platform(
    store: &Store,
    reference: &ImageRef,
    config: &Digest,
    want: &Platform,
) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    struct Cfg {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let Some(path) = store.find_blob(config) else {
        return Ok(());
    };
    let data = fs::read(&path).map_err(|source| Error::Io {
        what: "read",
        path: path.clone(),
        source,
    })?;
    let cfg: Cfg = serde_json::from_slice(&data).map_err(|e| Error::Malformed {
        reference: reference.to_string(),
        what: "image config",
        detail: e.to_string(),
    })?;
    let have = oci::Platform {
        os: cfg.os,
        architecture: cfg.architecture,
        variant: cfg.variant,
    };
    if have.os.is_empty() || have.architecture.is_empty() || want.matches(&have) {
        return Ok(());
    }
    Err(Error::NoPlatform {
        reference: reference.to_string(),
        want: want.label(),
        have: have.label(),
    })
}

/// The annotations a pulled image's `index.json` entry gets.
fn annotations(r: &ImageRef, index_digest: Option<&String>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        oci::SOURCE.to_string(),
        format!("{}/{}", r.registry(), r.repository()),
    );
    if let Some(i) = index_digest {
        a.insert(oci::INDEX_DIGEST.to_string(), i.clone());
    }
    a.insert(oci::CREATED.to_string(), minnow_image::now_rfc3339());
    a
}

/// A blob of the store whose content hashes to its digest.
fn local_verified(store: &Store, d: &Digest) -> Option<Vec<u8>> {
    let data = fs::read(store.find_blob(d)?).ok()?;
    (Digest::of(&data) == *d).then_some(data)
}

/// A warm pull: one HEAD asks the registry which manifest the reference names now (as
/// Docker asks first); if the store has that manifest and every blob it needs, the
/// image is named without building the full client or fetching anything. `None`: go
/// the full way (which also reports any error).
async fn warm(
    p: &transport::Probe,
    r: &ImageRef,
    store: &Store,
    name: &str,
    platform: &Platform,
    auth: &oci_client::secrets::RegistryAuth,
) -> Option<Result<Pulled, Error>> {
    let http = p.http().ok()?;
    let at = r
        .reference
        .digest()
        .or(r.reference.tag())
        .unwrap_or("latest");
    let url = format!(
        "{}://{}/v2/{}/manifests/{at}",
        p.scheme,
        r.host(),
        r.repository()
    );
    let mut req = http
        .head(url)
        .header(reqwest::header::ACCEPT, ACCEPT.join(", "));
    if let oci_client::secrets::RegistryAuth::Basic(u, pw) = auth {
        req = req.basic_auth(u, Some(pw));
    }
    let resp = req.send().await.ok()?;
    if resp.status() != reqwest::StatusCode::OK {
        return None;
    }
    let top = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok())?;
    if r.reference.digest().is_some_and(|d| d != top.to_string()) {
        return None;
    }
    let top_bytes = local_verified(store, &top)?;
    let doc: serde_json::Value = serde_json::from_slice(&top_bytes).ok()?;
    let (digest, bytes, media_type, index_digest) = if oci::is_index(&media_type_of(&doc)) {
        let index: PlatformIndex = serde_json::from_value(doc).ok()?;
        let found = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|pl| platform.matches(pl)))?;
        let d = Digest::parse(&found.desc.digest).ok()?;
        let b = local_verified(store, &d)?;
        (d, b, found.desc.media_type.clone(), Some(top.to_string()))
    } else {
        let mt = media_type_of(&doc);
        (top, top_bytes, mt, None)
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
    let mut all = vec![digest.clone(), Digest::parse(&manifest.config.digest).ok()?];
    for l in &manifest.layers {
        all.push(Digest::parse(&l.digest).ok()?);
    }
    if !all.iter().all(|d| store.has_blob(d)) {
        return None;
    }
    if index_digest.is_none() {
        if let Err(e) = check_platform(store, r, &all[1], platform) {
            return Some(Err(e));
        }
    }
    let desc = Descriptor {
        media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
    };
    match store.name_manifest(name, &desc, &all, annotations(r, index_digest.as_ref())) {
        Ok(()) => Some(Ok(Pulled {
            name: name.to_string(),
            manifest_digest: digest,
            index_digest,
            layers: manifest.layers.len(),
            fetched: 0,
            fetched_bytes: 0,
            total_bytes: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            elapsed: Duration::ZERO,
        })),
        Err(IngestError::Missing(_)) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// `minnow image pull REFERENCE`: see the module documentation.
pub fn pull(
    store: &Store,
    reference: &str,
    pull: &PullOptions,
    opts: &Options,
) -> Result<Pulled, Error> {
    let start = Instant::now();
    let r = ImageRef::parse(reference)?;
    let name = pull.name.clone().unwrap_or_else(|| reference.to_string());
    check_reference_name(&name)?;
    let platform = Platform::parse(pull.platform.as_deref())?;
    clean_stale(store);
    let (auth, had_credentials) = auth::lookup(&r.auth_key())?;
    crate::runtime()?.block_on(async {
        let probe = transport::probe(&r, opts).await?;
        if let Some(done) = warm(&probe, &r, store, &name, &platform, &auth).await {
            let mut pulled = done?;
            pulled.elapsed = start.elapsed();
            return Ok(pulled);
        }
        let t = probe.connect(&r)?;
        if t.challenged {
            t.client
                .auth(&r.reference, &auth, RegistryOperation::Pull)
                .await
                .map_err(|e| classify(e, &r, had_credentials))?;
        }
        let progress = Progress::new(opts.progress);
        let ctx = Ctx {
            s: Arc::new(Shared {
                store: store.clone(),
                client: t.client.clone(),
                r: r.clone(),
                had_credentials,
            }),
            store,
            t: &t,
            r: &r,
            had_credentials,
            progress: &progress,
        };
        let mut pulled = pull_async(&ctx, &name, &platform, opts.jobs()).await?;
        pulled.elapsed = start.elapsed();
        Ok(pulled)
    })
}

async fn pull_async(
    ctx: &Ctx<'_>,
    name: &str,
    platform: &Platform,
    jobs: usize,
) -> Result<Pulled, Error> {
    let r = ctx.r;
    let (top, top_digest) = ctx.manifest(&r.reference, None).await?;
    let doc: serde_json::Value =
        serde_json::from_slice(&top).map_err(|e| ctx.malformed("manifest", e))?;
    let top_type = media_type_of(&doc);
    let (bytes, digest, media_type, index_digest) = if oci::is_index(&top_type) {
        let index: PlatformIndex =
            serde_json::from_value(doc).map_err(|e| ctx.malformed("image index", e))?;
        let found = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)));
        let Some(found) = found else {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(|p| p.label()))
                .collect();
            return Err(Error::NoPlatform {
                reference: r.to_string(),
                want: platform.label(),
                have: if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                },
            });
        };
        let (b, d) = ctx
            .manifest(&r.at_digest(&found.desc.digest), Some(&found.desc))
            .await?;
        let mt = found.desc.media_type.clone();
        (b, d, mt, Some(top_digest.to_string()))
    } else {
        (top, top_digest, top_type, None)
    };
    if media_type != oci::MEDIA_MANIFEST && media_type != oci::MEDIA_DOCKER_MANIFEST {
        return Err(Error::UnsupportedManifest {
            reference: r.to_string(),
            media_type,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ctx.malformed("manifest", e))?;
    for l in &manifest.layers {
        Compression::of(&l.media_type).map_err(|source| Error::UnsupportedLayer {
            reference: r.to_string(),
            source,
        })?;
    }
    let mut wanted: Vec<(Descriptor, &'static str)> = vec![(manifest.config.clone(), "config")];
    let mut seen = BTreeSet::new();
    seen.insert(manifest.config.digest.clone());
    for l in &manifest.layers {
        if seen.insert(l.digest.clone()) {
            wanted.push((l.clone(), "layer"));
        }
    }
    let mut all = vec![digest.clone()];
    for (d, _) in &wanted {
        all.push(Digest::parse(&d.digest).map_err(|e| ctx.malformed("manifest", e))?);
    }
    ctx.small_blob(&bytes, &digest)?;
    let desc = Descriptor {
        media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
    };
    let annotations = annotations(r, index_digest.as_ref());
    let (mut fetched, mut fetched_bytes) = (0, 0);
    // The config first: it says the image's platform, checked before any layer comes.
    let config_digest =
        Digest::parse(&manifest.config.digest).map_err(|e| ctx.malformed("manifest", e))?;
    if !ctx.store.has_blob(&config_digest) {
        fetched_bytes += ctx.blob(&manifest.config, "config").await?;
        fetched += 1;
    }
    // (An index entry's platform is taken as it says; a lone manifest's config is asked.)
    if index_digest.is_none() {
        check_platform(ctx.store, ctx.r, &config_digest, platform)?;
    }
    // A blob the store had may be collected by an `image rm` running meanwhile: then
    // naming fails with the missing ones, which are fetched again.
    for _attempt in 0..3 {
        let missing: Vec<&(Descriptor, &'static str)> = wanted
            .iter()
            .filter(|(d, _)| Digest::parse(&d.digest).is_ok_and(|d| !ctx.store.has_blob(&d)))
            .collect();
        let mut downloads = stream::iter(missing.into_iter().map(|(d, what)| ctx.blob(d, what)))
            .buffer_unordered(jobs);
        while let Some(res) = downloads.next().await {
            fetched_bytes += res?;
            fetched += 1;
        }
        match ctx
            .store
            .name_manifest(name, &desc, &all, annotations.clone())
        {
            Ok(()) => {
                return Ok(Pulled {
                    name: name.to_string(),
                    manifest_digest: digest,
                    index_digest,
                    layers: manifest.layers.len(),
                    fetched,
                    fetched_bytes,
                    total_bytes: manifest.config.size
                        + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
                    elapsed: Duration::ZERO,
                });
            }
            Err(IngestError::Missing(m)) if !m.contains(&digest) => continue,
            Err(IngestError::Missing(_)) => ctx.small_blob(&bytes, &digest)?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Store(format!(
        "the store kept losing blobs of {name} while pulling (is `minnow image rm` running in a loop?); pull again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse(None).unwrap();
        assert_eq!(p.label(), "linux/amd64");
        let arm = Platform::parse(Some("linux/arm64/v8")).unwrap();
        let entry = |arch: &str, variant: Option<&str>| oci::Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(String::from),
        };
        assert!(arm.matches(&entry("arm64", Some("v8"))));
        assert!(!arm.matches(&entry("arm64", None)));
        assert!(Platform::parse(Some("linux/arm64"))
            .unwrap()
            .matches(&entry("arm64", Some("v8"))));
        for bad in ["linux", "linux/", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_types() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(media_type_of(&j(r#"{"manifests":[]}"#)), oci::MEDIA_INDEX);
        assert_eq!(
            media_type_of(&j(r#"{"layers":[],"config":{}}"#)),
            oci::MEDIA_MANIFEST
        );
        assert_eq!(
            media_type_of(&j(&format!(
                r#"{{"config":{{"mediaType":"{}"}}}}"#,
                oci::MEDIA_DOCKER_CONFIG
            ))),
            oci::MEDIA_DOCKER_MANIFEST
        );
        assert_eq!(media_type_of(&j(r#"{"mediaType":"x/y"}"#)), "x/y");
    }
}
