//! The capture of a hook's output, the same for every runner.
//!
//! A [`LogBuffer`] keeps stdout and stderr interleaved as the chunks arrive, up to a
//! byte cap (`job.max_log_bytes`), and becomes the [`CapturedLog`] of the execution.
//! Past the cap, output is read and dropped (so a chatty hook never blocks) and the
//! log is marked truncated; nothing is inserted where the cut is. The cap counts bytes
//! as the hook wrote them: a multi-byte UTF-8 character straddling it is cut in two
//! (the log is bytes; readers decode it lossily).
//!
//! Apart from the capped log it keeps the last [`STDERR_TAIL_BYTES`] of stderr, where
//! an out-of-memory hook says so last (exactly the part a capped log drops), and, when
//! asked, the first bytes of stderr (where a sandbox reports its own setup errors).
//! The runner's own notes are appended after the kept output as `[osa] …` lines, which
//! the cap does not count.

use super::CapturedLog;

/// How much of the end of stderr is kept for classification, independently of the
/// log cap.
pub(crate) const STDERR_TAIL_BYTES: usize = 4096;

/// The last [`STDERR_TAIL_BYTES`] of a stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    /// Appends `chunk`, forgetting what falls out of the tail.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trim in bulk (amortised) rather than on every chunk.
        if self.bytes.len() > 2 * STDERR_TAIL_BYTES {
            let excess = self.bytes.len() - STDERR_TAIL_BYTES;
            self.bytes.drain(..excess);
        }
    }

    /// The last [`STDERR_TAIL_BYTES`] pushed (all of them when fewer).
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = self.bytes.len();
        &self.bytes[len.saturating_sub(STDERR_TAIL_BYTES)..]
    }
}

/// Captured output: stdout and stderr interleaved up to a cap, the tail (and, if
/// asked, the head) of stderr kept apart for classification, and the runner's notes.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
    /// How much of the beginning of stderr to keep (0: none).
    head_cap: usize,
    stderr_head: Vec<u8>,
    stderr_tail: Tail,
    notes: Vec<String>,
}

impl LogBuffer {
    /// An empty buffer keeping at most `cap` bytes of output, and no stderr head.
    pub(crate) fn new(cap: usize) -> Self {
        LogBuffer {
            bytes: Vec::new(),
            cap,
            truncated: false,
            head_cap: 0,
            stderr_head: Vec::new(),
            stderr_tail: Tail::default(),
            notes: Vec::new(),
        }
    }

    /// Also keeps the first `bytes` of stderr (see [`LogBuffer::stderr_head`]),
    /// whatever the cap.
    pub(crate) fn with_stderr_head(mut self, bytes: usize) -> Self {
        self.head_cap = bytes;
        self
    }

    /// Appends what fits under the cap of `chunk`, which came from stderr when
    /// `stderr` is set. Returns `false` once output has been dropped (the caller may
    /// stop reading when nothing has to be drained).
    pub(crate) fn push(&mut self, chunk: &[u8], stderr: bool) -> bool {
        let room = self.cap.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if stderr {
            let head_room = self.head_cap.saturating_sub(self.stderr_head.len());
            self.stderr_head
                .extend_from_slice(&chunk[..chunk.len().min(head_room)]);
            self.stderr_tail.push(chunk);
        }
        !self.truncated
    }

    /// Whether output past the cap was dropped.
    #[cfg_attr(not(any(feature = "oci", test)), allow(dead_code))]
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The first bytes of stderr, as many as [`LogBuffer::with_stderr_head`] asked for.
    pub(crate) fn stderr_head(&self) -> &[u8] {
        &self.stderr_head
    }

    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub(crate) fn stderr_tail(&self) -> &[u8] {
        self.stderr_tail.bytes()
    }

    /// Replaces the stderr tail with one read elsewhere (a container engine's log,
    /// when the output could not be streamed to the end).
    #[cfg_attr(not(any(feature = "oci", test)), allow(dead_code))]
    pub(crate) fn replace_stderr_tail(&mut self, tail: Tail) {
        self.stderr_tail = tail;
    }

    /// Adds a note of the runner's own to the end of the log.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Adds notes of the runner's own to the end of the log, in order.
    pub(crate) fn add_notes(&mut self, notes: impl IntoIterator<Item = String>) {
        self.notes.extend(notes);
    }

    /// The captured log, with the notes appended (each on its own line, marked
    /// `[osa]`).
    pub(crate) fn finish(mut self) -> CapturedLog {
        for note in &self.notes {
            self.bytes
                .extend_from_slice(format!("\n[osa] {note}\n").as_bytes());
        }
        CapturedLog {
            bytes: self.bytes,
            truncated: self.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sink_caps_and_keeps_stderr_tail() {
        let mut sink = LogBuffer::new(10).with_stderr_head(512);
        sink.push(b"0123456", false);
        sink.push(b"789abcdef", true);
        for _ in 0..3000 {
            sink.push(b"noise ", true);
        }
        sink.push(b"MemoryError\n", true);
        assert!(sink.truncated);
        assert_eq!(sink.bytes, b"0123456789");
        assert_eq!(&sink.stderr_head[..9], b"789abcdef");
        assert!(sink.stderr_tail().len() <= STDERR_TAIL_BYTES);
        assert!(sink.stderr_tail().ends_with(b"MemoryError\n"));
        sink.add_notes(["note".to_string()]);
        let log = sink.finish();
        assert!(log.truncated);
        assert!(log.bytes.ends_with(b"[osa] note\n"));
    }

    #[test]
    fn log_buffer_caps() {
        let mut log = LogBuffer::new(10);
        assert!(log.push(b"0123", false));
        assert!(!log.push(b"456789abc", true));
        for _ in 0..3000 {
            log.push(b"noise ", true);
        }
        log.push(b"MemoryError\n", true);
        assert!(log.stderr_tail().len() <= STDERR_TAIL_BYTES);
        assert!(log.stderr_tail().ends_with(b"MemoryError\n"));
        log.notes.push("note".into());
        let log = log.finish();
        assert!(log.truncated);
        assert!(log.bytes.starts_with(b"0123456789\n[osa] note"));
    }

    /// A chunk of output and whether it came from stderr.
    type Chunk<'a> = (&'a [u8], bool);

    /// One chunk after another into a buffer of `cap`: the log, and what each push
    /// returned.
    fn captured(cap: usize, chunks: &[Chunk<'_>]) -> (CapturedLog, Vec<bool>) {
        let mut log = LogBuffer::new(cap);
        let pushed = chunks
            .iter()
            .map(|(chunk, stderr)| log.push(chunk, *stderr))
            .collect();
        (log.finish(), pushed)
    }

    /// A case of the cap table.
    struct CapCase<'a> {
        name: &'a str,
        cap: usize,
        chunks: &'a [Chunk<'a>],
        /// The bytes kept.
        kept: &'a [u8],
        truncated: bool,
        /// What each push returned.
        pushed: &'a [bool],
    }

    #[test]
    fn the_cap_keeps_the_first_bytes_and_marks_the_rest_dropped() {
        const E_ACUTE: &[u8] = "é".as_bytes(); // two bytes
        let case = |name, cap, chunks, kept, truncated, pushed| CapCase {
            name,
            cap,
            chunks,
            kept,
            truncated,
            pushed,
        };
        let cases = [
            case("empty", 8, &[], b"", false, &[]),
            case(
                "under the cap",
                8,
                &[(b"ab", false), (b"cd", true)],
                b"abcd",
                false,
                &[true, true],
            ),
            case(
                "exactly the cap is not truncated",
                4,
                &[(b"ab", false), (b"cd", true)],
                b"abcd",
                false,
                &[true, true],
            ),
            case(
                "an empty chunk at the cap drops nothing",
                4,
                &[(b"abcd", false), (b"", true)],
                b"abcd",
                false,
                &[true, true],
            ),
            case(
                "one byte past the cap",
                4,
                &[(b"abcd", false), (b"e", true)],
                b"abcd",
                true,
                &[true, false],
            ),
            case(
                "a chunk is cut where the cap falls",
                5,
                &[(b"abc", true), (b"defgh", false)],
                b"abcde",
                true,
                &[true, false],
            ),
            case(
                "a multi-byte character on the cap is cut in two",
                5,
                &[(b"abcd", false), (E_ACUTE, false)],
                &[b'a', b'b', b'c', b'd', 0xC3],
                true,
                &[true, false],
            ),
            case(
                "a multi-byte character ending on the cap is kept",
                6,
                &[(b"abcd", false), (E_ACUTE, false)],
                "abcdé".as_bytes(),
                false,
                &[true, true],
            ),
            case(
                "truncated stays set",
                2,
                &[(b"abc", false), (b"", false), (b"d", true)],
                b"ab",
                true,
                &[false, false, false],
            ),
            case(
                "a zero cap keeps nothing",
                0,
                &[(b"x", true)],
                b"",
                true,
                &[false],
            ),
        ];
        for case in cases {
            let (log, pushed) = captured(case.cap, case.chunks);
            assert_eq!(log.bytes, case.kept, "{}", case.name);
            assert_eq!(log.truncated, case.truncated, "{}", case.name);
            assert_eq!(pushed, case.pushed, "{}", case.name);
        }
        let (log, _) = captured(5, &[(b"abcd", false), (E_ACUTE, false)]);
        assert_eq!(String::from_utf8_lossy(&log.bytes), "abcd\u{FFFD}");
    }

    #[test]
    fn the_stderr_tail_is_the_end_of_stderr_whatever_the_cap() {
        let mut log = LogBuffer::new(4);
        log.push(b"MemoryError early\n", true);
        log.push(&[b'x'; STDERR_TAIL_BYTES], true);
        // stdout never enters the tail.
        log.push(b"stdout MemoryError\n", false);
        assert_eq!(log.stderr_tail(), &[b'x'; STDERR_TAIL_BYTES][..]);
        log.push(b"out of memory\n", true);
        assert_eq!(log.stderr_tail().len(), STDERR_TAIL_BYTES);
        assert!(log.stderr_tail().ends_with(b"xout of memory\n"));
        assert!(log.is_truncated());

        // A short stderr is kept whole; one chunk longer than twice the tail too is cut
        // to the tail.
        let mut tail = Tail::default();
        tail.push(b"short");
        assert_eq!(tail.bytes(), b"short");
        let mut long = vec![b'a'; 3 * STDERR_TAIL_BYTES];
        long.extend_from_slice(b"end");
        tail.push(&long);
        assert_eq!(tail.bytes().len(), STDERR_TAIL_BYTES);
        assert!(tail.bytes().ends_with(b"aend"));
        assert!(tail.bytes.len() <= 2 * STDERR_TAIL_BYTES);

        let mut replaced = Tail::default();
        replaced.push(b"read back");
        log.replace_stderr_tail(replaced);
        assert_eq!(log.stderr_tail(), b"read back");
    }

    #[test]
    fn the_stderr_head_is_kept_only_when_asked() {
        let mut without = LogBuffer::new(64);
        without.push(b"bwrap: setup failed\n", true);
        assert_eq!(without.stderr_head(), b"");

        let mut with = LogBuffer::new(2).with_stderr_head(8);
        with.push(b"stdout", false);
        with.push(b"bwrap", true);
        with.push(b": setup failed\n", true);
        // Past the log cap, and stdout is not part of it.
        assert_eq!(with.stderr_head(), b"bwrap: s");
    }

    #[test]
    fn notes_come_after_the_output_outside_the_cap() {
        let mut log = LogBuffer::new(3);
        log.push(b"abcdef", false);
        log.note("first");
        log.add_notes(None);
        log.add_notes(Some("second".to_string()));
        let log = log.finish();
        assert_eq!(log.bytes, b"abc\n[osa] first\n\n[osa] second\n");
        assert!(log.truncated);

        let mut quiet = LogBuffer::new(3);
        quiet.push(b"ok", false);
        assert_eq!(
            quiet.finish(),
            CapturedLog {
                bytes: b"ok".to_vec(),
                truncated: false
            }
        );
    }
}
