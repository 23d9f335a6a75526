//! Where encoded requests go: the [`Transport`] trait and the local
//! transports (in memory, for tests; a file of OTLP JSON lines, the
//! embedded default). The OTLP/HTTP transport is built on the same trait.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::encode::{EncodedRequest, Encoding};

/// How one export attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportResult {
    /// Every span was accepted.
    Success,
    /// The receiver accepted the request but rejected some spans (OTLP
    /// `partial_success.rejected_spans`); they are counted as rejected and
    /// never retried.
    PartialSuccess {
        /// Spans the receiver rejected.
        rejected: u64,
        /// Its explanation, if any.
        message: String,
    },
    /// The request failed for good (a final answer such as HTTP 400, 401,
    /// 403, 404, 413 or a redirect, or an error that retrying cannot fix);
    /// its spans are counted as failed (`Dropped::export_failed`) at once.
    Failed(String),
    /// The request failed in a way that may pass later, as the OTLP
    /// specification lists them: no connection (refused, reset, closed
    /// before answering), a timeout, or HTTP 429, 502, 503, 504 (after
    /// whatever quick retries the transport made itself).
    ///
    /// A running pipeline keeps the request and sends it again later, with
    /// exponential backoff (or after `retry_after`), for as long as the
    /// queue has room for it (see
    /// [`Pipeline`](crate::Pipeline#a-collector-outage)); a pipeline that
    /// is shutting down counts it as failed.
    Retryable {
        /// What went wrong (the last attempt's error).
        reason: String,
        /// How long the receiver asked to be left alone (`Retry-After`),
        /// if it said.
        retry_after: Option<Duration>,
    },
}

impl ExportResult {
    /// A retryable failure with no `Retry-After`.
    pub fn retryable(reason: impl Into<String>) -> Self {
        ExportResult::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// Counters of every attempt and its outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptStats {
    /// HTTP requests sent (or tried).
    pub attempts: u64,
    /// Attempts answered 2xx.
    pub succeeded: u64,
    /// Attempts answered with a status that is retried (429, 502, 503, 504;
    /// and a 417 to `Expect: 100-continue`, which the HTTP transport
    /// repeats at once without it).
    pub retryable_status: u64,
    /// Attempts answered with a status that is final (400, 500, ...).
    pub final_status: u64,
    /// Attempts that got no answer (refused, reset, timed out).
    pub connection_failed: u64,
    /// Retries made (attempts after the first of an export).
    pub retries: u64,
}

/// Whatever receives encoded batches: an OTLP/HTTP endpoint, a file, memory.
///
/// Implementations must be `Send + Sync`: the pipeline calls `export` from
/// its worker thread, one call at a time per transport.
pub trait Transport: Send + Sync + 'static {
    /// The encoding this transport wants (protobuf unless it says so).
    fn encoding(&self) -> Encoding {
        Encoding::Protobuf
    }

    /// Delivers one request. Should return by `deadline`; the pipeline's
    /// flush and shutdown never wait past their deadlines (a flush's own
    /// timeout; the shutdown's, which is its first call's) even if it does
    /// not. Return [`ExportResult::Retryable`] for a failure that may
    /// pass later (the receiver is down or overloaded): the pipeline keeps
    /// the request and calls `export` with it again later; return
    /// [`ExportResult::Failed`] for one that will not.
    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult;

    /// Delivers one request in a single attempt: the pipeline's retry of a
    /// request kept after a retryable failure, which the pipeline paces
    /// with its own backoff (see
    /// [A collector outage](crate::Pipeline#a-collector-outage)), so that
    /// a transport's own retries would only stack their waits on top of
    /// it, and keep a flush waiting. The default calls
    /// [`export`](Self::export); a transport that retries inside `export`
    /// overrides it (as `HttpTransport`, of the `http` feature, does).
    fn export_once(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        self.export(request, deadline)
    }

    /// Called once when the pipeline shuts down, after the last export.
    /// An error (a final `fsync` that failed: what was exported may not
    /// be on disk) makes the shutdown report not completed and is kept as
    /// [`Pipeline::last_error`](crate::Pipeline::last_error).
    fn shutdown(&self) -> Result<(), String> {
        Ok(())
    }

    /// Counters of every attempt and its outcome, for transports that make
    /// attempts (network ones); shown in
    /// [`ExportStats::attempts`](crate::ExportStats::attempts).
    fn attempts(&self) -> Option<AttemptStats> {
        None
    }
}

/// The seed's name for [`Transport`].
pub use Transport as TraceExporter;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an [`InMemory`] transport does with each export.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Accept everything.
    #[default]
    Accept,
    /// Fail every export (`ExportResult::Failed`).
    Fail,
    /// Fail every export as retryable (`ExportResult::Retryable`, no
    /// `Retry-After`): a collector that is down for now. Switch to
    /// `Accept` with [`InMemory::set_behavior`] to bring it back.
    Unavailable,
    /// Fail every `n`-th export, accept the others.
    FailEvery(u64),
    /// Accept the request but reject `n` of its spans (at most all).
    RejectSpans(u64),
    /// Block until [`InMemory::release`] is called (or forever): a collector
    /// that stopped answering. The deadline is ignored on purpose.
    Hang,
}

#[derive(Default)]
struct MemoryState {
    requests: Vec<EncodedRequest>,
    calls: u64,
    active: usize,
    max_active: usize,
    released: bool,
    shut_down: bool,
}

/// A transport that keeps every request it accepts, with configurable
/// latency and failure injection: the test double.
///
/// ```
/// use otlp_exporter::{Behavior, InMemory};
/// use std::time::Duration;
/// let t = InMemory::new().with_latency(Duration::from_millis(1)).with_behavior(Behavior::FailEvery(2));
/// assert_eq!(t.requests().len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct InMemory {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    state: Mutex<MemoryState>,
    released: Condvar,
    latency: Mutex<Duration>,
    behavior: Mutex<Behavior>,
    encoding: Mutex<Encoding>,
}

impl InMemory {
    /// Accepts everything, at once, in protobuf.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits this long in every export (bounded by the export deadline).
    pub fn with_latency(self, latency: Duration) -> Self {
        *lock(&self.inner.latency) = latency;
        self
    }

    /// Sets what each export does.
    pub fn with_behavior(self, behavior: Behavior) -> Self {
        self.set_behavior(behavior);
        self
    }

    /// Asks for JSON instead of protobuf.
    pub fn with_encoding(self, encoding: Encoding) -> Self {
        *lock(&self.inner.encoding) = encoding;
        self
    }

    /// Changes what later exports do (a collector that recovers, say).
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.inner.behavior) = behavior;
    }

    /// Lets every hung export return (as a failure) and later ones pass
    /// straight through `Hang`.
    pub fn release(&self) {
        lock(&self.inner.state).released = true;
        self.inner.released.notify_all();
    }

    /// The requests accepted so far (clones).
    pub fn requests(&self) -> Vec<EncodedRequest> {
        lock(&self.inner.state).requests.clone()
    }

    /// Spans in the requests accepted so far.
    pub fn span_count(&self) -> u64 {
        lock(&self.inner.state)
            .requests
            .iter()
            .map(|r| r.spans as u64)
            .sum()
    }

    /// Number of `export` calls so far, whatever their outcome.
    pub fn calls(&self) -> u64 {
        lock(&self.inner.state).calls
    }

    /// The most `export` calls that were ever running at the same time.
    pub fn max_concurrent(&self) -> usize {
        lock(&self.inner.state).max_active
    }

    /// True once the pipeline has shut the transport down.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.inner.state).shut_down
    }
}

impl Transport for InMemory {
    fn encoding(&self) -> Encoding {
        *lock(&self.inner.encoding)
    }

    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        {
            let mut state = lock(&self.inner.state);
            state.active += 1;
            state.max_active = state.max_active.max(state.active);
        }
        let result = self.export_inner(request, deadline);
        lock(&self.inner.state).active -= 1;
        result
    }

    fn shutdown(&self) -> Result<(), String> {
        lock(&self.inner.state).shut_down = true;
        Ok(())
    }
}

impl InMemory {
    fn export_inner(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        let latency = *lock(&self.inner.latency);
        if !latency.is_zero() {
            std::thread::sleep(latency.min(deadline.saturating_duration_since(Instant::now())));
        }
        let behavior = lock(&self.inner.behavior).clone();
        let mut state = lock(&self.inner.state);
        state.calls += 1;
        match behavior {
            Behavior::Accept => {}
            Behavior::Fail => return ExportResult::Failed("injected failure".into()),
            Behavior::Unavailable => {
                return ExportResult::retryable("injected outage: collector unavailable");
            }
            Behavior::FailEvery(n) if n > 0 && state.calls.is_multiple_of(n) => {
                return ExportResult::Failed("injected failure".into());
            }
            Behavior::FailEvery(_) => {}
            Behavior::RejectSpans(n) => {
                let rejected = n.min(request.spans as u64);
                state.requests.push(request.clone());
                return ExportResult::PartialSuccess {
                    rejected,
                    message: "injected partial success".into(),
                };
            }
            Behavior::Hang => {
                while !state.released {
                    state = self
                        .inner
                        .released
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                return ExportResult::Failed("hung export released".into());
            }
        }
        state.requests.push(request.clone());
        ExportResult::Success
    }
}

/// Appends every request to a file as one line of OTLP JSON (the format the
/// OpenTelemetry Collector's `otlpjsonfile` receiver reads). The embedded
/// default when no collector is configured.
///
/// # Whole requests or nothing
///
/// A span counts as exported only when its whole request, newline included,
/// is in the file. Each export:
///
/// 1. looks up the file's length (the end of the last whole line);
/// 2. writes the request and its newline straight to the file, unbuffered:
///    no bytes are held in memory between exports, so a failed request can
///    never reach the file later;
/// 3. with [`sync_every_request`](Self::sync_every_request), calls
///    `fsync` (`File::sync_data`);
/// 4. on any failure (disk full, I/O error) truncates the file back to the
///    length of step 1 (`File::set_len`), so no part of the failed request
///    stays behind, and the export fails: its spans are counted
///    `export_failed`. A later export can succeed once there is room again,
///    and its line starts where the last whole line ended.
/// 5. if the file refuses the truncation (an append-only file, `chattr
///    +a`; a sandbox that denies it), the part written stays as a *torn
///    line*: it is ended with a newline at once, or, with no room even
///    for that, before the next line is written (until then nothing is
///    written after it), and the export's error says a part of the request
///    stayed. A torn line never parses as JSON (it is a request cut short;
///    one cut just before its newline gets a `!` after it), so a reader
///    tells it by that and counts no span from it. A request whose line
///    is whole in the file although the export failed on the way (its
///    newline written after the failure; with `sync_every_request`, a
///    sync that failed) cannot be taken back either: it counts as
///    exported, since a reader finds it, and a failed sync is reported by
///    [`Transport::shutdown`].
///
/// So every line in the file is a whole request, whose spans are counted
/// exported, or a torn line, which does not parse and whose spans are
/// counted `export_failed`.
///
/// A request that would take the file past the process's file-size limit
/// (`RLIMIT_FSIZE`, `ulimit -f`) fails before anything is written: writing
/// past it raises `SIGXFSZ`, whose default action kills the process.
///
/// Durability: without `sync_every_request` the data is in the operating
/// system's cache when the export succeeds (it survives a crash of this
/// process, not of the machine), and [`Transport::shutdown`] syncs it to
/// disk (a file rotated away is synced when the transport leaves it). A
/// sync that fails there (a disk or quota that fills at write-back) is
/// reported: the pipeline's shutdown report says not completed, and
/// [`Pipeline::last_error`](crate::Pipeline::last_error) says why. With
/// `sync_every_request`, every export waits for the disk.
///
/// A file that already ends in a torn line (a previous process died while
/// writing, or a failed export's torn line was never ended) gets `!` and a
/// newline first, so that the torn line stays alone, never parses (it may
/// hold a whole request but its newline, counted failed), and every
/// request written here stays readable. A transport's `shutdown` ends a
/// torn line it still has pending the same way; one it cannot end (the
/// process's file-size limit) fails the shutdown, so the pipeline's report
/// says not completed, and the file's last line then has no newline: a
/// reader must take such a line as torn. A file this process may
/// write but not read (mode `0200`) gets that newline whenever it is not
/// empty: its last byte cannot be looked at, and an empty line is better
/// than a request glued to a torn one.
///
/// Requests must be OTLP JSON (this transport's [`encoding`](
/// Transport::encoding)): a protobuf request (a wrapping transport that
/// kept the default encoding) fails, its spans counted `export_failed`,
/// rather than write binary into a file of lines.
///
/// If the path is deleted or renamed while the transport is open (log
/// rotation), the next export opens (creates) the file at the path again
/// and writes there (on Unix, where the file's identity can be compared);
/// if it cannot (its directory is gone), the export fails rather than
/// write into a file no one can find. A path that cannot be looked up
/// but is not shown gone (its directory lost search permission: an error
/// other than `ENOENT` or `ENOTDIR`) keeps the file open for writing. A relative path is taken from the
/// working directory at [`open`](Self::open), once: a later change of
/// directory does not move the file.
///
/// # Pipes and devices
///
/// A path that is not a regular file (a FIFO, `/dev/stdout`, a character
/// device) is opened for writing only, without blocking (on Unix), and
/// gets each request as one line; nothing can be taken back there. What
/// the path names is decided by the descriptor opened (`fstat`), not by a
/// look at the path before, so a FIFO made there at the same moment is
/// still one:
///
/// - a FIFO must have its reader when the transport opens it: with none,
///   [`open`](Self::open) fails at once (rather than wait, or count spans
///   as exported into a pipe that nobody reads);
/// - a reader that does not keep up makes an export wait for room until
///   its deadline; one that cannot start the line by then is retried
///   ([`ExportResult::Retryable`]), one cut short at the deadline fails,
///   and the next line starts with a newline, so that the cut line stands
///   alone (a reader of lines finds it malformed, never merged into the
///   next);
/// - a reader that has gone fails the export (`EPIPE`: the pipeline's
///   threads block SIGPIPE, so even a host that restored its default
///   action is not killed; a transport called from a thread of your own
///   follows that thread's signal mask);
/// - a pipe removed from the path fails the exports until one is there
///   again (never a regular file made in its place);
/// - a [`Pipeline::shutdown`](crate::Pipeline::shutdown) whose deadline
///   passes while an export waits for room counts that export's spans as
///   timed out (the pipeline does not wait past its deadline), but the
///   export goes on until its own deadline (`export_timeout`): lines it
///   finishes meanwhile still reach the reader, spans counted dropped
///   that arrive anyway (found by review). Give the shutdown a deadline
///   past the export timeout where the count must match what the reader
///   gets.
///
/// One writer per file: two transports (or processes) appending to the
/// same file each write a line in one `writev` (a local file system
/// keeps it whole), but a failed write's truncation may cut the other's
/// lines, and a transport opened while the other writes a long line may
/// take that line, caught half written, for a torn one, and end it with
/// `!` and a newline, which then land after it as a line of their own
/// (found by review: a line that is no request, though no write failed;
/// the requests stay whole).
pub struct FileTransport {
    path: PathBuf,
    sync_every_request: bool,
    out: Mutex<FileState>,
}

struct FileState {
    file: File,
    /// A torn line that could not be cut back nor ended yet: it is ended
    /// (or cut) before the next line is written.
    torn: Option<Torn>,
    /// A line written to a pipe or device was cut short: the next line
    /// starts with a newline, to end it.
    cut_line: bool,
    /// Why a file rotated away could not be synced when it was left
    /// (`follow_path`): reported by `shutdown`.
    unsynced: Option<String>,
}

impl FileState {
    fn new(file: File) -> Self {
        FileState {
            file,
            torn: None,
            cut_line: false,
            unsynced: None,
        }
    }
}

impl FileTransport {
    /// Opens (creating if needed) `path` for appending, with the
    /// file-system access `fs` (`cx.fs()` inside the runtime,
    /// `FsAccess::from_ambient(ambient_authority())` outside it). A
    /// relative path is resolved against the working directory now. A FIFO
    /// with no reader is an error (see [Pipes and
    /// devices](Self#pipes-and-devices)).
    pub fn open(fs: runtime_cap::FsAccess, path: impl AsRef<Path>) -> std::io::Result<Self> {
        let _ = fs;
        let path = std::path::absolute(path.as_ref())?;
        let file = open_append(&path, true)?;
        Ok(FileTransport {
            path,
            sync_every_request: false,
            out: Mutex::new(FileState::new(file)),
        })
    }

    /// Calls `fsync` after every request (default: only at shutdown). An
    /// export then succeeds only once its request is on disk; a failed sync
    /// truncates the request away and fails the export.
    pub fn sync_every_request(mut self, yes: bool) -> Self {
        self.sync_every_request = yes;
        self
    }

    /// The file written to (absolute: see [`open`](Self::open)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reopens the path if it no longer names the open file (deleted or
    /// renamed away). An error if it cannot: writing on into a file that
    /// nobody can find any more would count spans as exported that no one
    /// can read.
    #[cfg(unix)]
    fn follow_path(&self, state: &mut FileState) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let ours = state.file.metadata();
        let stream = ours.as_ref().is_ok_and(|f| !f.is_file());
        let same = match (std::fs::metadata(&self.path), ours) {
            (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
            // The path cannot be looked up, but is not shown gone (its
            // directory lost search permission, say): the open file is
            // still there to write to (found by review: any error was
            // taken for a removal, and the exports failed).
            (Err(e), _) if !is_gone(&e) => true,
            // A pipe or device gone from the path is not made again as a
            // regular file (found by review: a consumer that removed its
            // FIFO to make a new one found a file there, and the spans
            // went into it): the export fails until one is back.
            (Err(e), _) if stream => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("the pipe or device is gone from the path: {e}"),
                ));
            }
            // Gone from the path: open a new one below. Our own handle
            // unreadable: keep it, the write will report the error.
            (Err(_), _) => false,
            (_, Err(_)) => true,
        };
        if !same {
            // In place of a pipe or device, only what is there (never a
            // regular file made by this transport, even if the path was
            // emptied again since it was looked at).
            let new = FileState::new(open_append(&self.path, !stream)?);
            let old = std::mem::replace(state, new);
            // What went into the file rotated away is synced as it is left
            // (the docs' promise; found by review: only the last file was).
            // A failure is kept for `shutdown` to report: those exports
            // were counted, and may not be on disk.
            state.unsynced = old.unsynced;
            if let Err(e) = sync_regular(&old.file) {
                state.unsynced.get_or_insert_with(|| {
                    format!(
                        "syncing the file rotated away from {}: {e}",
                        self.path.display()
                    )
                });
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn follow_path(&self, _state: &mut FileState) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a failed look-up of a path shows it gone (`ENOENT`, or
/// `ENOTDIR`: a directory on the way replaced by a file), as opposed to
/// one that could not be made (`EACCES` and the like).
#[cfg(unix)]
fn is_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// Opens `path` for appending: a regular file (created if `create`) gets
/// `!` and a newline first if it ends in a torn line; anything else (a FIFO, a
/// device) is a stream, write-only and non-blocking (see [Pipes and
/// devices](FileTransport#pipes-and-devices)).
///
/// What the path names is decided by `fstat` of the descriptor opened,
/// never by a look at the path before (found by review: a FIFO made
/// between the look and the open was opened as a regular file, for
/// reading and writing and blocking, so the transport was its own reader:
/// lines counted as exported into a pipe no one read, and a full pipe
/// blocked an export past its deadline for ever). The first open is
/// write-only and non-blocking whatever is there, so a FIFO with no
/// reader is refused at once (`ENXIO`), and a FIFO is never opened for
/// reading (which would make a writer's reader see end-of-file when it
/// is closed again). Symbolic links are followed, as before.
#[cfg(unix)]
fn open_append(path: &Path, create: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = OpenOptions::new()
        .append(true)
        .create(create)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| explain_open_error(path, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        // A pipe or a device, kept write-only and non-blocking.
        return Ok(file);
    }
    // A regular file: blocking, as a file of lines is written (a disk
    // never answers `EAGAIN`, but a file system with leases could).
    set_nonblocking(&file, false)?;
    let last = last_byte_of(path, &meta);
    end_torn_line(path, &mut file, meta.len(), last)?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_append(path: &Path, create: bool) -> std::io::Result<File> {
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
        && !meta.is_dir()
    {
        return open_stream(path, &meta);
    }
    let mut file = OpenOptions::new().create(create).append(true).open(path)?;
    let meta = file.metadata()?;
    let last = last_byte_of(path, &meta);
    end_torn_line(path, &mut file, meta.len(), last)?;
    Ok(file)
}

/// The last byte of the regular file `meta` describes (opened at `path`),
/// read through a second, read-only descriptor: `Err(())` if it cannot be
/// read (a file this process may write but not read, mode `0200`), or if
/// the path names another file by now (on Unix, compared by device and
/// inode); `Ok(None)` for an empty file.
fn last_byte_of(path: &Path, meta: &std::fs::Metadata) -> Result<Option<u8>, ()> {
    if meta.len() == 0 {
        return Ok(None);
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Never waits, whatever took the path's place meanwhile.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut reader = options.open(path).map_err(drop)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let now = reader.metadata().map_err(drop)?;
        if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
            return Err(());
        }
    }
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut last = [0u8];
    reader.seek(SeekFrom::Start(meta.len() - 1)).map_err(drop)?;
    reader.read_exact(&mut last).map_err(drop)?;
    Ok(Some(last[0]))
}

/// Ends a torn last line (a process died mid-write, or an export failed
/// and its torn line was never ended) with `!` and a newline, so that the
/// first request written here starts a line of its own and the torn one
/// does not parse: it may hold a whole request but its newline, whose
/// spans were counted failed (found by review: a plain newline made such
/// a line a readable request once the file was opened again). `last` is
/// the file's last byte, `Err(())` if it could not be read: a file that
/// is not empty then gets a newline whatever it ends in (an empty line at
/// worst; found by review: a request was glued to a torn last line, and
/// its spans counted exported could not be read).
fn end_torn_line(
    path: &Path,
    file: &mut File,
    len: u64,
    last: Result<Option<u8>, ()>,
) -> std::io::Result<()> {
    let ending: &[u8] = match last {
        Ok(Some(b)) if b != b'\n' => b"!\n",
        Ok(_) => return Ok(()),
        Err(()) if len > 0 => b"\n",
        Err(()) => return Ok(()),
    };
    // Within the file-size limit only (found by review: a file left torn
    // at the limit raised SIGXFSZ here, at open, again).
    ending_fits(file, len, ending, || format!("{}", path.display()))?;
    file.write_all(ending)
}

/// `Err(FileTooLarge)` if `ending` (the end of a torn line) written at
/// `len` would pass the process's file-size limit, where a write raises
/// SIGXFSZ, which kills the process unless ignored. `file` names the file
/// for the message.
fn ending_fits(
    target: &mut impl AppendTarget,
    len: u64,
    ending: &[u8],
    file: impl FnOnce() -> String,
) -> std::io::Result<()> {
    if target
        .max_len()
        .is_some_and(|max| len.saturating_add(ending.len() as u64) > max)
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "{} ends in a torn line at the process's file-size limit (RLIMIT_FSIZE, \
                 {len} bytes): no room for the ending that would close it",
                file()
            ),
        ));
    }
    Ok(())
}

/// Opens a regular file for appending without reading it (as for a file
/// this process may write but not read): a file that is not empty gets a
/// newline first.
#[cfg(test)]
fn open_write_only(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    end_torn_line(path, &mut file, len, Err(()))?;
    Ok(file)
}

/// Says what a path that cannot be opened for writing is, where the
/// operating system's error does not: `ENXIO` is a FIFO with no reader,
/// a socket, or a device that is not there.
#[cfg(unix)]
fn explain_open_error(path: &Path, e: std::io::Error) -> std::io::Error {
    use std::os::unix::fs::FileTypeExt as _;
    if e.raw_os_error() != Some(libc::ENXIO) {
        return e;
    }
    // A look at the path for the message only: what it names may change
    // meanwhile, the error stays `ENXIO`.
    let kind = std::fs::metadata(path).map(|m| m.file_type());
    let why = match kind {
        Ok(k) if k.is_fifo() => "is a FIFO with no reader (start its reader first)",
        Ok(k) if k.is_socket() => "is a socket, which cannot be opened as a file",
        Ok(k) if k.is_char_device() || k.is_block_device() => "names no device that can be opened",
        // Changed since the open.
        _ => "is a FIFO with no reader (start its reader first), or a device that is not there",
    };
    std::io::Error::new(e.kind(), format!("{} {why}: {e}", path.display()))
}

/// Sets or clears `O_NONBLOCK` on `file`.
#[cfg(unix)]
fn set_nonblocking(file: &File, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: `fcntl` on a descriptor we own, with int arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if want != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, want) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Syncs `file` to disk if it is a regular file (a pipe or a device has
/// nothing to sync, and says so with an error).
fn sync_regular(file: &File) -> std::io::Result<()> {
    if file.metadata().is_ok_and(|m| m.is_file()) {
        file.sync_data()
    } else {
        Ok(())
    }
}

/// Opens a pipe or device for writing only (where it is known before the
/// open: no `fstat` of an unopened path on this platform).
#[cfg(not(unix))]
fn open_stream(path: &Path, _meta: &std::fs::Metadata) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

/// Writes `bytes` to a pipe or device opened by [`open_append`], waiting
/// for room until `deadline`. On failure, how much was written with it.
fn write_stream(
    file: &mut File,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), (usize, std::io::Error)> {
    use std::io::ErrorKind;
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((done, ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Err(e) = wait_writable(file, deadline) {
                    return Err((done, e));
                }
            }
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Waits until `file` takes more bytes, or fails with `TimedOut` at
/// `deadline`.
#[cfg(unix)]
fn wait_writable(file: &File, deadline: Instant) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "its reader took no more bytes before the export's deadline",
            ));
        }
        let mut fd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // Rounded up: a wait of less than a millisecond is not a busy loop.
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid `pollfd`, for the length of the call.
        let ready = unsafe { libc::poll(&mut fd, 1, ms) };
        if ready > 0 {
            // Writable, or an error the next write reports (POLLERR,
            // POLLHUP: `EPIPE`).
            return Ok(());
        }
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(not(unix))]
fn wait_writable(_file: &File, _deadline: Instant) -> std::io::Result<()> {
    // Opened blocking: a write does not report `WouldBlock`.
    Ok(())
}

/// What [`append_whole`] needs from a file: the seam where tests put a
/// disk that fills up.
pub(crate) trait AppendTarget {
    /// Its length now.
    fn end(&mut self) -> std::io::Result<u64>;
    /// Appends all of `bytes` (or fails, having appended some).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Appends `body` and a newline (or fails, having appended some).
    fn append_line(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.append(body)?;
        self.append(b"\n")
    }
    /// Cuts it back to `len` bytes.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
    /// Waits until what was appended is on disk.
    fn sync(&mut self) -> std::io::Result<()>;
    /// The longest the process may make it (`RLIMIT_FSIZE`), if limited.
    fn max_len(&mut self) -> Option<u64> {
        None
    }
}

impl AppendTarget for File {
    fn end(&mut self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }
    /// The line and its newline in one `writev` where it takes them all
    /// (the usual case): an append that another writer of the same file
    /// cannot split (two processes on the default file), with no copy of
    /// the body.
    fn append_line(&mut self, body: &[u8]) -> std::io::Result<()> {
        let parts = [std::io::IoSlice::new(body), std::io::IoSlice::new(b"\n")];
        let n = loop {
            match self.write_vectored(&parts) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n < body.len() {
            self.write_all(&body[n..])?;
            self.write_all(b"\n")
        } else if n == body.len() {
            self.write_all(b"\n")
        } else {
            Ok(())
        }
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
    #[cfg(unix)]
    fn max_len(&mut self) -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: writes one `rlimit`, ours.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) };
        // `rlim_t` is `u64` on Linux, not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        let cur = limit.rlim_cur as u64;
        (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(cur)
    }
}

/// A line [`append_whole`] left torn and could not cut back: where it
/// starts, and the length of the request body it is a part of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Torn {
    at: u64,
    body: u64,
}

/// Why [`append_whole`] failed, and what of the request stayed in the
/// file.
#[derive(Debug)]
pub(crate) struct AppendError {
    pub(crate) error: std::io::Error,
    pub(crate) kept: Kept,
}

/// What of a failed request stayed in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Nothing: not written, or cut back.
    Nothing,
    /// A part, as a torn line that could not be cut back (ended by a
    /// newline now, or before the next line).
    Torn,
    /// Perhaps a part: the file's length could not be looked at after the
    /// failure (it is looked at again, and any torn line ended, before the
    /// next line).
    Unknown,
}

impl From<std::io::Error> for AppendError {
    fn from(error: std::io::Error) -> Self {
        AppendError {
            error,
            kept: Kept::Nothing,
        }
    }
}

/// Appends `body` and a newline to `target`, whole or as a torn line no
/// reader takes for a request (see [`FileTransport`]). `torn` carries a
/// torn line that could not be ended from one call to the next. On
/// success, `Some` error when the line is whole in the file but its sync
/// failed and it could not be taken back: it counts as written (a reader
/// finds it), and the sync failure is reported at shutdown.
pub(crate) fn append_whole(
    target: &mut impl AppendTarget,
    torn: &mut Option<Torn>,
    body: &[u8],
    sync: bool,
) -> Result<Option<std::io::Error>, AppendError> {
    if let Some(t) = *torn {
        end_torn(target, t)?;
        *torn = None;
    }
    let start = target.end()?;
    if let Some(max) = target.max_len() {
        let end = start.saturating_add(body.len() as u64 + 1);
        if end > max {
            // Refused before a byte is written: past the limit, `write`
            // raises SIGXFSZ, which kills the process unless ignored.
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the request ({} bytes) would take the file to {end} bytes, past the process's \
                     file-size limit (RLIMIT_FSIZE) of {max}",
                    body.len() + 1
                ),
            )
            .into());
        }
    }
    let error = match target.append_line(body) {
        Ok(()) if !sync => return Ok(None),
        Ok(()) => match target.sync() {
            Ok(()) => return Ok(None),
            Err(e) => e,
        },
        Err(e) => e,
    };
    let this = Torn {
        at: start,
        body: body.len() as u64,
    };
    // Cut back only what is past `start`: a file cut shorter meanwhile
    // (a `copytruncate` rotation) must not grow back, `start` bytes of
    // zeros in front of the next line (found by review).
    let len = match target.end() {
        Ok(len) if len <= start => return Err(error.into()),
        Ok(_) if target.cut(start).is_ok() => return Err(error.into()),
        Ok(len) => len,
        Err(_) => {
            // How much is there is not known: looked at again before the
            // next line.
            *torn = Some(this);
            return Err(AppendError {
                error,
                kept: Kept::Unknown,
            });
        }
    };
    // The cut is refused (an append-only file, `chattr +a`; a sandbox
    // that denies truncation): what was written stays. Found by review:
    // the transport then wrote nothing more for the life of the process.
    let kept = len - start;
    if kept == this.body + 1 {
        // The whole line is there, newline and all: only its sync failed.
        // A reader counts it, so it counts as exported.
        return Ok(Some(error));
    }
    if kept == this.body {
        // The whole request but its newline: ending it makes it whole.
        if target.append(b"\n").is_ok() {
            let synced = if sync { target.sync().err() } else { None };
            return Ok(synced);
        }
        *torn = Some(this);
        return Err(AppendError {
            error,
            kept: Kept::Torn,
        });
    }
    // A part: a torn line, ended with a newline (now, or before the next
    // line) so that every later line stands whole on its own.
    if target.append(b"\n").is_err() {
        *torn = Some(this);
    }
    Err(AppendError {
        error,
        kept: Kept::Torn,
    })
}

/// Ends a torn line still pending (at shutdown): `Some` error, the line
/// still pending, if it cannot be ended.
fn end_pending(target: &mut impl AppendTarget, torn: &mut Option<Torn>) -> Option<std::io::Error> {
    let t = (*torn)?;
    match end_torn(target, t) {
        Ok(()) => {
            *torn = None;
            None
        }
        Err(e) => Some(e),
    }
}

/// Ends the torn line `t` left by a failed [`append_whole`] before the
/// next one is written: cut back if the file allows it now, else ended
/// with a newline (after a `!` where the line holds the whole request
/// but its newline, which would otherwise read as a request whose spans
/// were counted failed). An error if neither can be done: nothing is
/// written after a torn line that is not ended.
fn end_torn(target: &mut impl AppendTarget, t: Torn) -> std::io::Result<()> {
    let len = target.end()?;
    if len <= t.at || target.cut(t.at).is_ok() {
        // Cut back (by us, or by someone else meanwhile).
        return Ok(());
    }
    let ending: &[u8] = if len - t.at == t.body { b"!\n" } else { b"\n" };
    // Within the file-size limit only, as at open (`end_torn_line`; found
    // by review: a torn line that ended one byte short of the limit took
    // the `!` to it, and its newline raised SIGXFSZ). Nothing is written
    // then, and the line stays pending: no line goes after it.
    ending_fits(target, len, ending, || "the file".to_owned())?;
    target.append(ending)
}

impl Transport for FileTransport {
    fn encoding(&self) -> Encoding {
        Encoding::Json
    }

    fn export(&self, request: &EncodedRequest, deadline: Instant) -> ExportResult {
        if request.encoding != Encoding::Json {
            // Binary in a file of lines would be read as garbage, its first
            // byte (0x0a) a newline (found by review).
            return ExportResult::Failed(format!(
                "{}: FileTransport writes OTLP JSON lines, and this request is {:?} (a \
                 transport that wraps FileTransport must say Encoding::Json in its encoding())",
                self.path.display(),
                request.encoding
            ));
        }
        let mut state = lock(&self.out);
        if let Err(e) = self.follow_path(&mut state) {
            return ExportResult::Failed(format!(
                "{} was removed or replaced and cannot be opened again: {e}",
                self.path.display()
            ));
        }
        let FileState {
            file,
            torn,
            cut_line,
            unsynced,
        } = &mut *state;
        let result = if file.metadata().is_ok_and(|m| m.is_file()) {
            match append_whole(file, torn, &request.body, self.sync_every_request) {
                Ok(None) => Ok(()),
                Ok(Some(e)) => {
                    // Whole in the file, and kept there: exported, but maybe
                    // not on disk, which the shutdown reports.
                    unsynced.get_or_insert_with(|| {
                        format!(
                            "syncing {} to disk: {e} (a request already in the file could not be \
                             taken back)",
                            self.path.display()
                        )
                    });
                    Ok(())
                }
                Err(AppendError { error, kept }) if kept != Kept::Nothing => {
                    let part = if kept == Kept::Torn {
                        "a part of this request stayed"
                    } else {
                        "a part of this request may have stayed"
                    };
                    return ExportResult::Failed(format!(
                        "writing {}: {error} ({part} in the file as a torn line, which could not \
                         be cut back; it is ended by a newline, now or before the next line, and \
                         does not parse as a request)",
                        self.path.display()
                    ));
                }
                Err(AppendError { error, .. }) => Err(error),
            }
        } else {
            // A pipe or device (`/dev/stdout`): nothing to truncate; the
            // line as one write where the reader has room, and a line cut
            // short before ended first.
            let mut line = Vec::with_capacity(request.body.len() + 2);
            let ending = usize::from(*cut_line);
            if *cut_line {
                line.push(b'\n');
            }
            line.extend_from_slice(&request.body);
            line.push(b'\n');
            match write_stream(file, &line, deadline) {
                Ok(()) => {
                    *cut_line = false;
                    Ok(())
                }
                Err((written, e)) if written > ending => {
                    // Past the newline that ended an earlier cut line, a
                    // part of this one is out: it is cut now.
                    *cut_line = true;
                    return ExportResult::Failed(format!(
                        "writing {}: {e} (the line was cut short after {written} of its {} \
                         bytes; the next starts with a newline)",
                        self.path.display(),
                        line.len()
                    ));
                }
                Err((written, e)) => {
                    // Nothing of this request is out (at most the newline
                    // that ends the cut line before it, which then needs no
                    // other).
                    if written == ending {
                        *cut_line = false;
                    }
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        return ExportResult::retryable(format!(
                            "writing {}: {e} (nothing of this request was written)",
                            self.path.display()
                        ));
                    }
                    Err(e)
                }
            }
        };
        match result {
            Ok(()) => ExportResult::Success,
            Err(e) => ExportResult::Failed(format!(
                "writing {}: {e} (nothing of this request was kept)",
                self.path.display()
            )),
        }
    }

    fn shutdown(&self) -> Result<(), String> {
        let mut state = lock(&self.out);
        // A torn line still pending is ended now: a reader that takes an
        // unended last line as a line would read a request counted failed.
        // One that cannot be ended (the file-size limit, a full append-only
        // disk) is reported, so that the shutdown is not `completed` (found
        // by review: it said nothing, and the file ended in a request,
        // whole but for its newline, whose spans were counted failed).
        let FileState { file, torn, .. } = &mut *state;
        let torn = end_pending(file, torn);
        sync_regular(&state.file)
            .map_err(|e| format!("syncing {} to disk: {e}", self.path.display()))?;
        if let Some(e) = torn {
            return Err(format!(
                "{} ends in a torn line that could not be ended ({e}): its last line, \
                 without a newline, holds a request whose spans were counted failed \
                 (a reader must take a last line without a newline as torn)",
                self.path.display()
            ));
        }
        match &state.unsynced {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with room for `room` bytes that fails writes past it after
    /// writing what fits (as `write(2)` does on ENOSPC or EFBIG), and can be
    /// told to fail truncation and sync.
    struct Disk {
        data: Vec<u8>,
        room: usize,
        fail_set_len: bool,
        fail_sync: bool,
        /// Someone else cuts the file to this length as a write fails
        /// (a `copytruncate` rotation racing a full disk).
        cut_by_others_on_failure: Option<usize>,
        /// Room made as a write fails (space freed by someone else).
        room_after_failure: Option<usize>,
        /// The process's file-size limit: a write past it would raise
        /// SIGXFSZ, which kills the process (here: panics).
        limit: Option<u64>,
    }

    impl Disk {
        fn new(room: usize) -> Self {
            Disk {
                data: Vec::new(),
                room,
                fail_set_len: false,
                fail_sync: false,
                cut_by_others_on_failure: None,
                room_after_failure: None,
                limit: None,
            }
        }

        fn lines(&self) -> Vec<&[u8]> {
            assert!(
                self.data.is_empty() || self.data.ends_with(b"\n"),
                "no torn line at the end: {:?}",
                String::from_utf8_lossy(&self.data)
            );
            self.data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect()
        }
    }

    impl AppendTarget for Disk {
        fn end(&mut self) -> std::io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            // `write_all` would reach the limit with bytes left, and the
            // write there raises the signal.
            if let Some(limit) = self.limit {
                assert!(
                    (self.data.len() + bytes.len()) as u64 <= limit,
                    "a write past the file-size limit: SIGXFSZ"
                );
            }
            let fits = self.room.saturating_sub(self.data.len()).min(bytes.len());
            self.data.extend_from_slice(&bytes[..fits]);
            if fits < bytes.len() {
                if let Some(len) = self.cut_by_others_on_failure.take() {
                    self.data.truncate(len);
                }
                if let Some(room) = self.room_after_failure.take() {
                    self.room = room;
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ));
            }
            Ok(())
        }
        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            if self.fail_set_len {
                return Err(std::io::Error::other("truncate failed"));
            }
            // As `set_len`: a cut to a greater length grows the file with
            // zeros.
            self.data.resize(len as usize, 0);
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            if self.fail_sync {
                return Err(std::io::Error::other("EIO"));
            }
            Ok(())
        }
        fn max_len(&mut self) -> Option<u64> {
            self.limit
        }
    }

    /// Found by review: a torn line holding the whole request but its
    /// newline, left by a full append-only disk one byte short of the
    /// process's file-size limit (the check before the write passed: the
    /// line and its newline fitted). Ending it later (before the next line,
    /// or at shutdown) wrote `!` and a newline, one byte past the limit:
    /// SIGXFSZ killed the process. Now nothing is written, the line stays
    /// pending, and the export fails with `FileTooLarge`.
    #[test]
    fn a_torn_line_at_the_file_size_limit_is_never_ended_past_it() {
        let mut disk = Disk::new(7);
        disk.fail_set_len = true;
        disk.limit = Some(8);
        let mut torn = None;
        // The request fits, its newline does not (the disk is full).
        let e = append_whole(&mut disk, &mut torn, b"request", false).unwrap_err();
        assert_eq!(e.kept, Kept::Torn);
        assert_eq!(torn, Some(Torn { at: 0, body: 7 }));
        disk.room = 100; // room again, but not under the limit
        let e = append_whole(&mut disk, &mut torn, b"next", false).unwrap_err();
        assert_eq!(
            e.error.kind(),
            std::io::ErrorKind::FileTooLarge,
            "{}",
            e.error
        );
        assert_eq!(disk.data, b"request", "nothing written past it");
        assert!(torn.is_some(), "still pending: no line goes after it");
        // At shutdown too: reported (the transport's shutdown fails with
        // it, so the pipeline's is not completed), nothing written.
        let e = end_pending(&mut disk, &mut torn).expect("reported");
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(disk.data, b"request");
        assert!(torn.is_some());
        // Once the limit allows it, ended.
        disk.limit = None;
        assert!(end_pending(&mut disk, &mut torn).is_none());
        assert!(torn.is_none());
        assert_eq!(disk.data, b"request!\n");
    }

    #[test]
    fn a_request_that_does_not_fit_leaves_nothing_and_the_next_one_starts_clean() {
        let mut disk = Disk::new(25);
        let mut torn = None;
        append_whole(&mut disk, &mut torn, b"first-request", false).unwrap();
        assert!(append_whole(&mut disk, &mut torn, b"second-request-too-big", false).is_err());
        assert_eq!(disk.lines(), [&b"first-request"[..]], "failed bytes gone");
        append_whole(&mut disk, &mut torn, b"third", false).unwrap();
        assert_eq!(disk.lines(), [&b"first-request"[..], b"third"]);
        // The newline alone not fitting is a failure too, and leaves nothing.
        let mut disk = Disk::new(5);
        assert!(append_whole(&mut disk, &mut torn, b"12345", false).is_err());
        assert!(disk.data.is_empty());
    }

    /// Found by review: after one full-disk failure, a file that cannot
    /// be truncated (`chattr +a`, a sandbox that denies it) made every
    /// later export fail for the life of the process, and the error said
    /// nothing of the request was kept though a part of it was. The torn
    /// line is ended with a newline (at once, or before the next line once
    /// there is room), and writing goes on.
    #[test]
    fn a_torn_line_that_cannot_be_cut_is_ended_and_writing_goes_on() {
        let mut disk = Disk::new(10);
        let mut torn = None;
        append_whole(&mut disk, &mut torn, b"ok", false).unwrap();
        disk.fail_set_len = true;
        // No room even for the newline: ended before the next line.
        let e = append_whole(&mut disk, &mut torn, b"much-too-long", false).unwrap_err();
        assert_eq!(e.kept, Kept::Torn, "a part of the request stayed");
        assert_eq!(torn, Some(Torn { at: 3, body: 13 }));
        assert_eq!(disk.data, b"ok\nmuch-to");
        // Still full: nothing is written after the torn line, and this
        // request left nothing.
        let e = append_whole(&mut disk, &mut torn, b"next", false).unwrap_err();
        assert_eq!(e.kept, Kept::Nothing);
        assert_eq!(disk.data, b"ok\nmuch-to");
        disk.room = 1000;
        append_whole(&mut disk, &mut torn, b"next", false).unwrap();
        assert_eq!(torn, None);
        assert_eq!(disk.lines(), [&b"ok"[..], b"much-to", b"next"]);
        // Room for the newline as the write fails (space freed meanwhile):
        // ended at once.
        disk.room = disk.data.len() + 4;
        disk.room_after_failure = Some(disk.data.len() + 5);
        let e = append_whole(&mut disk, &mut torn, b"0123456789", false).unwrap_err();
        assert_eq!(e.kept, Kept::Torn);
        assert_eq!(torn, None);
        disk.room = 1000;
        append_whole(&mut disk, &mut torn, b"last", false).unwrap();
        assert_eq!(
            disk.lines(),
            [&b"ok"[..], b"much-to", b"next", b"0123", b"last"]
        );
    }

    /// The same with the whole request written but its newline: ending
    /// it at once makes it whole (exported); ended later, after the
    /// export failed, it gets a `!` first, so that it does not read as a
    /// request whose spans were counted failed. A whole line whose sync
    /// failed stays, counted exported, the sync failure reported.
    #[test]
    fn a_whole_request_that_cannot_be_cut_counts_as_what_a_reader_finds() {
        let mut disk = Disk::new(7);
        let mut torn = None;
        disk.fail_set_len = true;
        append_whole(&mut disk, &mut torn, b"ok", false).unwrap();
        let e = append_whole(&mut disk, &mut torn, b"full", false).unwrap_err();
        assert_eq!(e.kept, Kept::Torn);
        assert_eq!(torn, Some(Torn { at: 3, body: 4 }));
        disk.room = 1000;
        append_whole(&mut disk, &mut torn, b"next", false).unwrap();
        assert_eq!(disk.lines(), [&b"ok"[..], b"full!", b"next"]);
        // Room for the body, not its newline, then for the newline alone.
        let mut disk = Disk::new(7);
        disk.fail_set_len = true;
        append_whole(&mut disk, &mut torn, b"ok", false).unwrap();
        disk.room_after_failure = Some(1000);
        assert!(matches!(
            append_whole(&mut disk, &mut torn, b"full", false),
            Ok(None)
        ));
        assert_eq!(disk.lines(), [&b"ok"[..], b"full"]);
        // Written whole, the sync failed, the cut refused.
        disk.fail_sync = true;
        assert!(matches!(
            append_whole(&mut disk, &mut torn, b"synced?", true),
            Ok(Some(_))
        ));
        assert_eq!(disk.lines(), [&b"ok"[..], b"full", b"synced?"]);
    }

    /// A reviewer's case: the file was cut short by someone else (a
    /// `copytruncate` rotation) while a write failed; cutting it back to
    /// where the failed request started grew it again, with zeros, in front
    /// of the next request (counted exported, unreadable).
    #[test]
    fn a_failure_never_grows_a_file_someone_else_cut_short() {
        let mut disk = Disk::new(30);
        let mut torn = None;
        append_whole(&mut disk, &mut torn, b"first-request", false).unwrap();
        disk.cut_by_others_on_failure = Some(0);
        assert!(append_whole(&mut disk, &mut torn, b"second-request-too-big", false).is_err());
        append_whole(&mut disk, &mut torn, b"third", false).unwrap();
        assert_eq!(disk.lines(), [&b"third"[..]]);
    }

    /// A reviewer's case: a file this process may write but not read
    /// (mode `0200`) that ends in a torn line got the next request glued
    /// onto it. Opened write-only (as for such a file), a file that is not
    /// empty gets a newline first.
    #[test]
    fn a_file_opened_without_reading_gets_a_newline_before_the_first_request() {
        let dir = std::env::temp_dir().join(format!("otlp-wo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("torn.jsonl");
        std::fs::write(&path, b"{\"resourceSpans\":[{\"reso").unwrap();
        let mut file = open_write_only(&path).unwrap();
        file.write_all(b"{}\n").unwrap();
        drop(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"resourceSpans\":[{\"reso\n{}\n");
        // An empty file gets nothing.
        std::fs::write(&path, b"").unwrap();
        drop(open_write_only(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reviewer's case: a protobuf request (a wrapping transport that
    /// kept the default encoding) was written into the file of JSON lines
    /// as binary, and counted exported. It now fails.
    #[test]
    fn a_protobuf_request_is_refused_not_written() {
        use crate::{Encoder, Resource, SpanData};
        let dir = std::env::temp_dir().join(format!("otlp-pb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spans.jsonl");
        let fs = runtime_cap::FsAccess::from_ambient(runtime_cap::ambient_authority());
        let file = FileTransport::open(fs, &path).unwrap();
        let encoded =
            Encoder::new(Resource::new("t")).encode(&[SpanData::new("s")], Encoding::Protobuf);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let result = file.export(&encoded.requests[0], deadline);
        assert!(
            matches!(&result, ExportResult::Failed(why) if why.contains("JSON")),
            "{result:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        let json = Encoder::new(Resource::new("t")).encode(&[SpanData::new("s")], Encoding::Json);
        assert!(matches!(
            file.export(&json.requests[0], deadline),
            ExportResult::Success
        ));
        assert_eq!(file.shutdown(), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_sync_takes_the_request_back() {
        let mut disk = Disk::new(1000);
        let mut torn = None;
        append_whole(&mut disk, &mut torn, b"a", true).unwrap();
        disk.fail_sync = true;
        assert!(append_whole(&mut disk, &mut torn, b"b", true).is_err());
        append_whole(&mut disk, &mut torn, b"c", false).unwrap();
        assert_eq!(disk.lines(), [&b"a"[..], b"c"]);
    }
}
