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
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::StoredRecord;
use crate::blob::{Blobs, Streamed};
use crate::id::RecordId;
use crate::{Error, Result};

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

/// Writes JSON lines to a local file, then streams the file to a blob.
pub(crate) struct LinesWriter {
    path: PathBuf,
    /// Taken by the upload.
    out: Option<BufWriter<std::fs::File>>,
}

impl LinesWriter {
    /// A writer to a new file at `path` (its directory must exist).
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        let file = std::fs::File::create(&path).map_err(|e| spool_error("creating", &path, e))?;
        Ok(LinesWriter {
            path,
            out: Some(BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// Appends `value` as one line.
    pub(crate) fn push<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let out = self
            .out
            .as_mut()
            .expect("a writer is written before its upload");
        serde_json::to_writer(&mut *out, value)
            .map_err(|e| spool_error("writing", &self.path, e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| spool_error("writing", &self.path, e))
    }

    /// Streams the file to `key` and removes it. Returns the blob's bytes when they
    /// are at most [`IN_MEMORY_BYTES`] (for a cache), else `None`.
    pub(crate) async fn upload(
        mut self,
        blobs: &Blobs,
        key: &object_store::path::Path,
    ) -> Result<Option<Bytes>> {
        let path = self.path.clone();
        let out = self.out.take().expect("uploaded once");
        let file = out
            .into_inner()
            .map_err(|e| spool_error("writing", &path, e.into_error()))?;
        file.sync_data().ok();
        drop(file);
        let size = std::fs::metadata(&path)
            .map_err(|e| spool_error("reading", &path, e))?
            .len();
        let small = if size <= IN_MEMORY_BYTES {
            let bytes =
                Bytes::from(std::fs::read(&path).map_err(|e| spool_error("reading", &path, e))?);
            blobs.put(key, bytes.clone()).await?;
            Some(bytes)
        } else {
            let reader = tokio::fs::File::open(&path)
                .await
                .map_err(|e| spool_error("reading", &path, e))?;
            match blobs.put_stream(key, reader, u64::MAX - 1).await? {
                Streamed::Stored { .. } => None,
                Streamed::TooLarge { read } => {
                    return Err(Error::internal(format!(
                        "a spool of {read} bytes is over u64"
                    )));
                }
            }
        };
        Ok(small)
    }
}

impl Drop for LinesWriter {
    fn drop(&mut self) {
        // Only an upload keeps the file's content; a dropped writer leaves nothing.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A JSON-lines blob opened for reading: from memory, the store's own file, or a
/// downloaded copy that is removed when the reader is dropped.
pub(crate) struct LinesSource {
    reader: Box<dyn BufRead + Send>,
    /// The downloaded copy, if any.
    copy: Option<PathBuf>,
    /// What the blob is, for errors.
    what: String,
}

impl Drop for LinesSource {
    fn drop(&mut self) {
        if let Some(copy) = &self.copy {
            let _ = std::fs::remove_file(copy);
        }
    }
}

impl LinesSource {
    /// Reads `bytes` (a cached blob).
    pub(crate) fn from_bytes(bytes: Bytes, what: impl Into<String>) -> Self {
        LinesSource {
            reader: Box::new(std::io::Cursor::new(bytes)),
            copy: None,
            what: what.into(),
        }
    }

    /// Opens the blob at `key`; a copy, when one is needed, goes to `scratch` (a file
    /// path that must not exist).
    pub(crate) async fn open(
        blobs: &Blobs,
        key: &object_store::path::Path,
        scratch: PathBuf,
    ) -> Result<Self> {
        let what = key.to_string();
        if let Some(path) = blobs.local_file(key) {
            let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::not_found("blob", key),
                _ => spool_error("reading", &path, e),
            })?;
            return Ok(LinesSource {
                reader: Box::new(BufReader::with_capacity(1 << 16, file)),
                copy: None,
                what,
            });
        }
        if blobs.size(key).await? <= IN_MEMORY_BYTES {
            return Ok(Self::from_bytes(blobs.get(key).await?, what));
        }
        blobs.get_to_file(key, &scratch).await?;
        let file =
            std::fs::File::open(&scratch).map_err(|e| spool_error("reading", &scratch, e))?;
        Ok(LinesSource {
            reader: Box::new(BufReader::with_capacity(1 << 16, file)),
            copy: Some(scratch),
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
    /// The earlier format: every record at once.
    Whole(std::vec::IntoIter<StoredRecord>),
}

impl InputsReader {
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

    /// The rows of the record at `position` (`id`), empty when it has none; positions
    /// must be asked for in increasing order.
    pub(crate) fn rows_at(
        &mut self,
        position: u32,
        id: &RecordId,
    ) -> Result<Vec<Vec<serde_json::Value>>> {
        let source = match &mut self.source {
            Rows::Whole(rows) => return Ok(rows.remove(id).unwrap_or_default()),
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
        let mut writer = LinesWriter::create(dir.join("spool")).unwrap();
        for line in lines {
            writer.push(line).unwrap();
        }
        writer.upload(blobs, &key).await.unwrap();
        assert!(!dir.join("spool").exists(), "the spool file is removed");
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
            let source = LinesSource::open(&blobs, &key, dir.path().join("copy"))
                .await
                .unwrap();
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
            let source = LinesSource::open(&blobs, &key, dir.path().join("copy"))
                .await
                .unwrap();
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
    async fn large_blobs_stream_and_small_ones_come_back_for_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path().join("blobs")).unwrap();
        let key = object_store::path::Path::from("big.jsonl");
        let mut writer = LinesWriter::create(dir.path().join("spool")).unwrap();
        let filler = "x".repeat(1000);
        let count = (IN_MEMORY_BYTES / 1000 + 10) as u32;
        for p in 0..count {
            writer
                .push(&json!({"p": p, "id": format!("r{p}"), "rows": [[filler]]}))
                .unwrap();
        }
        assert_eq!(
            writer.upload(&blobs, &key).await.unwrap(),
            None,
            "too big to cache"
        );
        let source = LinesSource::open(&blobs, &key, dir.path().join("copy"))
            .await
            .unwrap();
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
        let mut writer = LinesWriter::create(dir.path().join("spool")).unwrap();
        writer
            .push(&json!({"p": 0, "id": "a", "rows": []}))
            .unwrap();
        let bytes = writer.upload(&blobs, &small).await.unwrap().expect("small");
        assert_eq!(bytes, blobs.get(&small).await.unwrap());
    }
}
