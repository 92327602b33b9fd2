//! `minnow image push NAME REFERENCE`: the image's blobs as they are in the store (so
//! its digests stay the same), each only if the registry lacks it (HEAD first), mounted
//! from the repository it was pulled from when that is on the same registry, uploaded
//! otherwise (in parallel); the manifest goes last, so the tag never names an image
//! whose blobs are not all there.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::RegistryOperation;
use reqwest::header::HeaderValue;

use minnow_image::oci::{self, Descriptor};
use minnow_image::Store;

use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::transport::{self, classify, Transport};
use crate::{auth, Error, Options};

/// What a push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: String,
    pub blobs: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed {} {} ({} blobs: {} uploaded, {:.1} MiB; {} mounted; {} present, in {:.2} s)",
            self.reference,
            self.manifest_digest,
            self.blobs,
            self.uploaded,
            self.uploaded_bytes as f64 / (1u64 << 20) as f64,
            self.mounted,
            self.blobs - self.uploaded - self.mounted,
            self.elapsed.as_secs_f64()
        )
    }
}

enum Sent {
    Present,
    Mounted,
    Uploaded(u64),
}

struct Ctx<'a> {
    store: &'a Store,
    t: &'a Transport,
    r: &'a ImageRef,
    /// The repository on the same registry the image was pulled from.
    mount_from: Option<oci_client::Reference>,
    had_credentials: bool,
    progress: &'a Progress,
}

impl Ctx<'_> {
    fn err(&self, e: oci_client::errors::OciDistributionError) -> Error {
        classify(e, self.r, self.had_credentials)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<Sent, Error> {
        let reference = &self.r.reference;
        if self
            .t
            .client
            .blob_exists(reference, &desc.digest)
            .await
            .map_err(|e| self.err(e))?
        {
            return Ok(Sent::Present);
        }
        if let Some(from) = &self.mount_from {
            match self
                .t
                .client
                .mount_blob(reference, from, &desc.digest)
                .await
            {
                Ok(()) => return Ok(Sent::Mounted),
                Err(e) => log::debug!(
                    "mounting {} from {from} failed ({e}); uploading",
                    desc.digest
                ),
            }
        }
        let d = minnow_image::digest::Digest::parse(&desc.digest)?;
        let path = self.store.find_blob(&d).ok_or_else(|| {
            Error::Store(format!(
                "blob {} of the image is missing from the store; pull or import the image again",
                desc.digest
            ))
        })?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| Error::Io {
                what: "open",
                path: path.clone(),
                source,
            })?;
        let bar = self.progress.bar("push", &desc.digest, desc.size);
        let bar2 = bar.clone();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .inspect_ok(move |chunk| bar2.inc(chunk.len() as u64))
            .map_err(oci_client::errors::OciDistributionError::IoError);
        self.t
            .client
            .push_blob_stream(reference, body, &desc.digest, Some(desc.size))
            .await
            .map_err(|e| self.err(e))?;
        bar.finish_and_clear();
        Ok(Sent::Uploaded(desc.size))
    }
}

/// `minnow image push NAME REFERENCE`: see the module documentation.
pub fn push(store: &Store, name: &str, target: &str, opts: &Options) -> Result<Pushed, Error> {
    let start = Instant::now();
    let image = store.resolve(name)?;
    let manifest_bytes = store.manifest_bytes(&image)?;
    let r = ImageRef::parse(target)?;
    let media_type = image.manifest.media_type.clone().unwrap_or_else(|| {
        if image.manifest.config.media_type == oci::MEDIA_DOCKER_CONFIG {
            oci::MEDIA_DOCKER_MANIFEST.into()
        } else {
            oci::MEDIA_MANIFEST.into()
        }
    });
    let content_type = HeaderValue::from_str(&media_type).map_err(|_| Error::Malformed {
        reference: name.into(),
        what: "manifest media type",
        detail: media_type.clone(),
    })?;
    let source = store
        .entry(name)
        .ok()
        .and_then(|e| e.annotations.get(oci::SOURCE).cloned())
        .and_then(|s| ImageRef::parse(&s).ok());
    let mount_from = source
        .filter(|s| s.host() == r.host() && s.repository() != r.repository())
        .map(|s| s.reference);
    let mut blobs = vec![image.manifest.config.clone()];
    let mut seen = BTreeSet::from([image.manifest.config.digest.clone()]);
    for l in &image.manifest.layers {
        if seen.insert(l.digest.clone()) {
            blobs.push(l.clone());
        }
    }
    // Largest first: the big uploads start at once, and a small one never holds a slot
    // that the last big one waits for.
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    let (auth, had_credentials) = auth::lookup(&r.auth_key())?;
    crate::runtime()?.block_on(async {
        let t = transport::connect(&r, opts).await?;
        if t.challenged {
            t.client
                .auth(&r.reference, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| classify(e, &r, had_credentials))?;
        }
        let progress = Progress::new(opts.progress);
        let ctx = Ctx {
            store,
            t: &t,
            r: &r,
            mount_from,
            had_credentials,
            progress: &progress,
        };
        let mut pushed = Pushed {
            reference: target.into(),
            manifest_digest: image.manifest_digest.to_string(),
            blobs: blobs.len(),
            uploaded: 0,
            uploaded_bytes: 0,
            mounted: 0,
            elapsed: Duration::ZERO,
        };
        let mut sends =
            stream::iter(blobs.iter().map(|b| ctx.blob(b))).buffer_unordered(opts.jobs());
        while let Some(sent) = sends.next().await {
            match sent? {
                Sent::Present => {}
                Sent::Mounted => pushed.mounted += 1,
                Sent::Uploaded(n) => {
                    pushed.uploaded += 1;
                    pushed.uploaded_bytes += n;
                }
            }
        }
        drop(sends);
        t.client
            .push_manifest_raw(&r.reference, manifest_bytes, content_type)
            .await
            .map_err(|e| classify(e, &r, had_credentials))?;
        pushed.elapsed = start.elapsed();
        Ok(pushed)
    })
}
