//! The JSON-lines blobs a run writes and reads one line at a time, so that no job
//! holds a run's records in memory: its stored inputs (one [`StoredRecord`] per line,
//! in submit order: line *n* is the record at position *n*) and each step's rows (one
//! [`RowsLine`] per passed record with rows, in submit order).
//!
//! A blob is written to a local file first and then streamed to the store; it is read
//! from the store's own file when the store is a local directory, else from a
//! downloaded copy, or from memory when it is small enough to be cached. Blobs of the
//! earlier format (one JSON document: an array of inputs, a map of rows) are read whole,
//! as before.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::StoredRecord;
use crate::blob::{Blobs, Streamed};
use crate::id::RecordId;
use crate::validation::RecordChunks;
use crate::{Error, Result};

/// The name prefix of a blob's downloaded copy, unlinked once open: a file with it is
/// left only by a process that died during the download.
pub(crate) const COPY_PREFIX: &str = "copy-";

/// Blobs up to this size are read into memory (and may be cached) rather than read
/// from a file.
pub(crate) const IN_MEMORY_BYTES: u64 = 4 << 20;

/// One line of a step's rows blob: the passed record at submit position `p` and its
/// rows as JSON values in column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RowsLine {
    /// The record's submit position.
    pub p: u32,
    /// The record.
    pub id: RecordId,
    /// Its rows.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Writes JSON lines in memory up to [`IN_MEMORY_BYTES`] and past that to a local
/// file (unnamed from the start: a process that dies leaves nothing behind), then
/// stores them as a blob.
pub(crate) struct LinesWriter {
    dir: PathBuf,
    out: Sink,
}

enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<std::fs::File>),
}

impl LinesWriter {
    /// A writer that spills, if it must, to a new, unnamed file in `dir` (which must
    /// exist).
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        Ok(LinesWriter {
            dir: dir.to_path_buf(),
            out: Sink::Memory(Vec::new()),
        })
    }

    /// Appends `value` as one line.
    pub(crate) fn push<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let dir = &self.dir;
        let written = match &mut self.out {
            Sink::Memory(buffer) => {
                serde_json::to_writer(&mut *buffer, value)
                    .map_err(|e| Error::internal(format!("serialising a spool line: {e}")))?;
                buffer.push(b'\n');
                if buffer.len() as u64 <= IN_MEMORY_BYTES {
                    return Ok(());
                }
                let file = tempfile::tempfile_in(dir)
                    .map_err(|e| spool_error("creating a file in", dir, e))?;
                let mut file = BufWriter::with_capacity(1 << 16, file);
                file.write_all(buffer)
                    .map_err(|e| spool_error("writing a file in", dir, e))?;
                self.out = Sink::File(file);
                return Ok(());
            }
            Sink::File(file) => serde_json::to_writer(&mut *file, value)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n")),
        };
        written.map_err(|e| spool_error("writing a file in", dir, e))
    }

    /// Whether the lines went past [`IN_MEMORY_BYTES`] to a file.
    #[cfg(test)]
    fn on_file(&self) -> bool {
        matches!(self.out, Sink::File(_))
    }

    /// Stores the lines at `key`.
    pub(crate) async fn upload(self, blobs: &Blobs, key: &object_store::path::Path) -> Result<()> {
        let dir = self.dir;
        let file = match self.out {
            Sink::Memory(buffer) => return blobs.put(key, Bytes::from(buffer)).await,
            Sink::File(file) => file,
        };
        let mut file = file
            .into_inner()
            .map_err(|e| spool_error("writing a file in", &dir, e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| spool_error("reading a file in", &dir, e))?;
        let reader = tokio::fs::File::from_std(file);
        match blobs.put_stream(key, reader, u64::MAX - 1).await? {
            Streamed::Stored { .. } => Ok(()),
            Streamed::TooLarge { read } => Err(Error::internal(format!(
                "a spool of {read} bytes is over u64"
            ))),
        }
    }
}

/// A JSON-lines blob opened for reading: from memory, the store's own file, or a
/// downloaded copy (unlinked as soon as it is open).
pub(crate) struct LinesSource {
    reader: Box<dyn BufRead + Send>,
    /// What the blob is, for errors.
    what: String,
}

impl LinesSource {
    /// Reads `bytes` (a cached blob).
    pub(crate) fn from_bytes(bytes: Bytes, what: impl Into<String>) -> Self {
        LinesSource {
            reader: Box::new(std::io::Cursor::new(bytes)),
            what: what.into(),
        }
    }

    /// Opens the blob at `key`; a copy, when one is needed, is downloaded into `dir`
    /// and unlinked as soon as it is open.
    pub(crate) async fn open(
        blobs: &Blobs,
        key: &object_store::path::Path,
        dir: &Path,
    ) -> Result<Self> {
        let what = key.to_string();
        if let Some(path) = blobs.local_file(key) {
            let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::not_found("blob", key),
                _ => spool_error("reading", &path, e),
            })?;
            return Ok(LinesSource {
                reader: Box::new(BufReader::with_capacity(1 << 16, file)),
                what,
            });
        }
        if blobs.size(key).await? <= IN_MEMORY_BYTES {
            return Ok(Self::from_bytes(blobs.get(key).await?, what));
        }
        let copy = dir.join(format!("{COPY_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let downloaded = blobs.get_to_file(key, &copy).await;
        let file = downloaded
            .and_then(|_| std::fs::File::open(&copy).map_err(|e| spool_error("reading", &copy, e)));
        let _ = std::fs::remove_file(&copy);
        Ok(LinesSource {
            reader: Box::new(BufReader::with_capacity(1 << 16, file?)),
            what,
        })
    }

    /// Whether the blob is one JSON document of the earlier format (its first
    /// non-blank byte opens an array or an object that is not a line of this format).
    fn starts_with(&mut self, byte: u8) -> Result<bool> {
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| Error::internal(format!("reading {}: {e}", self.what)))?;
            match buf.first() {
                None => return Ok(false),
                Some(b) if b.is_ascii_whitespace() => self.reader.consume(1),
                Some(b) => return Ok(*b == byte),
            }
        }
    }

    /// The next non-blank line, read into `line`; `None` at the end.
    fn raw_line<'l>(&mut self, line: &'l mut String) -> Result<Option<&'l str>> {
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(line)
                .map_err(|e| Error::internal(format!("reading {}: {e}", self.what)))?;
            if n == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                return Ok(Some(line.as_str()));
            }
        }
    }

    /// The next line parsed as `T`; `None` at the end.
    fn next_line<T: DeserializeOwned>(&mut self, line: &mut String) -> Result<Option<T>> {
        let what = self.what.clone();
        match self.raw_line(line)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| Error::internal(format!("{what} is corrupt: {e}"))),
        }
    }

    /// The rest of the blob as one JSON document.
    fn whole<T: DeserializeOwned>(mut self) -> Result<T> {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut self.reader, &mut text)
            .map_err(|e| Error::internal(format!("reading {}: {e}", self.what)))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::internal(format!("{} is corrupt: {e}", self.what)))
    }
}

/// A run's stored inputs, read forward by submit position.
pub(crate) struct InputsReader {
    source: Inputs,
    /// The position of the next line.
    next: u32,
    line: String,
}

enum Inputs {
    Lines(LinesSource),
    /// Kept in memory by this process: indexed by position.
    Cached(std::sync::Arc<Vec<StoredRecord>>),
    /// The earlier format: every record at once.
    Whole(std::vec::IntoIter<StoredRecord>),
}

impl InputsReader {
    /// Reads inputs this process keeps in memory.
    pub(crate) fn cached(records: std::sync::Arc<Vec<StoredRecord>>) -> Self {
        InputsReader {
            source: Inputs::Cached(records),
            next: 0,
            line: String::new(),
        }
    }

    /// Reads `source`.
    pub(crate) fn new(mut source: LinesSource) -> Result<Self> {
        let source = if source.starts_with(b'[')? {
            Inputs::Whole(source.whole::<Vec<StoredRecord>>()?.into_iter())
        } else {
            Inputs::Lines(source)
        };
        Ok(InputsReader {
            source,
            next: 0,
            line: String::new(),
        })
    }

    /// The record at `position`, which must be at or after the last one read; the
    /// records before it are skipped. An internal error when the inputs end before it
    /// or it is not `id`.
    pub(crate) fn record_at(&mut self, position: u32, id: &RecordId) -> Result<StoredRecord> {
        if position < self.next {
            return Err(Error::internal(format!(
                "inputs read out of order: position {position} after {}",
                self.next
            )));
        }
        if let Inputs::Cached(records) = &self.source {
            let record = records.get(position as usize).ok_or_else(|| {
                Error::internal(format!(
                    "record {id} (position {position}) is missing from the stored inputs"
                ))
            })?;
            if record.id != *id {
                return Err(Error::internal(format!(
                    "the stored input at position {position} is {}, not {id}",
                    record.id
                )));
            }
            self.next = position + 1;
            return Ok(record.clone());
        }
        loop {
            // Lines before the one asked for are skipped unparsed.
            if let Inputs::Lines(source) = &mut self.source
                && self.next < position
            {
                if source.raw_line(&mut self.line)?.is_none() {
                    return Err(Error::internal(format!(
                        "record {id} (position {position}) is missing from the stored inputs"
                    )));
                }
                self.next += 1;
                continue;
            }
            let record = match &mut self.source {
                Inputs::Lines(source) => source.next_line::<StoredRecord>(&mut self.line)?,
                Inputs::Whole(records) => records.next(),
                Inputs::Cached(_) => unreachable!("served above"),
            };
            let Some(record) = record else {
                return Err(Error::internal(format!(
                    "record {id} (position {position}) is missing from the stored inputs"
                )));
            };
            let at = self.next;
            self.next += 1;
            if at < position {
                continue;
            }
            if record.id != *id {
                return Err(Error::internal(format!(
                    "the stored input at position {position} is {}, not {id}",
                    record.id
                )));
            }
            return Ok(record);
        }
    }
}

/// A step's stored rows, read forward by submit position.
pub(crate) struct RowsReader {
    source: Rows,
    /// A line read but not yet asked for.
    ahead: Option<RowsLine>,
    line: String,
}

enum Rows {
    Lines(LinesSource),
    /// Kept in memory by this process, in position order; the next index to look at.
    Cached(std::sync::Arc<Vec<RowsLine>>, usize),
    /// The earlier format: every record's rows at once, by id.
    Whole(BTreeMap<RecordId, Vec<Vec<serde_json::Value>>>),
}

impl RowsReader {
    /// Reads `source`.
    pub(crate) fn new(mut source: LinesSource) -> Result<Self> {
        // The first line tells the formats apart: a rows line, or the earlier map of
        // every record's rows (one document, on one line).
        let mut line = String::new();
        let first = source.raw_line(&mut line)?;
        let (source, ahead) = match first {
            None => (Rows::Lines(source), None),
            Some(text) => match serde_json::from_str::<RowsLine>(text) {
                Ok(first) => (Rows::Lines(source), Some(first)),
                Err(_) => {
                    let mut whole = text.as_bytes().to_vec();
                    std::io::Read::read_to_end(&mut source.reader, &mut whole)
                        .map_err(|e| Error::internal(format!("reading {}: {e}", source.what)))?;
                    let rows = serde_json::from_slice(&whole)
                        .map_err(|e| Error::internal(format!("{} is corrupt: {e}", source.what)))?;
                    (Rows::Whole(rows), None)
                }
            },
        };
        Ok(RowsReader {
            source,
            ahead,
            line,
        })
    }

    /// Reads rows this process keeps in memory.
    pub(crate) fn cached(lines: std::sync::Arc<Vec<RowsLine>>) -> Self {
        RowsReader {
            source: Rows::Cached(lines, 0),
            ahead: None,
            line: String::new(),
        }
    }

    /// The rows of the record at `position` (`id`), empty when it has none; positions
    /// must be asked for in increasing order.
    pub(crate) fn rows_at(
        &mut self,
        position: u32,
        id: &RecordId,
    ) -> Result<Vec<Vec<serde_json::Value>>> {
        let source = match &mut self.source {
            Rows::Whole(rows) => return Ok(rows.remove(id).unwrap_or_default()),
            Rows::Cached(lines, next) => {
                while lines.get(*next).is_some_and(|line| line.p < position) {
                    *next += 1;
                }
                return match lines.get(*next) {
                    Some(line) if line.p == position && line.id == *id => Ok(line.rows.clone()),
                    Some(line) if line.p == position => Err(Error::internal(format!(
                        "the stored rows at position {position} are {}'s, not {id}'s",
                        line.id
                    ))),
                    _ => Ok(Vec::new()),
                };
            }
            Rows::Lines(source) => source,
        };
        loop {
            let line = match self.ahead.take() {
                Some(line) => line,
                None => match source.next_line::<RowsLine>(&mut self.line)? {
                    Some(line) => line,
                    None => return Ok(Vec::new()),
                },
            };
            if line.p < position {
                continue;
            }
            if line.p > position {
                self.ahead = Some(line);
                return Ok(Vec::new());
            }
            if line.id != *id {
                return Err(Error::internal(format!(
                    "the stored rows at position {position} are {}'s, not {id}'s",
                    line.id
                )));
            }
            return Ok(line.rows);
        }
    }
}

/// The record ids of a submission as they come: the first `chunk` in memory, the rest
/// spooled to an unnamed local file and read back a chunk at a time for the storage
/// (see [`RecordChunks`]).
pub(crate) struct SubmittedIds {
    first: Vec<RecordId>,
    chunk: usize,
    dir: PathBuf,
    spool: Option<BufWriter<std::fs::File>>,
    count: u32,
}

impl SubmittedIds {
    /// Ids kept `chunk` at a time, spilling to an unnamed file in `dir`.
    pub(crate) fn new(dir: &Path, chunk: usize) -> Self {
        SubmittedIds {
            first: Vec::new(),
            chunk: chunk.max(1),
            dir: dir.to_path_buf(),
            spool: None,
            count: 0,
        }
    }

    /// Adds the next id.
    pub(crate) fn push(&mut self, id: RecordId) -> Result<()> {
        self.count += 1;
        if self.first.len() < self.chunk && self.spool.is_none() {
            self.first.push(id);
            return Ok(());
        }
        let spool = match &mut self.spool {
            Some(spool) => spool,
            None => {
                let file = tempfile::tempfile_in(&self.dir)
                    .map_err(|e| spool_error("creating a file in", &self.dir, e))?;
                self.spool.insert(BufWriter::with_capacity(1 << 16, file))
            }
        };
        serde_json::to_writer(&mut *spool, &id)
            .map_err(|e| spool_error("writing a file in", &self.dir, e.into()))?;
        spool
            .write_all(b"\n")
            .map_err(|e| spool_error("writing a file in", &self.dir, e))
    }

    /// How many ids were added.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The ids kept in memory (the first ones).
    pub(crate) fn take_first(&mut self) -> Vec<RecordId> {
        std::mem::take(&mut self.first)
    }

    /// The spooled ids after the first ones, `None` when every id was kept in memory.
    pub(crate) fn rest(&mut self) -> Result<Option<SpooledIds>> {
        let Some(spool) = self.spool.take() else {
            return Ok(None);
        };
        let mut file = spool
            .into_inner()
            .map_err(|e| spool_error("writing a file in", &self.dir, e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| spool_error("reading a file in", &self.dir, e))?;
        Ok(Some(SpooledIds {
            lines: BufReader::with_capacity(1 << 16, file),
            chunk: self.chunk,
            dir: self.dir.clone(),
            line: String::new(),
        }))
    }
}

/// Spooled record ids, read back a chunk at a time.
pub(crate) struct SpooledIds {
    lines: BufReader<std::fs::File>,
    chunk: usize,
    dir: PathBuf,
    line: String,
}

#[async_trait::async_trait]
impl RecordChunks for SpooledIds {
    async fn next_chunk(&mut self) -> Result<Option<Vec<RecordId>>> {
        let mut ids = Vec::new();
        while ids.len() < self.chunk {
            self.line.clear();
            let n = self
                .lines
                .read_line(&mut self.line)
                .map_err(|e| spool_error("reading a file in", &self.dir, e))?;
            if n == 0 {
                break;
            }
            ids.push(serde_json::from_str(&self.line).map_err(|e| {
                Error::internal(format!("the spooled record ids are corrupt: {e}"))
            })?);
        }
        Ok((!ids.is_empty()).then_some(ids))
    }
}

fn spool_error(action: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable {
        what: "work directory",
        detail: format!("{action} {}: {e}", path.display()),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> RecordId {
        RecordId::new(s).unwrap()
    }

    fn stored(s: &str) -> StoredRecord {
        StoredRecord {
            id: id(s),
            metadata: json!({"title": s}),
            files: vec![],
        }
    }

    async fn written(
        blobs: &Blobs,
        dir: &Path,
        key: &str,
        lines: &[serde_json::Value],
    ) -> object_store::path::Path {
        let key = object_store::path::Path::from(key);
        let mut writer = LinesWriter::create(dir).unwrap();
        for line in lines {
            writer.push(line).unwrap();
        }
        writer.upload(blobs, &key).await.unwrap();
        key
    }

    #[tokio::test]
    async fn inputs_are_read_forward_by_position_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("blobs")).unwrap();
        let records: Vec<StoredRecord> = ["a", "b", "c", "d"].map(stored).into();
        let lines: Vec<serde_json::Value> = records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        let jsonl = written(&blobs, dir.path(), "inputs.jsonl", &lines).await;
        let legacy = object_store::path::Path::from("inputs.json");
        blobs.put_json(&legacy, &records).await.unwrap();
        for key in [jsonl, legacy] {
            let source = LinesSource::open(&blobs, &key, dir.path()).await.unwrap();
            let mut reader = InputsReader::new(source).unwrap();
            assert_eq!(reader.record_at(1, &id("b")).unwrap(), records[1]);
            assert_eq!(reader.record_at(3, &id("d")).unwrap(), records[3]);
            let back = reader.record_at(2, &id("c")).unwrap_err();
            assert!(back.to_string().contains("out of order"), "{back}");
        }
        let source = LinesSource::from_bytes(
            Bytes::from_static(b"{\"id\":\"a\",\"metadata\":{},\"files\":[]}\n"),
            "x",
        );
        let mut reader = InputsReader::new(source).unwrap();
        let wrong = reader.record_at(0, &id("z")).unwrap_err();
        assert!(wrong.to_string().contains("is a, not z"), "{wrong}");
        let missing = reader.record_at(1, &id("b")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("missing from the stored inputs"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn rows_are_read_forward_by_position_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("blobs")).unwrap();
        let line = |p: u32, s: &str, rows: serde_json::Value| {
            serde_json::to_value(RowsLine {
                p,
                id: id(s),
                rows: serde_json::from_value(rows).unwrap(),
            })
            .unwrap()
        };
        let lines = [
            line(0, "a", json!([[1]])),
            line(2, "c", json!([[3], [4]])),
            line(5, "f", json!([[6]])),
        ];
        let jsonl = written(&blobs, dir.path(), "rows.jsonl", &lines).await;
        let legacy = object_store::path::Path::from("rows.json");
        blobs
            .put_json(&legacy, &json!({"a": [[1]], "c": [[3], [4]], "f": [[6]]}))
            .await
            .unwrap();
        for key in [jsonl, legacy] {
            let source = LinesSource::open(&blobs, &key, dir.path()).await.unwrap();
            let mut reader = RowsReader::new(source).unwrap();
            assert_eq!(reader.rows_at(0, &id("a")).unwrap(), [[json!(1)]]);
            assert!(reader.rows_at(1, &id("b")).unwrap().is_empty(), "no rows");
            assert_eq!(
                reader.rows_at(2, &id("c")).unwrap(),
                [[json!(3)], [json!(4)]]
            );
            // `f` is skipped over by a later position.
            assert!(reader.rows_at(6, &id("g")).unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn large_spools_go_through_a_file_and_small_ones_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("blobs")).unwrap();
        let key = object_store::path::Path::from("big.jsonl");
        let mut writer = LinesWriter::create(dir.path()).unwrap();
        let filler = "x".repeat(1000);
        let count = (IN_MEMORY_BYTES / 1000 + 10) as u32;
        for p in 0..count {
            writer
                .push(&json!({"p": p, "id": format!("r{p}"), "rows": [[filler]]}))
                .unwrap();
        }
        assert!(writer.on_file(), "past the limit, lines go to a file");
        writer.upload(&blobs, &key).await.unwrap();
        let source = LinesSource::open(&blobs, &key, dir.path()).await.unwrap();
        let mut reader = RowsReader::new(source).unwrap();
        let last = count - 1;
        assert_eq!(
            reader
                .rows_at(last, &id(&format!("r{last}")))
                .unwrap()
                .len(),
            1
        );

        let small = object_store::path::Path::from("small.jsonl");
        let mut writer = LinesWriter::create(dir.path()).unwrap();
        writer
            .push(&json!({"p": 0, "id": "a", "rows": []}))
            .unwrap();
        assert!(!writer.on_file(), "a few lines stay in memory");
        writer.upload(&blobs, &small).await.unwrap();
        let line = String::from_utf8(blobs.get(&small).await.unwrap().to_vec()).unwrap();
        assert_eq!(line, "{\"id\":\"a\",\"p\":0,\"rows\":[]}\n");
    }

    #[tokio::test]
    async fn submitted_ids_spill_past_the_first_chunk_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = SubmittedIds::new(dir.path(), 2);
        for n in 0..5 {
            ids.push(id(&format!("r{n}"))).unwrap();
        }
        assert_eq!(ids.count(), 5);
        assert_eq!(ids.take_first(), [id("r0"), id("r1")]);
        let mut rest = ids.rest().unwrap().expect("spilled");
        assert_eq!(
            rest.next_chunk().await.unwrap(),
            Some(vec![id("r2"), id("r3")])
        );
        assert_eq!(rest.next_chunk().await.unwrap(), Some(vec![id("r4")]));
        assert_eq!(rest.next_chunk().await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no named file"
        );

        let mut few = SubmittedIds::new(dir.path(), 2);
        few.push(id("a")).unwrap();
        assert!(few.rest().unwrap().is_none(), "nothing spilled");
        assert_eq!(few.take_first(), [id("a")]);
    }

    #[test]
    fn cached_readers_read_like_the_blobs() {
        let records: Vec<StoredRecord> = ["a", "b", "c"].map(stored).into();
        let mut inputs = InputsReader::cached(std::sync::Arc::new(records.clone()));
        assert_eq!(inputs.record_at(1, &id("b")).unwrap(), records[1]);
        assert!(
            inputs
                .record_at(2, &id("z"))
                .unwrap_err()
                .to_string()
                .contains("is c, not z")
        );
        assert!(inputs.record_at(3, &id("d")).is_err(), "past the end");

        let line = |p, s: &str, n| RowsLine {
            p,
            id: id(s),
            rows: vec![vec![json!(n)]],
        };
        let mut rows =
            RowsReader::cached(std::sync::Arc::new(vec![line(0, "a", 1), line(2, "c", 3)]));
        assert_eq!(rows.rows_at(0, &id("a")).unwrap(), [[json!(1)]]);
        assert!(rows.rows_at(1, &id("b")).unwrap().is_empty());
        assert!(rows.rows_at(2, &id("x")).is_err(), "another record's rows");
        assert_eq!(rows.rows_at(2, &id("c")).unwrap(), [[json!(3)]]);
        assert!(rows.rows_at(5, &id("f")).unwrap().is_empty());
    }
}
