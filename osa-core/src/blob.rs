//! Blobs (run inputs, record files, step outputs, hook logs, deploy payloads) through
//! `object_store`.
//!
//! Keys are built only from validated identifiers and positions ([`BlobKeys`]); a
//! locator read back from the database is checked against the node's prefixes before
//! it is used ([`Blobs::read_log`]), never trusted as a path.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::id::{DeploymentId, Digest, FileName, ValidationRunId};
use crate::{Error, Result};

/// Key layout of OSA's blobs.
#[derive(Debug, Clone, Copy)]
pub struct BlobKeys;

impl BlobKeys {
    /// The stored inputs of a run.
    pub fn run_inputs(run: ValidationRunId) -> Path {
        Path::from_iter(["runs".to_string(), run.to_string(), "inputs.json".into()])
    }

    /// A file of the record at `position` in a run.
    pub fn run_file(run: ValidationRunId, position: usize, name: &FileName) -> Path {
        Path::from_iter([
            "runs".to_string(),
            run.to_string(),
            "files".into(),
            position.to_string(),
            name.to_string(),
        ])
    }

    /// The validated feature rows one execution of a step produced. Each execution has
    /// its own key: an execution whose commit loses (its lease expired and another
    /// worker committed the step) never overwrites what the committed one stored.
    pub fn step_outputs(run: ValidationRunId, step: u32, execution: uuid::Uuid) -> Path {
        Self::step_execution(run, step, execution, "outputs.json")
    }

    /// The captured log of one execution of a step's hook (see
    /// [`step_outputs`](Self::step_outputs)).
    pub fn step_log(run: ValidationRunId, step: u32, execution: uuid::Uuid) -> Path {
        Self::step_execution(run, step, execution, "hook.log")
    }

    /// Whether `key` is where an execution of step `step` of `run` stores its outputs,
    /// or where a step stored them before executions had their own key (a locator read
    /// back from the database is checked before it is used).
    pub fn is_step_outputs(key: &Path, run: ValidationRunId, step: u32) -> bool {
        let parts: Vec<_> = key.parts().collect();
        match parts.as_slice() {
            [_, _, _, _, execution, _] => uuid::Uuid::try_parse(execution.as_ref())
                .is_ok_and(|execution| *key == Self::step_outputs(run, step, execution)),
            [_, _, _, _, _] => *key == Self::legacy_step_file(run, step, "outputs.json"),
            _ => false,
        }
    }

    /// Where a step kept its outputs and log before each execution had its own key
    /// (archives written then are still read).
    fn legacy_step_file(run: ValidationRunId, step: u32, name: &str) -> Path {
        Path::from_iter([
            "runs".to_string(),
            run.to_string(),
            "steps".into(),
            step.to_string(),
            name.to_string(),
        ])
    }

    fn step_execution(run: ValidationRunId, step: u32, execution: uuid::Uuid, name: &str) -> Path {
        Path::from_iter([
            "runs".to_string(),
            run.to_string(),
            "steps".into(),
            step.to_string(),
            execution.simple().to_string(),
            name.to_string(),
        ])
    }

    /// The canonical payload of a deployment.
    pub fn deployment_payload(id: DeploymentId) -> Path {
        Path::from_iter([
            "deployments".to_string(),
            id.to_string(),
            "payload.json".into(),
        ])
    }
}

/// A cloud store for a parsed scheme: its builder starts from the environment
/// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then the URL, then `options`, each key checked
/// (an unknown one is Invalid under its own name, not ignored).
fn cloud_store(
    scheme: object_store::ObjectStoreScheme,
    url: &str,
    options: Vec<(String, String)>,
) -> Result<(Arc<dyn ObjectStore>, Option<SignerOf>)> {
    use object_store::ObjectStoreScheme as S;
    #[allow(unused_macros)]
    macro_rules! build {
        ($builder:ty, $key:ty) => {{
            let mut builder = <$builder>::from_env().with_url(url);
            for (key, value) in options {
                let parsed: $key = key.parse().map_err(|_| {
                    Error::invalid(key.clone(), format!("not an option of {url}'s store"))
                })?;
                builder = builder.with_config(parsed, value);
            }
            let store = Arc::new(
                builder
                    .build()
                    .map_err(|e| Error::invalid("url", format!("{url}: {e}")))?,
            );
            Ok((store.clone() as Arc<dyn ObjectStore>, Some(store as _)))
        }};
    }
    let _ = &options;
    match scheme {
        #[cfg(feature = "s3")]
        S::AmazonS3 => build!(
            object_store::aws::AmazonS3Builder,
            object_store::aws::AmazonS3ConfigKey
        ),
        #[cfg(feature = "gcs")]
        S::GoogleCloudStorage => build!(
            object_store::gcp::GoogleCloudStorageBuilder,
            object_store::gcp::GoogleConfigKey
        ),
        #[cfg(feature = "azure")]
        S::MicrosoftAzure => build!(
            object_store::azure::MicrosoftAzureBuilder,
            object_store::azure::AzureConfigKey
        ),
        other => {
            let feature = match other {
                S::AmazonS3 => "s3",
                S::GoogleCloudStorage => "gcs",
                _ => "azure",
            };
            Err(Error::invalid(
                "url",
                format!("{url}: this build has no support for it (cargo feature `{feature}`)"),
            ))
        }
    }
}

/// What [`Blobs::put_stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Streamed {
    /// The blob is stored.
    Stored {
        /// Its size in bytes.
        size: u64,
        /// Its sha256.
        sha256: Digest,
    },
    /// The stream went past the limit; nothing is stored.
    TooLarge {
        /// Bytes read before stopping (the limit plus one).
        read: u64,
    },
}

/// An object store plus the few operations OSA needs, with errors mapped.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory.
    local: Option<LocalStore>,
    /// The cloud store under `store` and the prefix `store` adds, when it can sign
    /// URLs (S3, GCS, Azure).
    signer: Option<(SignerOf, Path)>,
}

/// What signs URLs for a cloud store (nothing can without a cloud feature).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
type SignerOf = Arc<dyn object_store::signer::Signer>;
#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
type SignerOf = std::convert::Infallible;

/// A local directory store and its root (canonical).
#[derive(Debug, Clone)]
struct LocalStore {
    fs: Arc<object_store::local::LocalFileSystem>,
    root: std::path::PathBuf,
}

impl LocalStore {
    /// The file of `key` when it is a regular file that resolves inside the root: no
    /// symlink, neither the file nor a directory on its way, leads out of the store
    /// (files can be placed in a local store from outside, an upload directory say).
    fn contained_file(&self, key: &Path) -> Option<std::path::PathBuf> {
        let path = self.fs.path_to_filesystem(key).ok()?;
        if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_file()) {
            return None;
        }
        let resolved = std::fs::canonicalize(&path).ok()?;
        resolved.starts_with(&self.root).then_some(resolved)
    }
}

fn unavailable(action: &'static str, key: &Path, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found("blob", key),
        other => Error::Unavailable {
            what: "object store",
            detail: format!("{action} {key}: {other}"),
            source: Some(Box::new(other)),
        },
    }
}

impl Blobs {
    /// Wraps any object store (local filesystem, memory, S3, ...).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Blobs {
            store,
            local: None,
            signer: None,
        }
    }

    /// Blobs in a local directory (created if missing).
    pub fn local(root: impl AsRef<std::path::Path>) -> Result<Self> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| Error::Unavailable {
            what: "object store",
            detail: format!("creating {}: {e}", root.display()),
            source: Some(Box::new(e)),
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root).map_err(|e| {
            Error::Unavailable {
                what: "object store",
                detail: format!("opening {}: {e}", root.display()),
                source: Some(Box::new(e)),
            }
        })?;
        let root = std::fs::canonicalize(root).map_err(|e| Error::Unavailable {
            what: "object store",
            detail: format!("resolving {}: {e}", root.display()),
            source: Some(Box::new(e)),
        })?;
        let store = Arc::new(store);
        Ok(Blobs {
            store: store.clone(),
            local: Some(LocalStore { fs: store, root }),
            signer: None,
        })
    }

    /// The store a URL names, with object_store's options (credentials, endpoint,
    /// region, … as `aws_endpoint`, `aws_access_key_id`, `google_service_account`,
    /// …; the environment is read too, `AWS_*` say):
    ///
    /// | URL | store |
    /// |---|---|
    /// | `file:///srv/osa/blobs` (or a plain path) | a local directory, created if missing ([`Blobs::local`]) |
    /// | `memory://` | in memory (tests; gone with the process) |
    /// | `s3://bucket/prefix` | Amazon S3 or an S3-compatible server (cargo feature `s3`) |
    /// | `gs://bucket/prefix` | Google Cloud Storage (feature `gcs`) |
    /// | `az://container/prefix` | Azure Blob Storage (feature `azure`) |
    ///
    /// A path after the bucket is a prefix every key is stored under. An unknown
    /// scheme, a scheme this build has no feature for, or a bad option is Invalid
    /// with field `url` (or the option's name).
    pub fn from_url<K, V>(url: &str, options: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
            .collect();
        if !url.contains("://") {
            return Self::local(url);
        }
        let parsed =
            url::Url::parse(url).map_err(|e| Error::invalid("url", format!("{url}: {e}")))?;
        match parsed.scheme() {
            "file" => {
                if parsed
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(Error::invalid(
                        "url",
                        format!("{url}: a file URL names a local path (file:///path)"),
                    ));
                }
                let path = parsed
                    .to_file_path()
                    .map_err(|()| Error::invalid("url", format!("{url}: not a local path")))?;
                if let Some((key, _)) = options.first() {
                    return Err(Error::invalid(
                        key.clone(),
                        "a local directory takes no options",
                    ));
                }
                Self::local(path)
            }
            "memory" => Ok(Self::new(Arc::new(object_store::memory::InMemory::new()))),
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" | "adl" => {
                let (scheme, prefix) = object_store::ObjectStoreScheme::parse(&parsed)
                    .map_err(|e| Error::invalid("url", format!("{url}: {e}")))?;
                let prefix = Path::parse(prefix)
                    .map_err(|e| Error::invalid("url", format!("{url}: {e}")))?;
                let (store, signer) = cloud_store(scheme, url, options)?;
                let mut blobs = if prefix.as_ref().is_empty() {
                    Self::new(store)
                } else {
                    Self::new(Arc::new(object_store::prefix::PrefixStore::new(
                        store,
                        prefix.clone(),
                    )))
                };
                blobs.signer = signer.map(|signer| (signer, prefix));
                Ok(blobs)
            }
            other => Err(Error::invalid(
                "url",
                format!("{url}: unknown scheme `{other}` (file, memory, s3, gs, az)"),
            )),
        }
    }

    /// A URL that lets whoever holds it `PUT` the blob at `key` directly into the
    /// store for `expires_in`, without OSA's credentials; `None` when the store cannot
    /// sign URLs (a local directory, memory, or a store given to [`Blobs::new`]).
    ///
    /// A presigned `PUT` does not bound the size of what is put: whoever reads the key
    /// afterwards checks it (`POST /validations` refuses a file over its limit).
    pub async fn presigned_put(
        &self,
        key: &Path,
        expires_in: std::time::Duration,
    ) -> Result<Option<url::Url>> {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        if let Some((signer, prefix)) = &self.signer {
            let full: Path = prefix.parts().chain(key.parts()).collect();
            return signer
                .signed_url(http::Method::PUT, &full, expires_in)
                .await
                .map(Some)
                .map_err(|e| unavailable("signing a URL for", key, e));
        }
        let _ = (key, expires_in);
        Ok(None)
    }

    /// The file holding the blob at `key`, when the store is a local directory made by
    /// [`Blobs::local`] and the blob is a regular file inside it (not reached through
    /// a symlink, which could point anywhere): readers may copy it from there instead
    /// of reading it into memory and writing it out again.
    pub fn local_file(&self, key: &Path) -> Option<std::path::PathBuf> {
        self.local.as_ref()?.contained_file(key)
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes `bytes` at `key` (replacing it).
    pub async fn put(&self, key: &Path, bytes: impl Into<Bytes>) -> Result<()> {
        self.store
            .put(key, bytes.into().into())
            .await
            .map(drop)
            .map_err(|e| unavailable("writing", key, e))
    }

    /// Starts reading the blob at `key` (see [`Blobs::get`] for what is NotFound).
    async fn open(&self, key: &Path) -> Result<object_store::GetResult> {
        if let Some(local) = &self.local
            && local.contained_file(key).is_none()
        {
            return Err(Error::not_found("blob", key));
        }
        self.store
            .get(key)
            .await
            .map_err(|e| unavailable("reading", key, e))
    }

    /// Reads the blob at `key`; NotFound when absent (in a local directory also when
    /// it is not a regular file inside it, see [`Blobs::local_file`]).
    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        let result = self.open(key).await?;
        result
            .bytes()
            .await
            .map_err(|e| unavailable("reading", key, e))
    }

    /// Streams `reader` into the blob at `key`, at most `limit` bytes, hashing it as
    /// it goes; large blobs go up in parts (multipart uploads on cloud stores), so
    /// memory stays bounded whatever the size. Over the limit, nothing is stored and
    /// [`Streamed::TooLarge`] says how much was read (at most `limit + 1`).
    pub async fn put_stream(
        &self,
        key: &Path,
        reader: impl tokio::io::AsyncRead + Unpin + Send,
        limit: u64,
    ) -> Result<Streamed> {
        use sha2::Digest as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut reader = reader.take(limit.saturating_add(1));
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut chunk = vec![0u8; 64 * 1024];
        let outcome: std::io::Result<bool> = async {
            loop {
                let n = reader.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(true);
                }
                size += n as u64;
                if size > limit {
                    return Ok(false);
                }
                hasher.update(&chunk[..n]);
                writer.write_all(&chunk[..n]).await?;
            }
        }
        .await;
        match outcome {
            Ok(true) => {
                writer.shutdown().await.map_err(|e| Error::Unavailable {
                    what: "object store",
                    detail: format!("writing {key}: {e}"),
                    source: Some(Box::new(e)),
                })?;
                Ok(Streamed::Stored {
                    size,
                    sha256: Digest::from_hasher(hasher),
                })
            }
            Ok(false) => {
                let _ = writer.abort().await;
                Ok(Streamed::TooLarge { read: size })
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(Error::Unavailable {
                    what: "object store",
                    detail: format!("streaming {key}: {e}"),
                    source: Some(Box::new(e)),
                })
            }
        }
    }

    /// Streams the blob at `key` into a new file at `path` (chunk by chunk, never
    /// whole in memory); NotFound when absent. Returns its size.
    pub async fn get_to_file(&self, key: &Path, path: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;

        let result = self.open(key).await?;
        let io = |e: std::io::Error| Error::Unavailable {
            what: "batch directory",
            detail: format!("writing {}: {e}", path.display()),
            source: Some(Box::new(e)),
        };
        let mut file = tokio::fs::File::create_new(path).await.map_err(io)?;
        let mut stream = result.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| unavailable("reading", key, e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(size)
    }

    /// Copies a blob within the store. In a local directory the bytes are copied (the
    /// store's own copy makes a hard link, through which a later change of the source
    /// would change the copy) and the source must be a regular file: a symlink placed
    /// in the directory from outside is refused as NotFound, not followed.
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        let Some(local) = &self.local else {
            return self
                .store
                .copy(from, to)
                .await
                .map_err(|e| unavailable("copying", from, e));
        };
        let source = local
            .contained_file(from)
            .ok_or_else(|| Error::not_found("blob", from))?;
        let target = local
            .fs
            .path_to_filesystem(to)
            .map_err(|e| unavailable("copying to", to, e))?;
        let (from, to) = (from.clone(), to.clone());
        tokio::task::spawn_blocking(move || copy_regular_file(&source, &target))
            .await
            .map_err(|e| Error::internal(format!("copying {from}: {e}")))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::not_found("blob", &from),
                _ => Error::Unavailable {
                    what: "object store",
                    detail: format!("copying {from} to {to}: {e}"),
                    source: Some(Box::new(e)),
                },
            })
    }

    /// The size in bytes of the blob at `key`; NotFound when absent.
    pub async fn size(&self, key: &Path) -> Result<u64> {
        self.store
            .head(key)
            .await
            .map(|meta| meta.size)
            .map_err(|e| unavailable("reading the size of", key, e))
    }

    /// Deletes the blob at `key` (absent is fine).
    pub async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable("deleting", key, e)),
        }
    }

    /// Writes a JSON value.
    pub async fn put_json<T: serde::Serialize>(&self, key: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("serialising {key}: {e}")))?;
        self.put(key, bytes).await
    }

    /// Reads a JSON value.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &Path) -> Result<T> {
        let bytes = self.get(key).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("stored blob {key} does not decode: {e}")))
    }

    /// Reads a hook log by the locator stored on a hook run. The locator must be a
    /// step log key of OSA's layout; anything else (another prefix, `..`, an absolute
    /// path) is refused as Invalid.
    pub async fn read_log(&self, log_ref: &str) -> Result<Bytes> {
        let parts: Vec<&str> = log_ref.split('/').collect();
        // With the execution segment, or without it (archives written before it).
        let canonical = match parts.as_slice() {
            ["runs", run, "steps", step, execution, "hook.log"] => {
                match (run.parse(), step.parse(), uuid::Uuid::try_parse(execution)) {
                    (Ok(run), Ok(step), Ok(execution)) => {
                        Some(BlobKeys::step_log(run, step, execution).to_string())
                    }
                    _ => None,
                }
            }
            ["runs", run, "steps", step, "hook.log"] => {
                match (run.parse::<ValidationRunId>(), step.parse::<u32>()) {
                    (Ok(run), Ok(step)) => {
                        Some(BlobKeys::legacy_step_file(run, step, "hook.log").to_string())
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        // Only the spelling OSA writes (no other forms of the same run, step or
        // execution).
        if canonical.as_deref() != Some(log_ref) {
            return Err(Error::invalid(
                "log_ref",
                "not a hook log locator of this node",
            ));
        }
        self.get(&Path::from(log_ref)).await
    }
}

/// Copies `source`, which must be a regular file (never followed through a symlink),
/// to `target` through a temporary file beside it, creating the target's directory.
fn copy_regular_file(source: &std::path::Path, target: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(source)?.file_type().is_symlink() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the source is a symlink",
        ));
    }
    let mut input = options.open(source).map_err(|e| {
        if cfg!(unix) && e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the source is a symlink")
        } else {
            e
        }
    })?;
    if !input.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the source is not a regular file",
        ));
    }
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the target has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let staged = dir.join(format!(".copy-{}", uuid::Uuid::new_v4().simple()));
    let copied = std::fs::File::create(&staged)
        .and_then(|mut output| std::io::copy(&mut input, &mut output))
        .and_then(|_| std::fs::rename(&staged, target));
    if copied.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_from_urls() {
        let dir = tempfile::tempdir().unwrap();
        let key = Path::from("a/b.txt");
        let none: [(&str, &str); 0] = [];
        for url in [
            format!("file://{}", dir.path().join("by-url").display()),
            dir.path().join("by-path").display().to_string(),
        ] {
            let blobs = Blobs::from_url(&url, none).unwrap();
            blobs.put(&key, "x").await.unwrap();
            assert!(
                blobs.local_file(&key).is_some(),
                "{url} is a local directory"
            );
        }
        assert!(dir.path().join("by-url/a/b.txt").is_file());
        assert!(dir.path().join("by-path/a/b.txt").is_file());

        let memory = Blobs::from_url("memory://", none).unwrap();
        memory.put(&key, "in memory").await.unwrap();
        assert_eq!(memory.get(&key).await.unwrap(), "in memory");
        assert!(memory.local_file(&key).is_none());

        let invalid = |url: &str, options: Vec<(&str, &str)>| {
            let err = Blobs::from_url(url, options).unwrap_err();
            match err {
                Error::Invalid { field, message } => format!("{field}: {message}"),
                other => panic!("{url}: {other:?}"),
            }
        };
        assert!(
            invalid("ftp://host/x", vec![]).starts_with("url: ftp://host/x: unknown scheme `ftp`")
        );
        assert!(invalid("file://elsewhere/x", vec![]).contains("local path"));
        let with_option = format!("file://{}", dir.path().display());
        assert!(invalid(&with_option, vec![("region", "x")]).starts_with("region: "));
        assert!(invalid("not a url://", vec![]).starts_with("url: "));
        if cfg!(feature = "s3") {
            let message = invalid("s3://bucket/prefix", vec![("aws_no_such_option", "1")]);
            assert!(message.starts_with("aws_no_such_option: "), "{message}");
        } else {
            let message = invalid("s3://bucket/prefix", vec![]);
            assert!(message.contains("cargo feature `s3`"), "{message}");
        }
        if !cfg!(feature = "gcs") {
            assert!(invalid("gs://bucket", vec![]).contains("cargo feature `gcs`"));
        }
        if !cfg!(feature = "azure") {
            assert!(invalid("az://container", vec![]).contains("cargo feature `azure`"));
        }
    }

    #[tokio::test]
    async fn local_and_memory_stores_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        for blobs in [
            Blobs::local(dir.path().join("store")).unwrap(),
            Blobs::from_url("memory://", [("", ""); 0]).unwrap(),
        ] {
            crate::testing::blobs::conformance(&blobs, scratch.path()).await;
        }
    }

    #[tokio::test]
    async fn round_trip_and_log_confinement() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let run = ValidationRunId::new_random();
        let key = BlobKeys::step_log(run, 2, uuid::Uuid::new_v4());
        blobs.put(&key, "hello").await.unwrap();
        assert_eq!(
            blobs.read_log(key.as_ref()).await.unwrap(),
            Bytes::from("hello")
        );
        // Logs written before executions had their own key stay readable.
        let legacy = format!("runs/{run}/steps/2/hook.log");
        blobs
            .put(&Path::from(legacy.as_str()), "old")
            .await
            .unwrap();
        assert_eq!(blobs.read_log(&legacy).await.unwrap(), Bytes::from("old"));
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "runs/x/steps/1/hook.log",
            &format!("runs/{run}/steps/1/not-an-execution/hook.log"),
            &format!("runs/{run}/steps/1/../../hook.log"),
            "deployments/a/payload.json",
        ] {
            assert!(blobs.read_log(bad).await.is_err(), "{bad}");
        }
        let missing = blobs
            .read_log(BlobKeys::step_log(run, 3, uuid::Uuid::new_v4()).as_ref())
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), crate::ErrorKind::NotFound);
        let name = FileName::new("a b?.cif").unwrap();
        let file = BlobKeys::run_file(run, 0, &name);
        blobs.put(&file, "x").await.unwrap();
        assert_eq!(blobs.get(&file).await.unwrap(), Bytes::from("x"));
        let local = blobs.local_file(&file).expect("a local blob has a file");
        assert_eq!(std::fs::read(local).unwrap(), b"x");
        assert_eq!(blobs.local_file(&BlobKeys::run_file(run, 1, &name)), None);
        let memory = Blobs::new(Arc::new(object_store::memory::InMemory::new()));
        memory.put(&file, "x").await.unwrap();
        assert_eq!(memory.local_file(&file), None);
        // Other spellings of a valid locator's parts are refused too.
        let execution = uuid::Uuid::new_v4();
        for other in [
            format!("runs/{run}/steps/+2/{}/hook.log", execution.simple()),
            format!("runs/{run}/steps/02/{}/hook.log", execution.simple()),
            format!("runs/{run}/steps/2/{}/hook.log", execution.hyphenated()),
            format!("runs/{run}/steps/2/{}/hook.log", execution.urn()),
        ] {
            let refused = blobs.read_log(&other).await.unwrap_err();
            assert_eq!(refused.kind(), crate::ErrorKind::Invalid, "{other}");
        }
    }

    /// A local copy copies bytes (a later change of the source leaves it alone) and
    /// never follows a symlink placed in the store directory.
    #[cfg(unix)]
    #[tokio::test]
    async fn local_copies_are_copies_of_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("store")).unwrap();
        let source = Path::from("uploads/u/real.txt");
        blobs.put(&source, "original").await.unwrap();
        let copy = Path::from("runs/r/files/0/real.txt");
        blobs.copy(&source, &copy).await.unwrap();
        // Rewritten in place (as a tool writing into the upload directory would).
        std::fs::write(blobs.local_file(&source).unwrap(), "changed in place").unwrap();
        assert_eq!(blobs.get(&copy).await.unwrap(), Bytes::from("original"));

        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "outside the store").unwrap();
        let link = Path::from("uploads/u/link.txt");
        let link_file = dir.path().join("store/uploads/u/link.txt");
        std::os::unix::fs::symlink(&secret, &link_file).unwrap();
        assert_eq!(
            blobs.local_file(&link),
            None,
            "a symlink is not a local file"
        );
        let target = Path::from("runs/r/files/1/link.txt");
        let refused = blobs.copy(&link, &target).await.unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::NotFound);
        assert_eq!(blobs.local_file(&target), None, "nothing was written");
        assert_eq!(
            blobs.get(&link).await.unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        // A directory on the way that is a symlink out of the store.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("store/uploads/out")).unwrap();
        let through = Path::from("uploads/out/secret.txt");
        assert_eq!(blobs.local_file(&through), None);
        let refused = blobs.copy(&through, &target).await.unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::NotFound);
        assert_eq!(
            blobs.get(&through).await.unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        assert_eq!(blobs.size(&copy).await.unwrap(), 8);
        blobs.delete(&copy).await.unwrap();
        blobs.delete(&copy).await.unwrap();
        assert_eq!(
            blobs.get(&copy).await.unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
    }

    #[test]
    fn step_outputs_keys_are_recognised_exactly() {
        let run = ValidationRunId::new_random();
        let execution = uuid::Uuid::new_v4();
        let key = BlobKeys::step_outputs(run, 1, execution);
        assert!(BlobKeys::is_step_outputs(&key, run, 1));
        assert!(!BlobKeys::is_step_outputs(&key, run, 2));
        let legacy = Path::from(format!("runs/{run}/steps/1/outputs.json"));
        assert!(BlobKeys::is_step_outputs(&legacy, run, 1));
        assert!(!BlobKeys::is_step_outputs(&legacy, run, 0));
        assert!(!BlobKeys::is_step_outputs(
            &key,
            ValidationRunId::new_random(),
            1
        ));
        assert!(!BlobKeys::is_step_outputs(
            &BlobKeys::step_log(run, 1, execution),
            run,
            1
        ));
        assert!(!BlobKeys::is_step_outputs(
            &Path::from("uploads/u/outputs.json"),
            run,
            1
        ));
    }
}
