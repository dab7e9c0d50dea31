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

use crate::id::{DeploymentId, FileName, ValidationRunId};
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

/// An object store plus the few operations OSA needs, with errors mapped.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory.
    local: Option<Arc<object_store::local::LocalFileSystem>>,
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
        Blobs { store, local: None }
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
        let store = Arc::new(store);
        Ok(Blobs {
            store: store.clone(),
            local: Some(store),
        })
    }

    /// The file holding the blob at `key`, when the store is a local directory made by
    /// [`Blobs::local`] and the blob exists: readers may copy it from there instead of
    /// reading it into memory and writing it out again.
    pub fn local_file(&self, key: &Path) -> Option<std::path::PathBuf> {
        let path = self.local.as_ref()?.path_to_filesystem(key).ok()?;
        path.is_file().then_some(path)
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

    /// Reads the blob at `key`; NotFound when absent.
    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        let result = self
            .store
            .get(key)
            .await
            .map_err(|e| unavailable("reading", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| unavailable("reading", key, e))
    }

    /// Copies a blob within the store.
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.store
            .copy(from, to)
            .await
            .map_err(|e| unavailable("copying", from, e))
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
        let run_and_step = |run: &str, step: &str| {
            run.parse::<ValidationRunId>().is_ok() && step.parse::<u32>().is_ok()
        };
        // With the execution segment, or without it (archives written before it).
        let well_formed = match parts.as_slice() {
            ["runs", run, "steps", step, execution, "hook.log"] => {
                run_and_step(run, step) && uuid::Uuid::try_parse(execution).is_ok()
            }
            ["runs", run, "steps", step, "hook.log"] => run_and_step(run, step),
            _ => false,
        };
        if !well_formed {
            return Err(Error::invalid(
                "log_ref",
                "not a hook log locator of this node",
            ));
        }
        self.get(&Path::from(log_ref)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
