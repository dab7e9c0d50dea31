//! Feature reads written once over both backends.

use async_trait::async_trait;
use osa_core::feature::FeatureSpec;
use osa_core::feature_store::{FeaturePage, FeatureQuery, FeatureRow, Provenance, RowChunks};
use osa_core::id::{HookName, RecordId};
use osa_core::{Error, HookRegistry, Result};

use crate::feature_sql::{FeatureArgs, query_conditions};

/// What a backend provides so that the generic reads below work on it.
#[async_trait]
pub(crate) trait TableAccess: HookRegistry {
    /// The backend's argument buffer.
    type Args: FeatureArgs + Send;

    /// The stored contract of a hook's table (NotFound without a table).
    async fn contract(&self, hook: &HookName) -> Result<FeatureSpec>;

    /// Hooks that have a feature table, by name.
    async fn feature_hooks(&self) -> Result<Vec<HookName>>;

    /// Rows matching `condition` (written with `args`' placeholders), in id order.
    async fn select_rows(
        &self,
        hook: &HookName,
        spec: &FeatureSpec,
        condition: &str,
        args: Self::Args,
        limit: Option<u32>,
    ) -> Result<Vec<FeatureRow>>;

    /// Every row matching `condition`, in id order, read by one query in a task of
    /// its own that stays at most [`STREAM_AHEAD`] chunks of [`STREAM_CHUNK`] rows
    /// ahead of the consumer (and stops when the stream is dropped).
    fn select_stream(
        &self,
        hook: &HookName,
        spec: &FeatureSpec,
        condition: &str,
        args: Self::Args,
    ) -> RowChunks;
}

/// Rows per chunk of a streamed read.
pub(crate) const STREAM_CHUNK: usize = 1000;
/// Chunks a streamed read keeps ready ahead of its consumer.
pub(crate) const STREAM_AHEAD: usize = 2;

/// Every row of a hook matching `query` (its limit ignored), streamed.
pub(crate) async fn stream<B: TableAccess + Sync>(
    backend: &B,
    hook: &HookName,
    query: &FeatureQuery,
) -> Result<RowChunks> {
    let spec = backend.contract(hook).await?;
    let (condition, args) = query_conditions::<B::Args>(&spec, query)?;
    Ok(backend.select_stream(hook, &spec, &condition, args))
}

/// The producer side of a streamed read: collects rows into chunks of
/// [`STREAM_CHUNK`] and sends them, waiting while [`STREAM_AHEAD`] chunks are unread.
pub(crate) struct ChunkSender {
    sender: tokio::sync::mpsc::Sender<Result<Vec<FeatureRow>>>,
    chunk: Vec<FeatureRow>,
}

impl ChunkSender {
    /// A sender and the stream its chunks come out of.
    pub(crate) fn channel() -> (ChunkSender, RowChunks) {
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_AHEAD);
        let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        let sender = ChunkSender {
            sender,
            chunk: Vec::with_capacity(STREAM_CHUNK),
        };
        // Fused: polling again after the end keeps answering `None`.
        (sender, Box::pin(futures::StreamExt::fuse(chunks)))
    }

    /// Adds a row (an error is sent at once and ends the stream); false when the
    /// stream is over: the consumer is gone, or an error was sent.
    pub(crate) async fn push(&mut self, row: Result<FeatureRow>) -> bool {
        match row {
            Ok(row) => self.chunk.push(row),
            Err(e) => {
                let _ = self.sender.send(Err(e)).await;
                return false;
            }
        }
        if self.chunk.len() < STREAM_CHUNK {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(STREAM_CHUNK));
        self.sender.send(Ok(full)).await.is_ok()
    }

    /// Sends the last, partial chunk.
    pub(crate) async fn finish(self) {
        if !self.chunk.is_empty() {
            let _ = self.sender.send(Ok(self.chunk)).await;
        }
    }
}

/// One keyset page of a hook's rows.
pub(crate) async fn page<B: TableAccess + Sync>(
    backend: &B,
    hook: &HookName,
    query: &FeatureQuery,
) -> Result<FeaturePage> {
    let spec = backend.contract(hook).await?;
    let (condition, args) = query_conditions::<B::Args>(&spec, query)?;
    let limit = query.limit.clamp(1, crate::MAX_PAGE);
    let mut rows = backend
        .select_rows(hook, &spec, &condition, args, Some(limit + 1))
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(FeaturePage { rows, next_after })
}

/// Every row of one record, per hook.
pub(crate) async fn record_features<B: TableAccess + Sync>(
    backend: &B,
    record: &RecordId,
) -> Result<Vec<(HookName, Vec<FeatureRow>)>> {
    let mut out = Vec::new();
    for hook in backend.feature_hooks().await? {
        let spec = backend.contract(&hook).await?;
        let mut args = B::Args::default();
        args.push_text(record.as_str())?;
        let condition = format!("_record_id = {}", args.placeholder());
        let rows = backend
            .select_rows(&hook, &spec, &condition, args, None)
            .await?;
        if !rows.is_empty() {
            out.push((hook, rows));
        }
    }
    Ok(out)
}

/// Row → hook run → release.
pub(crate) async fn provenance<B: TableAccess + Sync>(
    backend: &B,
    hook: &HookName,
    row_id: i64,
) -> Result<Option<Provenance>> {
    let spec = backend.contract(hook).await?;
    let mut args = B::Args::default();
    args.push_i64(row_id)?;
    let condition = format!("_id = {}", args.placeholder());
    let Some(row) = backend
        .select_rows(hook, &spec, &condition, args, Some(1))
        .await?
        .pop()
    else {
        return Ok(None);
    };
    let run = backend.get_run(row.run_id).await?.ok_or_else(|| {
        Error::internal(format!("feature row {row_id} points at a missing hook run"))
    })?;
    let release = backend
        .get_release_by_id(run.release_id)
        .await?
        .ok_or_else(|| {
            Error::internal(format!("hook run {} points at a missing release", run.id))
        })?;
    Ok(Some(Provenance {
        hook: hook.clone(),
        row,
        run,
        release,
    }))
}
