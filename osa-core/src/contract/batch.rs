//! Writing a batch directory.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::{CONFIG_FILE, ContractError, RECORDS_FILE, record_dir_name};
use crate::id::{Digest, FileName, RecordId};

/// One record of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// The record id.
    pub id: RecordId,
    /// Its metadata (a JSON object).
    pub metadata: Value,
    /// Its files, read from local paths.
    pub files: Vec<BatchFile>,
}

/// A file of a record: its name in the batch and where to read it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFile {
    /// Name under the record's directory.
    pub name: FileName,
    /// Local source path.
    pub source: PathBuf,
}

/// Limits applied when preparing a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Largest record file accepted (default 1 GiB).
    pub max_file_bytes: u64,
    /// Most records in one batch (default 25,000): a validation step with more records
    /// in play runs its hook over several batches, one after the other. The engine
    /// holds one batch's records and outcomes at a time, about 4 KiB per record of
    /// small metadata, so this bounds a step's memory; a larger batch starts the hook
    /// fewer times (about 10 % more records/s at 100,000 for hooks that start in
    /// tens of milliseconds).
    pub max_records: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_file_bytes: 1 << 30,
            max_records: 25_000,
        }
    }
}

/// The directories of one batch on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLayout {
    /// The batch root.
    pub root: PathBuf,
    /// `$OSA_IN`.
    pub input: PathBuf,
    /// `$OSA_FILES`.
    pub files: PathBuf,
    /// `$OSA_OUT`.
    pub output: PathBuf,
}

/// A prepared batch: its layout, the sha256 of `records.jsonl`, and per-record sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch {
    /// Where everything is.
    pub layout: BatchLayout,
    /// sha256 of the `records.jsonl` written.
    pub input_sha256: Digest,
    /// The ids of the batch, in input order, with their size hints in MiB.
    pub records: Vec<(RecordId, f64)>,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    id: &'a str,
    metadata: &'a Value,
    size_hint_mb: f64,
}

impl BatchLayout {
    /// The layout under `root` (nothing is created).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        BatchLayout {
            input: root.join("in"),
            files: root.join("files"),
            output: root.join("out"),
            root,
        }
    }

    /// Creates the batch directory under `root` (which must not exist or be empty):
    /// writes `records.jsonl`, `config.json` when `config` is non-empty, copies every
    /// record's files into `files/<record dir>/`, and creates an empty `out/`.
    ///
    /// The layout's paths are absolute (a relative `root` is taken from the current
    /// directory): runners hand them to hooks that run in another directory, or
    /// bind-mount them into containers.
    ///
    /// Fails before writing anything when ids repeat or collide after the directory
    /// mapping, a file is missing or too large, or metadata is not an object.
    pub fn prepare(
        root: impl Into<PathBuf>,
        records: &[BatchRecord],
        config: &serde_json::Map<String, Value>,
        limits: &BatchLimits,
    ) -> Result<PreparedBatch, ContractError> {
        let root = root.into();
        let root =
            std::path::absolute(&root).map_err(|e| ContractError::io("resolving", &root, e))?;
        let layout = BatchLayout::at(root);
        if records.len() > limits.max_records {
            return Err(ContractError::TooManyRecords {
                count: records.len(),
                limit: limits.max_records,
            });
        }
        let sizes = check_records(records, limits)?;
        for dir in [&layout.input, &layout.files, &layout.output] {
            fs::create_dir_all(dir).map_err(|e| ContractError::io("creating", dir, e))?;
        }
        if !config.is_empty() {
            let path = layout.input.join(CONFIG_FILE);
            let bytes = serde_json::to_vec(config).expect("a JSON map always serialises");
            fs::write(&path, bytes).map_err(|e| ContractError::io("writing", &path, e))?;
        }
        for record in records {
            if record.files.is_empty() {
                continue;
            }
            let dir = layout.files.join(record_dir_name(record.id.as_str()));
            fs::create_dir_all(&dir).map_err(|e| ContractError::io("creating", &dir, e))?;
            for file in &record.files {
                let target = dir.join(file.name.as_str());
                fs::copy(&file.source, &target)
                    .map_err(|e| ContractError::io("copying", &file.source, e))?;
            }
        }
        let with_sizes: Vec<(&BatchRecord, f64)> = records.iter().zip(sizes).collect();
        let input_sha256 = layout.write_records(&with_sizes)?;
        Ok(PreparedBatch {
            records: with_sizes.iter().map(|(r, s)| (r.id.clone(), *s)).collect(),
            input_sha256,
            layout,
        })
    }

    /// (Re)writes `records.jsonl` with `records` in the given order and returns its
    /// sha256. Used by [`BatchLayout::prepare`] and by the OOM policy to feed only the
    /// records that still need an outcome.
    pub fn write_records(&self, records: &[(&BatchRecord, f64)]) -> Result<Digest, ContractError> {
        let path = self.input.join(RECORDS_FILE);
        let file = fs::File::create(&path).map_err(|e| ContractError::io("writing", &path, e))?;
        // The buffer sits in front of the hash, so the hash and the file see large
        // chunks rather than every token serde writes.
        let mut writer = BufWriter::with_capacity(1 << 16, HashingWriter::new(file));
        for (record, size_hint_mb) in records {
            let line = RecordLine {
                id: record.id.as_str(),
                metadata: &record.metadata,
                size_hint_mb: *size_hint_mb,
            };
            serde_json::to_writer(&mut writer, &line)
                .map_err(|e| ContractError::io("writing", &path, e.into()))?;
            writer
                .write_all(b"\n")
                .map_err(|e| ContractError::io("writing", &path, e))?;
        }
        let digest = writer
            .into_inner()
            .map_err(|e| ContractError::io("writing", &path, e.into_error()))?
            .finish()
            .map_err(|e| ContractError::io("writing", &path, e))?;
        Ok(digest)
    }

    /// Empties `out/` (for a retry) and recreates it.
    pub fn reset_output(&self) -> Result<(), ContractError> {
        match fs::remove_dir_all(&self.output) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ContractError::io("removing", &self.output, e)),
        }
        fs::create_dir_all(&self.output).map_err(|e| ContractError::io("creating", &self.output, e))
    }

    /// The files directory of one record.
    pub fn record_files(&self, id: &RecordId) -> PathBuf {
        self.files.join(record_dir_name(id.as_str()))
    }
}

/// Checks ids, dir names, metadata and files; returns each record's size hint in MiB.
fn check_records(records: &[BatchRecord], limits: &BatchLimits) -> Result<Vec<f64>, ContractError> {
    let mut ids = HashSet::with_capacity(records.len());
    let mut dirs: BTreeMap<String, &str> = BTreeMap::new();
    let mut sizes = Vec::with_capacity(records.len());
    for record in records {
        let id = record.id.as_str();
        if !ids.insert(id) {
            return Err(ContractError::DuplicateRecord(id.to_string()));
        }
        if !record.metadata.is_object() {
            return Err(ContractError::MetadataNotObject {
                record: id.to_string(),
            });
        }
        if !record.files.is_empty()
            && let Some(first) = dirs.insert(record_dir_name(id), id)
        {
            return Err(ContractError::DirNameCollision {
                first: first.to_string(),
                second: id.to_string(),
                dir: record_dir_name(id),
            });
        }
        let mut names = HashSet::new();
        let mut total: u64 = 0;
        for file in &record.files {
            if !names.insert(file.name.as_str()) {
                return Err(ContractError::DuplicateFile {
                    record: id.to_string(),
                    name: file.name.to_string(),
                });
            }
            let meta = fs::metadata(&file.source)
                .map_err(|e| ContractError::io("reading", &file.source, e))?;
            if meta.len() > limits.max_file_bytes {
                return Err(ContractError::InputFileTooLarge {
                    record: id.to_string(),
                    name: file.name.to_string(),
                    size: meta.len(),
                    limit: limits.max_file_bytes,
                });
            }
            total += meta.len();
        }
        sizes.push(total as f64 / (1u64 << 20) as f64);
    }
    Ok(sizes)
}

/// A writer that hashes what it writes.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest as _;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    fn finish(mut self) -> std::io::Result<Digest> {
        use sha2::Digest as _;
        self.inner.flush()?;
        let hex = hex::encode(self.hasher.finalize());
        Ok(Digest::new(format!("sha256:{hex}")).expect("sha256 hex is a valid digest"))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, files: Vec<BatchFile>) -> BatchRecord {
        BatchRecord {
            id: RecordId::new(id).unwrap(),
            metadata: json!({"title": id}),
            files,
        }
    }

    #[test]
    fn prepares_inputs_files_and_config() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.cif");
        fs::write(&src, vec![b'x'; 2 << 20]).unwrap();
        let records = vec![
            record(
                "urn:rec:a@1",
                vec![BatchFile {
                    name: FileName::new("structure.cif").unwrap(),
                    source: src.clone(),
                }],
            ),
            record("b", vec![]),
        ];
        let mut config = serde_json::Map::new();
        config.insert("threshold".into(), json!(4.0));
        let batch = BatchLayout::prepare(
            tmp.path().join("batch"),
            &records,
            &config,
            &BatchLimits::default(),
        )
        .unwrap();
        let lines = fs::read_to_string(batch.layout.input.join(RECORDS_FILE)).unwrap();
        let lines: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            json!({"id": "urn:rec:a@1", "metadata": {"title": "urn:rec:a@1"}, "size_hint_mb": 2.0})
        );
        assert_eq!(lines[1]["size_hint_mb"], json!(0.0));
        let copied = batch.layout.files.join("urn_rec_a_1").join("structure.cif");
        assert_eq!(fs::metadata(copied).unwrap().len(), 2 << 20);
        let config_back: Value =
            serde_json::from_slice(&fs::read(batch.layout.input.join(CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(config_back, json!({"threshold": 4.0}));
        assert!(batch.layout.output.is_dir());
        let expected = Digest::of_bytes(&fs::read(batch.layout.input.join(RECORDS_FILE)).unwrap());
        assert_eq!(batch.input_sha256, expected);
    }

    #[test]
    fn a_relative_root_gives_absolute_paths() {
        // A directory under the current one, named relative to it.
        let cwd = std::env::current_dir().unwrap();
        let tmp = tempfile::tempdir_in(&cwd).unwrap();
        let relative = tmp.path().strip_prefix(&cwd).unwrap().join("batch");
        assert!(relative.is_relative());
        let batch = BatchLayout::prepare(
            &relative,
            &[record("a", vec![])],
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap();
        let layout = &batch.layout;
        for path in [&layout.root, &layout.input, &layout.files, &layout.output] {
            assert!(path.is_absolute(), "{}", path.display());
        }
        assert_eq!(
            fs::canonicalize(&layout.root).unwrap(),
            fs::canonicalize(&relative).unwrap()
        );
    }

    #[test]
    fn empty_config_is_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let batch = BatchLayout::prepare(
            tmp.path().join("b"),
            &[record("a", vec![])],
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap();
        assert!(!batch.layout.input.join(CONFIG_FILE).exists());
    }

    #[test]
    fn refuses_colliding_dirs_duplicates_and_large_files() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        fs::write(&src, b"12345").unwrap();
        let file = || BatchFile {
            name: FileName::new("f.txt").unwrap(),
            source: src.clone(),
        };
        let root = tmp.path().join("b");
        let err = BatchLayout::prepare(
            &root,
            &[record("a:b", vec![file()]), record("a@b", vec![file()])],
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ContractError::DirNameCollision { .. }),
            "{err}"
        );
        assert!(
            !root.exists(),
            "nothing is written when the batch is refused"
        );

        let err = BatchLayout::prepare(
            &root,
            &[record("a", vec![]), record("a", vec![])],
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ContractError::DuplicateRecord(_)));

        let limits = BatchLimits {
            max_file_bytes: 4,
            ..BatchLimits::default()
        };
        let err = BatchLayout::prepare(
            &root,
            &[record("a", vec![file()])],
            &serde_json::Map::new(),
            &limits,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("over the limit of 4 bytes"),
            "{err}"
        );
        assert!(!root.exists());

        let mut bad = record("a", vec![]);
        bad.metadata = json!([1]);
        let err = BatchLayout::prepare(
            &root,
            &[bad],
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ContractError::MetadataNotObject { .. }));
    }
}
