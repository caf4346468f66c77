//! The store: runs, step executions with their attempts, resume inputs, subscriptions and an
//! append-only event log. `Store` is the small interface the interpreter needs (a PostgreSQL
//! backend for many workers can implement it later); `SqliteStore` is the default, embedded one.

use super::error::{RunError, Unreadable};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

pub type Result<T> = std::result::Result<T, RunError>;

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub inputs: Value,
    pub outputs: Option<Value>,
    pub error: Option<Value>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The checked program, as JSON (`ir::Program`), and its hash.
    pub program: String,
    pub program_hash: String,
    pub env: Option<String>,
    /// Config values the run was started with.
    pub configs: Value,
    pub secret_names: Vec<String>,
    pub owner: Option<String>,
    pub heartbeat_ms: i64,
    /// Path of the input step a suspended run waits on.
    pub waiting: Option<String>,
}

impl RunRecord {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            status: self.status.clone(),
            outputs: self.outputs.clone(),
            error: self.error.clone(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        }
    }
}

/// A run as `orchc runs` lists it.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub outputs: Option<Value>,
    pub error: Option<Value>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Clone, Debug)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub inputs: Value,
    pub program: String,
    pub program_hash: String,
    pub env: Option<String>,
    pub configs: Value,
    pub secret_names: Vec<String>,
    pub owner: String,
}

#[derive(Clone, Debug)]
pub struct StepRecord {
    pub path: String,
    pub step: String,
    /// `running`, `completed`, `failed`, `suspended`, `compensated`.
    pub status: String,
    pub reads: Value,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub attempts: Vec<AttemptRecord>,
}

/// One attempt of a step, as its row's `attempts` list holds it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct AttemptRecord {
    pub n: i64,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct SubscriptionRecord {
    pub id: String,
    pub product: String,
    pub customer: String,
    pub state: String,
    /// The whole subscription value (see `run::value`).
    pub value: Value,
    pub locked_by: Option<String>,
    pub version: i64,
    pub updated_ms: i64,
}

/// A subscription as `orchc subscriptions` lists it.
#[derive(Clone, Debug)]
pub struct SubscriptionSummary {
    pub id: String,
    pub product: String,
    pub customer: String,
    pub state: String,
    pub locked_by: Option<String>,
    pub version: i64,
}

/// Why `claim` did not take a run.
#[derive(Clone, Debug)]
pub enum Refused {
    /// Another live process holds it (its owner id).
    Owner(String),
    /// The run changed since it was read: its status now.
    Changed(String),
}

#[derive(Clone, Debug)]
pub struct EventRecord {
    pub seq: i64,
    pub run_id: String,
    pub at_ms: i64,
    pub kind: String,
    pub detail: Value,
}

/// The writes of the interpreter's hot path: one per attempt start and one per completed step.
#[derive(Clone, Debug)]
pub enum StepWrite {
    /// Attempt `n` of the step at `path` starts (at `at_ms`: the write may be committed later).
    Start { run: String, path: String, step: String, n: i64, reads: Value, at_ms: i64 },
    /// Attempt `n` failed; `permanent` when the step will not try again.
    Fail { run: String, path: String, n: i64, at_ms: i64, error: String, permanent: bool },
    /// The step's outputs, its completion, the compensation it registers and the subscriptions it
    /// returns.
    Complete {
        run: String,
        path: String,
        n: i64,
        at_ms: i64,
        outputs: Value,
        compensation: Option<Value>,
        subscriptions: Vec<Value>,
        /// For a compensation: the path of the step it undoes, marked `compensated` in the same
        /// transaction.
        undoes: Option<String>,
    },
}

impl StepWrite {
    pub fn run(&self) -> &str {
        match self {
            StepWrite::Start { run, .. } | StepWrite::Fail { run, .. } | StepWrite::Complete { run, .. } => run,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            StepWrite::Start { path, .. } | StepWrite::Fail { path, .. } | StepWrite::Complete { path, .. } => path,
        }
    }
}

/// Everything the interpreter and the commands need from a store.
pub trait Store: Send + Sync {
    fn create_run(&self, run: &NewRun) -> Result<()>;
    /// A run by id or unique id prefix.
    fn run(&self, id: &str) -> Result<Option<RunRecord>>;
    /// Hands each run to `f`, oldest first, until `f` returns false; without its program, inputs
    /// and configs, so that listing many runs never loads their programs.
    fn each_run(&self, f: &mut dyn FnMut(RunSummary) -> bool) -> Result<()>;
    fn set_status(
        &self,
        id: &str,
        status: &str,
        outputs: Option<&Value>,
        error: Option<&Value>,
        waiting: Option<&str>,
    ) -> Result<()>;
    /// Takes the run for `owner` when nobody else holds it (no owner, the same owner, or an owner
    /// whose heartbeat is older than `stale_ms` or whose process is gone: `alive` says) and it is
    /// still as the caller read it (`seen`: its status and `updated_ms`). Both are checked in the
    /// transaction that takes it, so of two commands racing for a run only one gets it.
    fn claim(
        &self,
        id: &str,
        owner: &str,
        stale_ms: i64,
        alive: &dyn Fn(&str) -> bool,
        seen: (&str, i64),
    ) -> Result<std::result::Result<(), Refused>>;
    /// Says `owner` still drives the run; `false` when another process has taken it.
    fn heartbeat(&self, id: &str, owner: &str) -> Result<bool>;
    fn release(&self, id: &str, owner: &str) -> Result<()>;
    /// Ends `owner`'s drive of a run in one transaction: sets its status (as `set_status`),
    /// releases it, and releases its subscriptions' locks when it is `completed` or `aborted`.
    fn end(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        outputs: Option<&Value>,
        error: Option<&Value>,
        waiting: Option<&str>,
    ) -> Result<()>;
    /// The outputs of every completed step execution of a run, by path.
    fn completed_steps(&self, run: &str) -> Result<std::collections::HashMap<String, Value>>;
    /// Writes attempt starts and step completions, in order, in one transaction: durable
    /// (`synchronous=FULL`) when the batch completes a step. The committer batches the writes of
    /// concurrent branches so that they share one fsync.
    /// Commits `batch` in one transaction, and only while `owner` still drives its runs: a process
    /// presumed dead (its heartbeat stopped) whose run was taken over must not record anything.
    fn write(&self, owner: &str, batch: &[StepWrite]) -> Result<()>;
    /// The number of the last attempt recorded for each step path of a run (attempt numbers go on
    /// across processes: resume and retry number their attempts after these).
    fn attempt_counts(&self, run: &str) -> Result<std::collections::HashMap<String, i64>>;
    fn suspend_step(&self, run: &str, path: &str, step: &str, reads: &Value) -> Result<()>;
    fn give_input(&self, run: &str, path: &str, values: &Value) -> Result<()>;
    fn input(&self, run: &str, path: &str) -> Result<Option<Value>>;
    /// Registered compensations of completed steps, most recently completed first: the step's
    /// path, the number of its completion in the run (`seq`, new at every completion) and the
    /// compensation.
    fn compensations(&self, run: &str) -> Result<Vec<(String, i64, Value)>>;
    /// Marks a completed step `compensating` (its compensation started: its outputs may be undone
    /// in part) or `compensated`.
    fn mark_step(&self, run: &str, path: &str, status: &str) -> Result<()>;
    /// Hands each step execution of a run to `f`, in order of start, until `f` returns false. One
    /// at a time: a run of many steps is never held in memory whole.
    fn each_step(&self, run: &str, f: &mut dyn FnMut(StepRecord) -> bool) -> Result<()>;
    fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>>;
    /// Hands each subscription to `f`, oldest first, until `f` returns false; without its value.
    fn each_subscription(&self, f: &mut dyn FnMut(SubscriptionSummary) -> bool) -> Result<()>;
    /// Locks a subscription for a run; `Err(holder)` when another run holds it.
    fn lock_subscription(&self, id: &str, run: &str) -> Result<std::result::Result<(), String>>;
    fn release_locks(&self, run: &str) -> Result<()>;
    fn event(&self, run: &str, kind: &str, detail: &Value) -> Result<()>;
    /// Hands each event of a run's audit log to `f`, oldest first, until `f` returns false.
    fn each_event(&self, run: &str, f: &mut dyn FnMut(EventRecord) -> bool) -> Result<()>;
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The schema, one entry per version; a store at version N runs the entries after N.
const MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        inputs TEXT NOT NULL, outputs TEXT, error TEXT,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        program TEXT NOT NULL, program_hash TEXT NOT NULL,
        env TEXT, configs TEXT NOT NULL, secret_names TEXT NOT NULL,
        owner TEXT, heartbeat_ms INTEGER NOT NULL DEFAULT 0, waiting TEXT);
     CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id), path TEXT NOT NULL, step TEXT NOT NULL,
        status TEXT NOT NULL, reads TEXT NOT NULL, outputs TEXT, compensation TEXT, error TEXT,
        started_ms INTEGER NOT NULL, finished_ms INTEGER, seq INTEGER,
        PRIMARY KEY (run_id, path));
     CREATE TABLE attempts (
        run_id TEXT NOT NULL, path TEXT NOT NULL, n INTEGER NOT NULL, status TEXT NOT NULL,
        error TEXT, started_ms INTEGER NOT NULL, finished_ms INTEGER,
        PRIMARY KEY (run_id, path, n));
     CREATE TABLE inputs (
        run_id TEXT NOT NULL, path TEXT NOT NULL, vals TEXT NOT NULL, given_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, path));
     CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY, product TEXT NOT NULL, customer TEXT NOT NULL, state TEXT NOT NULL,
        value TEXT NOT NULL, locked_by TEXT, version INTEGER NOT NULL,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
     CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX events_by_run ON events(run_id, seq);",
    // 2: completing a step numbers it after the run's last one; without this index that lookup
    // scans every step of the run, which made long runs quadratic.
    "CREATE INDEX steps_by_seq ON steps(run_id, seq);",
    // 3: every commit checks that its process still owns the run; this index answers that without
    // reading the run's row, which holds the whole program.
    "CREATE INDEX runs_by_owner ON runs(id, owner);",
    // 4: events numbered by their rowid, without AUTOINCREMENT, which updated `sqlite_sequence` at
    // every insert (two per step). Events are never deleted, so the numbers still only grow.
    "CREATE TABLE events_v4 (
        seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL, detail TEXT NOT NULL);
     INSERT INTO events_v4 (seq, run_id, at_ms, kind, detail) SELECT seq, run_id, at_ms, kind, detail FROM events;
     DROP TABLE events;
     ALTER TABLE events_v4 RENAME TO events;
     CREATE INDEX events_by_run ON events(run_id, seq);
     DELETE FROM sqlite_sequence WHERE name = 'events';",
    // 5: fewer b-trees per step. A step's attempts are a JSON list in its row, the event log is
    // keyed by run (numbered within it) and the completion numbers are counted by the process
    // driving the run. A step completed at its first attempt is then written to three b-trees (the
    // step, its key, its event) rather than seven: a commit wrote twelve pages for seven steps.
    "ALTER TABLE steps ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
     UPDATE steps SET attempts = (
        SELECT json_group_array(json_object('n', n, 'status', status, 'error', error, 'started_ms', started_ms,
            'finished_ms', finished_ms) ORDER BY n)
        FROM attempts a WHERE a.run_id = steps.run_id AND a.path = steps.path);
     DROP TABLE attempts;
     DROP INDEX steps_by_seq;
     CREATE TABLE events_v5 (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
     INSERT INTO events_v5 (run_id, seq, at_ms, kind, detail)
        SELECT run_id, row_number() OVER (PARTITION BY run_id ORDER BY seq), at_ms, kind, detail FROM events;
     DROP TABLE events;
     ALTER TABLE events_v5 RENAME TO events;",
];

/// The schema the migrations build, created at once in a new store: running every migration
/// (table rebuilds and renames) cost a new store a millisecond. A test keeps the two equal.
const LATEST_DDL: &str = "
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        inputs TEXT NOT NULL, outputs TEXT, error TEXT,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        program TEXT NOT NULL, program_hash TEXT NOT NULL,
        env TEXT, configs TEXT NOT NULL, secret_names TEXT NOT NULL,
        owner TEXT, heartbeat_ms INTEGER NOT NULL DEFAULT 0, waiting TEXT);
    CREATE INDEX runs_by_owner ON runs(id, owner);
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id), path TEXT NOT NULL, step TEXT NOT NULL,
        status TEXT NOT NULL, reads TEXT NOT NULL, outputs TEXT, compensation TEXT, error TEXT,
        started_ms INTEGER NOT NULL, finished_ms INTEGER, seq INTEGER, attempts TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (run_id, path));
    CREATE TABLE inputs (
        run_id TEXT NOT NULL, path TEXT NOT NULL, vals TEXT NOT NULL, given_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, path));
    CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY, product TEXT NOT NULL, customer TEXT NOT NULL, state TEXT NOT NULL,
        value TEXT NOT NULL, locked_by TEXT, version INTEGER NOT NULL,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
    CREATE TABLE events (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;";

/// Appends an event to a run's log, numbered after the run's last one.
const INSERT_EVENT: &str = "INSERT INTO events (run_id, seq, at_ms, kind, detail)
    VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?1), ?2, ?3, ?4)";

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The last completion number of each run this process drives, so that a commit need not look
    /// it up (an index for that lookup was a b-tree more to write per step). Read from the store
    /// at a run's first completion after it is created or claimed: only its owner completes steps.
    last_seqs: Mutex<std::collections::HashMap<String, i64>>,
}

/// What a command does with the store, which decides what opening it may create or change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// `run`: the store and its folder are created when missing.
    Create,
    /// `resume`, `retry`, `abort`: an existing store, written.
    Write,
    /// `runs`, `show`, `subscriptions`, `subscription`: an existing store, only read. Nothing is
    /// written to it unless an older schema must be migrated.
    Read,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, migrating an older schema. A store with a
    /// newer or unknown schema is refused and left untouched.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| RunError::Store(format!("cannot create `{}`: {e}", dir.display())))?;
        }
        if !path.exists() {
            create_aside(path);
        }
        let conn = Connection::open(path)
            .map_err(|e| RunError::Store(format!("cannot open the store `{}`: {e}", path.display())))?;
        let name = path.display().to_string();
        Self::init(conn, &name, Access::Create)?.ok_or_else(|| RunError::Store(format!("cannot create `{name}`")))
    }

    /// Opens the store at `path` for `access` without creating anything: `None` when there is no
    /// store there (no file, or an empty one). A store that cannot be written (a read-only file or
    /// folder) can still be read when it needs no migration.
    pub fn open_existing(path: &Path, access: Access) -> Result<Option<SqliteStore>> {
        if access == Access::Create {
            return Self::open(path).map(Some);
        }
        if !path.is_file() {
            return Ok(None);
        }
        let name = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| RunError::Store(format!("cannot open the store `{name}`: {e}")))?;
        // Reading a WAL store needs its `-shm` file, which SQLite cannot create in a read-only
        // folder. With no `-wal` file either, nobody can be writing to it (a writer would need
        // one), so it is read as immutable: from the database file alone.
        let blocked = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).is_err_and(|e| is_denied(&e));
        let wal = Path::new(&format!("{name}-wal")).exists();
        if access == Access::Read && blocked && wal {
            // Left by a process that did not close the store (killed, or still running): its
            // changes may be in the WAL only, so the database file alone would show an old store.
            return Err(RunError::Store(format!(
                "the store `{name}` cannot be read here: beside it, `{name}-wal` may hold changes not yet in the database, and reading them needs `{name}-shm`, which cannot be created in this folder; copy the `-shm` file too, or read the store where it can be written"
            )));
        }
        let conn = if access == Access::Read && blocked && !wal {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(uri, flags)
                .map_err(|e| RunError::Store(format!("cannot open the store `{name}`: {e}")))?
        } else {
            conn
        };
        Self::init(conn, &name, access)
    }

    /// A store that lives in memory, for the REPL and tests.
    pub fn in_memory() -> Result<SqliteStore> {
        Self::init(Connection::open_in_memory()?, ":memory:", Access::Create)?
            .ok_or_else(|| RunError::Store("cannot create a store in memory".into()))
    }

    /// Checks that `conn` holds an orch store (or nothing yet) before changing anything, then
    /// switches it to WAL and migrates it as needed. `None`: an empty database, opened without
    /// `Access::Create`.
    fn init(conn: Connection, name: &str, access: Access) -> Result<Option<SqliteStore>> {
        let unreadable = |e: rusqlite::Error| {
            if is_denied(&e) {
                cannot_write(name, e)
            } else {
                RunError::Store(format!("`{name}` is not an orch store: {e}"))
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // One snapshot: another process may be creating the store meanwhile.
        let (version, objects, schema) = (|| {
            let tx = conn.unchecked_transaction()?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let objects: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            Ok((version, objects, schema_of(&tx)?))
        })()
        .map_err(unreadable)?;
        let latest = MIGRATIONS.len() as i64;
        if version > latest {
            return Err(RunError::Store(format!(
                "the store `{name}` has schema version {version}, written by a newer orchc; this orchc reads versions up to {latest} and leaves it untouched"
            )));
        }
        if version == 0 && objects == 0 {
            if access != Access::Create {
                return Ok(None);
            }
        } else if version == 0 || !has_schema(&schema, version)? {
            return Err(RunError::Store(format!(
                "`{name}` is not an orch store: a SQLite database without orch's tables; it is left untouched"
            )));
        }
        // SQLite opens a file it may not write read-only, and says so only at the first write.
        if access != Access::Read && conn.is_readonly(rusqlite::DatabaseName::Main)? {
            return Err(RunError::Store(format!(
                "the store `{name}` cannot be written (check the permissions of the file and its folder)"
            )));
        }
        // A store that is already current and in WAL mode is only read: it may not be writable.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(unreadable)?;
        if access != Access::Read && !mode.eq_ignore_ascii_case("wal") {
            when_free(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(|e| cannot_write(name, e))?;
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The WAL is copied into the database and started again from its beginning every 128
        // pages (512 KB) rather than SQLite's 1,000 (4 MB, more than the bench's `for` of 1,000
        // HTTP steps writes; a reader holding an older snapshot delays the restart):
        // commits are written over the same few blocks instead of growing the file, and closing
        // the store copies and deletes a small WAL instead of one of several megabytes. A `for`
        // of 1,000 HTTP steps takes 0.89 to 0.95 of the time on disk, 0.87 and 0.95 on tmpfs; a
        // chain of 1,000 steps is unchanged, and slower at 60 pages or fewer (README, performance).
        conn.pragma_update_and_check(None, "wal_autocheckpoint", 128, |r| r.get::<_, i64>(0))?;
        if version == latest {
            return Ok(Some(SqliteStore::from(conn)));
        }
        // All the migrations due in one transaction (a store set up in place, empty, gets the latest
        // schema at once: one fsync); the version is read again under the write lock, since
        // another process may have migrated the store since it was read above.
        when_free(|| {
            let tx = write_tx(&conn)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version >= latest {
                return Ok(());
            }
            if version == 0 {
                tx.execute_batch(LATEST_DDL)?;
            } else {
                for sql in MIGRATIONS.iter().skip(version as usize) {
                    tx.execute_batch(sql)?;
                }
            }
            tx.pragma_update(None, "user_version", latest)?;
            tx.commit()
        })
        .map_err(|e| cannot_write(name, e))?;
        Ok(Some(SqliteStore::from(conn)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_seqs(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.last_seqs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of `run`'s next completion in a batch (`seqs`: the numbers the batch gave),
    /// after those committed before.
    fn next_seq<'a>(
        &self,
        tx: &rusqlite::Transaction<'_>,
        seqs: &mut std::collections::HashMap<&'a str, i64>,
        run: &'a str,
    ) -> Result<i64> {
        let last = match seqs.get(run).copied().or_else(|| self.last_seqs().get(run).copied()) {
            Some(last) => last,
            None => tx
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM steps WHERE run_id = ?1")?
                .query_row(params![run], |r| r.get(0))?,
        };
        seqs.insert(run, last + 1);
        Ok(last + 1)
    }
}

impl From<Connection> for SqliteStore {
    fn from(conn: Connection) -> SqliteStore {
        SqliteStore { conn: Mutex::new(conn), last_seqs: Mutex::default() }
    }
}

/// Builds a new store beside `path`, without fsyncs (nobody can see it yet), then links it into
/// place whole: one fsync of the file and one of its folder. Set up in place, a new store took
/// eight (the switch to WAL goes through a rollback journal, then the WAL and the schema's
/// commit). `hard_link` never replaces a file: when another process links its store first, that
/// one is used. When linking cannot be done (a file system without hard links), nothing is left
/// and `init` sets the store up in place as before.
fn create_aside(path: &Path) {
    let Some(name) = path.file_name() else { return };
    let aside = path.with_file_name(format!(".{}.new-{}", name.to_string_lossy(), std::process::id()));
    let built = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let _ = std::fs::remove_file(&aside);
        let conn = Connection::open(&aside)?;
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
        conn.execute_batch(LATEST_DDL)?;
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.close().map_err(|(_, e)| e)?;
        std::fs::File::open(&aside)?.sync_all()?;
        match std::fs::hard_link(&aside, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.into()),
            _ => {}
        }
        #[cfg(unix)]
        if let Some(dir) = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&aside);
    if let Err(e) = built {
        tracing::debug!("a new store could not be built aside, it is set up in place: {e}");
    }
}

/// Parses JSON the store holds. serde_json's recursion limit (128) is off: what is stored was
/// written without one (a program's JSON nests deeper than that), so it must read back.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let v = T::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Whether an error says the file or its folder may not be written (or opened for it).
fn is_denied(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, PermissionDenied, ReadOnly};
    matches!(e.sqlite_error_code(), Some(ReadOnly | CannotOpen | PermissionDenied))
}

/// Runs `f` again, for up to 10 s, while it fails because another process holds the store. Setting
/// up a new store (the switch to WAL, the migrations) can fail at once with `database is locked`,
/// without the busy timeout, when processes created it at the same moment (SQLite gives up rather
/// than let two of them wait for each other); one of them goes on and the others then find the
/// store set up.
fn when_free<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// An error changing the store; said plainly when it is the permissions that forbid it.
fn cannot_write(name: &str, e: rusqlite::Error) -> RunError {
    if is_denied(&e) {
        RunError::Store(format!(
            "the store `{name}` cannot be written (check the permissions of the file and its folder): {e}"
        ))
    } else {
        RunError::Store(format!("the store `{name}` cannot be set up: {e}"))
    }
}

/// The tables of a database and their columns, by name.
fn schema_of(conn: &Connection) -> rusqlite::Result<Vec<(String, Vec<String>)>> {
    let mut tables = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let mut columns = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let names: Vec<String> = tables.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    names
        .into_iter()
        .map(|t| {
            let cols = columns.query_map([&t], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok((t, cols))
        })
        .collect()
}

/// The tables the migrations leave in a current store, with their columns. A current store is
/// checked against this list: building the schema from the migrations in memory took about a
/// millisecond of every command. A test keeps the list equal to what the migrations build.
const LATEST_SCHEMA: &[(&str, &[&str])] = &[
    ("events", &["run_id", "seq", "at_ms", "kind", "detail"]),
    ("inputs", &["run_id", "path", "vals", "given_ms"]),
    (
        "runs",
        &[
            "id",
            "workflow",
            "status",
            "inputs",
            "outputs",
            "error",
            "created_ms",
            "updated_ms",
            "program",
            "program_hash",
            "env",
            "configs",
            "secret_names",
            "owner",
            "heartbeat_ms",
            "waiting",
        ],
    ),
    (
        "steps",
        &[
            "run_id",
            "path",
            "step",
            "status",
            "reads",
            "outputs",
            "compensation",
            "error",
            "started_ms",
            "finished_ms",
            "seq",
            "attempts",
        ],
    ),
    (
        "subscriptions",
        &["id", "product", "customer", "state", "value", "locked_by", "version", "created_ms", "updated_ms"],
    ),
];

/// Whether `schema` has every table, with its columns, that the migrations up to `version` create.
/// A SQLite file with some other tables (or an orch-like `user_version` alone) is not a store.
fn has_schema(schema: &[(String, Vec<String>)], version: i64) -> Result<bool> {
    if version == MIGRATIONS.len() as i64 {
        return Ok(LATEST_SCHEMA.iter().all(|(name, cols)| {
            schema.iter().any(|(n, c)| n == name && c.iter().map(String::as_str).eq(cols.iter().copied()))
        }));
    }
    Ok(migrated_schema(version)?.iter().all(|table| schema.contains(table)))
}

/// The tables, with their columns, that the migrations up to `version` create.
fn migrated_schema(version: i64) -> Result<Vec<(String, Vec<String>)>> {
    let expected = Connection::open_in_memory()?;
    for sql in &MIGRATIONS[..version as usize] {
        expected.execute_batch(sql)?;
    }
    Ok(schema_of(&expected)?)
}

/// `path` for a `file:` URI: the characters a URI gives a meaning to are percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(*b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Begins a write transaction holding the write lock from the start (IMMEDIATE). A deferred one
/// that reads first cannot wait for the lock in WAL mode: its upgrade to a writer fails at once with
/// `database is locked`, without the busy timeout, when another process writes concurrently.
fn write_tx(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

/// A JSON column. One that does not parse is an error naming `what` (run, step, column), never
/// null: a null read back would be fed to the next step or shown as the outputs.
fn json_col<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: impl FnOnce() -> String,
) -> rusqlite::Result<Option<T>> {
    text.map(|t| {
        from_json(&t).map_err(|e| {
            let msg = format!("{} cannot be read from the store: {e}", what());
            rusqlite::Error::ToSqlConversionFailure(Box::new(Unreadable(msg)))
        })
    })
    .transpose()
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let id: String = r.get(0)?;
    let col = |i: usize, name: &str| json_col(r.get(i)?, || format!("run {id}: its {name}"));
    Ok(RunRecord {
        workflow: r.get(1)?,
        status: r.get(2)?,
        inputs: col(3, "inputs")?.unwrap_or(Value::Null),
        outputs: col(4, "outputs")?,
        error: col(5, "error")?,
        created_ms: r.get(6)?,
        updated_ms: r.get(7)?,
        program: r.get(8)?,
        program_hash: r.get(9)?,
        env: r.get(10)?,
        configs: col(11, "configs")?.unwrap_or(Value::Null),
        secret_names: json_col(r.get(12)?, || format!("run {id}: its secret names"))?.unwrap_or_default(),
        owner: r.get(13)?,
        heartbeat_ms: r.get(14)?,
        waiting: r.get(15)?,
        id,
    })
}

/// `id` is `?1` or starts with it: compared as text, case-sensitively (`LIKE` would take `%` and
/// `_` as wildcards and ignore case). An empty `?1` matches nothing.
const PREFIX: &str = "?1 <> '' AND substr(id, 1, length(?1)) = ?1";

const RUN_COLUMNS: &str = "id, workflow, status, inputs, outputs, error, created_ms, updated_ms, program, program_hash, env, configs, secret_names, owner, heartbeat_ms, waiting";

fn sub_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: r.get(0)?,
        product: r.get(1)?,
        customer: r.get(2)?,
        state: r.get(3)?,
        value: json_col(r.get(4)?, || {
            format!("subscription {}: its value", r.get::<_, String>(0).unwrap_or_default())
        })?
        .unwrap_or(Value::Null),
        locked_by: r.get(5)?,
        version: r.get(6)?,
        updated_ms: r.get(7)?,
    })
}

impl Store for SqliteStore {
    fn create_run(&self, run: &NewRun) -> Result<()> {
        let conn = self.conn();
        let now = now_ms();
        let tx = write_tx(&conn)?;
        tx.execute(
            &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, 'running', ?3, NULL, NULL, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?4, NULL)"),
            params![
                run.id,
                run.workflow,
                run.inputs.to_string(),
                now,
                run.program,
                run.program_hash,
                run.env,
                run.configs.to_string(),
                serde_json::to_string(&run.secret_names).unwrap_or_default(),
                run.owner
            ],
        )?;
        tx.execute(
            INSERT_EVENT,
            params![
                run.id,
                now,
                "run_started",
                serde_json::json!({"workflow": run.workflow, "inputs": run.inputs}).to_string()
            ],
        )?;
        tx.commit()?;
        self.last_seqs().remove(&run.id);
        Ok(())
    }

    fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE {PREFIX} ORDER BY id = ?1 DESC LIMIT 2"))?;
        let rows: Vec<RunRecord> = stmt.query_map(params![id], run_from_row)?.collect::<rusqlite::Result<_>>()?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.into_iter().next()),
            _ if rows[0].id == id => Ok(rows.into_iter().next()),
            _ => Err(RunError::Usage(format!("`{id}` matches several runs; give more of the id"))),
        }
    }

    fn each_run(&self, f: &mut dyn FnMut(RunSummary) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, workflow, status, outputs, error, created_ms, updated_ms FROM runs ORDER BY created_ms, id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let col = |i: usize, name: &str| json_col(r.get(i)?, || format!("run {id}: its {name}"));
            let run = RunSummary {
                workflow: r.get(1)?,
                status: r.get(2)?,
                outputs: col(3, "outputs")?,
                error: col(4, "error")?,
                created_ms: r.get(5)?,
                updated_ms: r.get(6)?,
                id,
            };
            if !f(run) {
                break;
            }
        }
        Ok(())
    }

    fn set_status(
        &self,
        id: &str,
        status: &str,
        outputs: Option<&Value>,
        error: Option<&Value>,
        waiting: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn();
        let tx = write_tx(&conn)?;
        write_status(&tx, id, status, outputs, error, waiting)?;
        tx.commit()?;
        Ok(())
    }

    fn end(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        outputs: Option<&Value>,
        error: Option<&Value>,
        waiting: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn();
        let tx = write_tx(&conn)?;
        write_status(&tx, id, status, outputs, error, waiting)?;
        tx.execute("UPDATE runs SET owner = NULL WHERE id = ?1 AND owner = ?2", params![id, owner])?;
        if matches!(status, "completed" | "aborted") {
            tx.execute("UPDATE subscriptions SET locked_by = NULL WHERE locked_by = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn claim(
        &self,
        id: &str,
        owner: &str,
        stale_ms: i64,
        alive: &dyn Fn(&str) -> bool,
        seen: (&str, i64),
    ) -> Result<std::result::Result<(), Refused>> {
        let conn = self.conn();
        let tx = write_tx(&conn)?;
        let (current, beat, status, updated): (Option<String>, i64, String, i64) =
            tx.query_row("SELECT owner, heartbeat_ms, status, updated_ms FROM runs WHERE id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let now = now_ms();
        if let Some(cur) = &current {
            if cur != owner && now - beat < stale_ms && alive(cur) {
                return Ok(Err(Refused::Owner(cur.clone())));
            }
        }
        if (status.as_str(), updated) != seen {
            return Ok(Err(Refused::Changed(status)));
        }
        tx.execute("UPDATE runs SET owner = ?2, heartbeat_ms = ?3 WHERE id = ?1", params![id, owner, now])?;
        tx.commit()?;
        // Another process may have completed steps of the run since this one last drove it.
        self.last_seqs().remove(id);
        Ok(Ok(()))
    }

    fn heartbeat(&self, id: &str, owner: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE runs SET heartbeat_ms = ?3 WHERE id = ?1 AND owner = ?2", params![id, owner, now_ms()])?;
        Ok(n == 1)
    }

    fn release(&self, id: &str, owner: &str) -> Result<()> {
        self.conn().execute("UPDATE runs SET owner = NULL WHERE id = ?1 AND owner = ?2", params![id, owner])?;
        Ok(())
    }

    fn completed_steps(&self, run: &str) -> Result<std::collections::HashMap<String, Value>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT path, outputs FROM steps WHERE run_id = ?1 AND status = 'completed'")?;
        let rows = stmt.query_map(params![run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (path, outputs) = row?;
            let outputs = json_col(outputs, || format!("run {run}: the outputs of step `{path}`"))?;
            out.insert(path, outputs.unwrap_or(Value::Null));
        }
        Ok(out)
    }

    fn write(&self, owner: &str, batch: &[StepWrite]) -> Result<()> {
        let conn = self.conn();
        // Attempt starts are bookkeeping: a step that is not completed runs again on resume whether
        // or not its start was recorded. A batch of starts only is committed without fsync
        // (synchronous=NORMAL): it survives the process being killed (the OS has the write), and
        // the next FULL commit (a completion) makes it durable too: that commit syncs the WAL,
        // which holds it, and before the WAL is copied into the database and started again, SQLite
        // syncs it.
        let durable = batch.iter().any(|w| !matches!(w, StepWrite::Start { .. }));
        if !durable {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let result = (|| -> Result<()> {
            let tx = write_tx(&conn)?;
            // The fence: nothing is written for a run this process no longer owns.
            let mut runs: Vec<&str> = batch.iter().map(StepWrite::run).collect();
            runs.dedup();
            for run in runs {
                let owned: i64 = tx
                    .prepare_cached("SELECT count(*) FROM runs INDEXED BY runs_by_owner WHERE id = ?1 AND owner = ?2")?
                    .query_row(params![run, owner], |r| r.get(0))?;
                if owned != 1 {
                    return Err(RunError::Busy(format!(
                        "run {run} is driven by another process now (this one was presumed dead: its \
                         heartbeat stopped); this process stops without recording more"
                    )));
                }
            }
            // Completions are numbered in the order they are committed.
            let mut seqs = std::collections::HashMap::new();
            let mut stmts = Statements { tx: &tx, prepared: vec![] };
            let mut writes = batch.iter().peekable();
            while let Some(w) = writes.next() {
                match w {
                    StepWrite::Start { run, path, step, n, reads, at_ms } => {
                        // An attempt that started and completed within one batch is written as
                        // its final rows at once, rather than inserted and then updated.
                        let ends = |c: &&StepWrite| matches!(c, StepWrite::Complete { run: r, path: p, n: m, .. } if (r, p, m) == (run, path, n));
                        if let Some(complete) = writes.next_if(ends) {
                            let start = Started { step, reads, at_ms: *at_ms };
                            let seq = self.next_seq(&tx, &mut seqs, run)?;
                            write_complete(&mut stmts, complete, Some(start), seq)?;
                            continue;
                        }
                        write_start(&mut stmts, run, path, step, *n, reads, *at_ms)?
                    }
                    StepWrite::Fail { run, path, n, at_ms, error, permanent } => {
                        write_fail(&mut stmts, run, path, *n, *at_ms, error, *permanent)?
                    }
                    StepWrite::Complete { run, .. } => {
                        let seq = self.next_seq(&tx, &mut seqs, run)?;
                        write_complete(&mut stmts, w, None, seq)?
                    }
                }
            }
            drop(stmts);
            tx.commit()?;
            let mut last = self.last_seqs();
            for (run, seq) in seqs {
                last.insert(run.to_string(), seq);
            }
            Ok(())
        })();
        if !durable {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        result
    }

    fn attempt_counts(&self, run: &str) -> Result<std::collections::HashMap<String, i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT path, attempts ->> '$[#-1].n' FROM steps WHERE run_id = ?1 AND json_array_length(attempts) > 0",
        )?;
        let rows = stmt.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn suspend_step(&self, run: &str, path: &str, step: &str, reads: &Value) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO steps (run_id, path, step, status, reads, started_ms) VALUES (?1, ?2, ?3, 'suspended', ?4, ?5)
             ON CONFLICT (run_id, path) DO UPDATE SET status = 'suspended'",
            params![run, path, step, reads.to_string(), now_ms()],
        )?;
        Ok(())
    }

    fn give_input(&self, run: &str, path: &str, values: &Value) -> Result<()> {
        let conn = self.conn();
        let now = now_ms();
        let tx = write_tx(&conn)?;
        tx.execute(
            "INSERT OR REPLACE INTO inputs (run_id, path, vals, given_ms) VALUES (?1, ?2, ?3, ?4)",
            params![run, path, values.to_string(), now],
        )?;
        tx.execute(
            INSERT_EVENT,
            params![run, now, "input_given", serde_json::json!({"path": path, "values": values}).to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn input(&self, run: &str, path: &str) -> Result<Option<Value>> {
        let conn = self.conn();
        let v: Option<String> = conn
            .query_row("SELECT vals FROM inputs WHERE run_id = ?1 AND path = ?2", params![run, path], |r| r.get(0))
            .optional()?;
        Ok(json_col(v, || format!("run {run}: the values given to input step `{path}`"))?)
    }

    fn compensations(&self, run: &str) -> Result<Vec<(String, i64, Value)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT path, compensation, coalesce(seq, 0) FROM steps WHERE run_id = ?1 AND status IN ('completed', 'compensating') AND compensation IS NOT NULL ORDER BY seq DESC",
        )?;
        let rows = stmt
            .query_map(params![run], |r| {
                let path: String = r.get(0)?;
                let comp = json_col(r.get(1)?, || format!("run {run}: the compensation of step `{path}`"))?;
                Ok((path, r.get(2)?, comp.unwrap_or(Value::Null)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn mark_step(&self, run: &str, path: &str, status: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE steps SET status = ?3 WHERE run_id = ?1 AND path = ?2", params![run, path, status])?;
        Ok(())
    }

    fn each_step(&self, run: &str, f: &mut dyn FnMut(StepRecord) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut steps = conn.prepare(
            "SELECT path, step, status, reads, outputs, error, started_ms, finished_ms, attempts FROM steps WHERE run_id = ?1 ORDER BY started_ms, rowid",
        )?;
        let mut rows = steps.query(params![run])?;
        while let Some(r) = rows.next()? {
            let path: String = r.get(0)?;
            let col = |i: usize, name: &str| json_col(r.get(i)?, || format!("run {run}: the {name} of step `{path}`"));
            let step = StepRecord {
                step: r.get(1)?,
                status: r.get(2)?,
                reads: col(3, "inputs")?.unwrap_or(Value::Null),
                outputs: col(4, "outputs")?,
                error: r.get(5)?,
                started_ms: r.get(6)?,
                finished_ms: r.get(7)?,
                attempts: json_col(r.get(8)?, || format!("run {run}: the attempts of step `{path}`"))?
                    .unwrap_or_default(),
                path,
            };
            if !f(step) {
                break;
            }
        }
        Ok(())
    }

    fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, product, customer, state, value, locked_by, version, updated_ms FROM subscriptions WHERE {PREFIX} LIMIT 2",
        ))?;
        let rows: Vec<SubscriptionRecord> =
            stmt.query_map(params![id], sub_from_row)?.collect::<rusqlite::Result<_>>()?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.into_iter().next()),
            _ => match rows.iter().position(|r| r.id == id) {
                Some(i) => Ok(Some(rows[i].clone())),
                None => Err(RunError::Usage(format!("`{id}` matches several subscriptions; give more of the id"))),
            },
        }
    }

    fn each_subscription(&self, f: &mut dyn FnMut(SubscriptionSummary) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, product, customer, state, locked_by, version FROM subscriptions ORDER BY created_ms, id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let sub = SubscriptionSummary {
                id: r.get(0)?,
                product: r.get(1)?,
                customer: r.get(2)?,
                state: r.get(3)?,
                locked_by: r.get(4)?,
                version: r.get(5)?,
            };
            if !f(sub) {
                break;
            }
        }
        Ok(())
    }

    fn lock_subscription(&self, id: &str, run: &str) -> Result<std::result::Result<(), String>> {
        let conn = self.conn();
        let tx = write_tx(&conn)?;
        let holder: Option<Option<String>> =
            tx.query_row("SELECT locked_by FROM subscriptions WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
        match holder {
            None => return Err(RunError::Subscription(format!("there is no subscription `{id}`"))),
            Some(Some(h)) if h != run => return Ok(Err(h)),
            _ => {}
        }
        tx.execute("UPDATE subscriptions SET locked_by = ?2 WHERE id = ?1", params![id, run])?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn release_locks(&self, run: &str) -> Result<()> {
        self.conn().execute("UPDATE subscriptions SET locked_by = NULL WHERE locked_by = ?1", params![run])?;
        Ok(())
    }

    fn event(&self, run: &str, kind: &str, detail: &Value) -> Result<()> {
        self.conn().execute(INSERT_EVENT, params![run, now_ms(), kind, detail.to_string()])?;
        Ok(())
    }

    fn each_event(&self, run: &str, f: &mut dyn FnMut(EventRecord) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT seq, run_id, at_ms, kind, detail FROM events WHERE run_id = ?1 ORDER BY seq")?;
        let mut rows = stmt.query(params![run])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let event = EventRecord {
                run_id: r.get(1)?,
                at_ms: r.get(2)?,
                kind: r.get(3)?,
                detail: json_col(r.get(4)?, || format!("run {run}: event {seq}"))?.unwrap_or(Value::Null),
                seq,
            };
            if !f(event) {
                break;
            }
        }
        Ok(())
    }
}

fn write_start(
    tx: &mut Statements<'_>,
    run: &str,
    path: &str,
    step: &str,
    n: i64,
    reads: &Value,
    now: i64,
) -> Result<()> {
    let attempt = attempt_json(n, "running", now, None);
    tx.get(
        "INSERT INTO steps (run_id, path, step, status, reads, started_ms, attempts)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?8)
         ON CONFLICT (run_id, path) DO UPDATE SET status = 'running', reads = ?4, error = NULL, finished_ms = NULL,
           attempts = CASE WHEN attempts ->> '$[#-1].n' = ?6 THEN json_replace(attempts, '$[#-1]', json(?7))
                           ELSE json_insert(attempts, '$[#]', json(?7)) END",
    )?
    .execute(params![run, path, step, json_text(reads), now, n, attempt, format!("[{attempt}]")])?;
    Ok(())
}

/// An attempt as an element of its step's `attempts` list, written without building a `Value`.
fn attempt_json(n: i64, status: &str, started_ms: i64, finished_ms: Option<i64>) -> String {
    match finished_ms {
        Some(f) => format!(r#"{{"n":{n},"status":"{status}","started_ms":{started_ms},"finished_ms":{f}}}"#),
        None => format!(r#"{{"n":{n},"status":"{status}","started_ms":{started_ms}}}"#),
    }
}

/// A value (or a string) as JSON text, serialized into a buffer directly: `Value::to_string`
/// (`Display`) passes every token through a formatter, 3% more instructions in the write path.
/// Event details are written as text with it, in the form (and key order) `json!` would give,
/// without building a `Value`: with a copy of the step's outputs, that was a fifth of the
/// instructions of a `for` of HTTP GETs.
fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn write_status(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    status: &str,
    outputs: Option<&Value>,
    error: Option<&Value>,
    waiting: Option<&str>,
) -> Result<()> {
    let now = now_ms();
    tx.execute(
        "UPDATE runs SET status = ?2, outputs = ?3, error = ?4, waiting = ?5, updated_ms = ?6 WHERE id = ?1",
        params![id, status, outputs.map(Value::to_string), error.map(Value::to_string), waiting, now],
    )?;
    tx.execute(
        INSERT_EVENT,
        params![
            id,
            now,
            format!("run_{status}"),
            serde_json::json!({"outputs": outputs, "error": error, "waiting": waiting}).to_string()
        ],
    )?;
    Ok(())
}

/// The start of an attempt written together with its completion.
struct Started<'a> {
    step: &'a str,
    reads: &'a Value,
    at_ms: i64,
}

/// Writes a `StepWrite::Complete`, numbered `seq` among the run's completions; with `start`, the
/// attempt's start too (its rows are then inserted, not updated).
fn write_complete(tx: &mut Statements<'_>, w: &StepWrite, start: Option<Started<'_>>, seq: i64) -> Result<()> {
    let StepWrite::Complete { run, path, n, at_ms: now, outputs, compensation, subscriptions, undoes } = w else {
        return Ok(());
    };
    let outputs_text = json_text(outputs);
    let compensation = compensation.as_ref().map(json_text);
    match start {
        Some(Started { step, reads, at_ms }) => {
            let attempt = attempt_json(*n, "completed", at_ms, Some(*now));
            tx.get(
                "INSERT INTO steps (run_id, path, step, status, reads, outputs, compensation, started_ms, finished_ms, seq, attempts)
                 VALUES (?1, ?2, ?3, 'completed', ?4, ?5, ?6, ?7, ?8, ?9, ?12)
                 ON CONFLICT (run_id, path) DO UPDATE SET status = 'completed', reads = ?4, outputs = ?5,
                   compensation = ?6, finished_ms = ?8, seq = ?9, error = NULL,
                   attempts = CASE WHEN attempts ->> '$[#-1].n' = ?10 THEN json_replace(attempts, '$[#-1]', json(?11))
                                   ELSE json_insert(attempts, '$[#]', json(?11)) END",
            )?
            .execute(params![
                run,
                path,
                step,
                json_text(reads),
                outputs_text,
                compensation,
                at_ms,
                now,
                seq,
                n,
                attempt,
                format!("[{attempt}]")
            ])?;
        }
        None => {
            tx.get(
                "UPDATE steps SET status = 'completed', outputs = ?3, compensation = ?4, finished_ms = ?5, seq = ?6, error = NULL,
                   attempts = CASE WHEN attempts ->> '$[#-1].n' = ?7
                                   THEN json_set(attempts, '$[#-1].status', 'completed', '$[#-1].finished_ms', ?5)
                                   ELSE attempts END
                 WHERE run_id = ?1 AND path = ?2",
            )?
            .execute(params![run, path, outputs_text, compensation, now, seq, n])?;
        }
    }
    for sub in subscriptions {
        let id = sub["id"].as_str().unwrap_or_default();
        tx.get(
            "INSERT INTO subscriptions (id, product, customer, state, value, locked_by, version, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)
             ON CONFLICT (id) DO UPDATE SET state = ?4, value = ?5, version = version + 1, updated_ms = ?7,
               locked_by = coalesce(locked_by, ?6)",
        )?
        .execute(params![
            id,
            sub["product"].as_str().unwrap_or_default(),
            sub["customer"].as_str().unwrap_or_default(),
            sub["state"].as_str().unwrap_or_default(),
            sub.to_string(),
            run,
            now
        ])?;
    }
    tx.get(INSERT_EVENT)?.execute(params![
        run,
        now,
        "step_completed",
        format!(r#"{{"path":{},"attempt":{n},"outputs":{outputs_text}}}"#, json_text(path))
    ])?;
    if let Some(undone) = undoes {
        tx.get("UPDATE steps SET status = 'compensated' WHERE run_id = ?1 AND path = ?2")?
            .execute(params![run, undone])?;
    }
    Ok(())
}

fn write_fail(
    tx: &mut Statements<'_>,
    run: &str,
    path: &str,
    n: i64,
    now: i64,
    error: &str,
    permanent: bool,
) -> Result<()> {
    tx.get(
        "UPDATE steps SET attempts = CASE WHEN attempts ->> '$[#-1].n' = ?3
             THEN json_set(attempts, '$[#-1].status', 'failed', '$[#-1].error', ?4, '$[#-1].finished_ms', ?5)
             ELSE attempts END
         WHERE run_id = ?1 AND path = ?2",
    )?
    .execute(params![run, path, n, error, now])?;
    if permanent {
        tx.get("UPDATE steps SET status = 'failed', error = ?3, finished_ms = ?4 WHERE run_id = ?1 AND path = ?2")?
            .execute(params![run, path, error, now])?;
    }
    tx.get(INSERT_EVENT)?.execute(params![
        run,
        now,
        "attempt_failed",
        serde_json::json!({"path": path, "attempt": n, "error": error, "permanent": permanent}).to_string()
    ])?;
    Ok(())
}

/// The statements of one batch of step writes, each prepared once for the batch: rusqlite's
/// statement cache hashes the SQL text at every use, which for a batch of short steps cost a tenth
/// of the commit.
struct Statements<'c> {
    tx: &'c rusqlite::Transaction<'c>,
    prepared: Vec<(&'static str, rusqlite::CachedStatement<'c>)>,
}

impl<'c> Statements<'c> {
    fn get(&mut self, sql: &'static str) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let i = match self.prepared.iter().position(|(s, _)| *s == sql) {
            Some(i) => i,
            None => {
                self.prepared.push((sql, self.tx.prepare_cached(sql)?));
                self.prepared.len() - 1
            }
        };
        Ok(&mut self.prepared[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_schema_is_what_the_migrations_build() {
        let mut built = migrated_schema(MIGRATIONS.len() as i64).unwrap();
        // Left by the AUTOINCREMENT of version 1; a new store has none, and orch does not use it.
        built.retain(|(name, _)| name != "sqlite_sequence");
        let listed: Vec<(String, Vec<String>)> = LATEST_SCHEMA
            .iter()
            .map(|(name, cols)| (name.to_string(), cols.iter().map(|c| c.to_string()).collect()))
            .collect();
        assert_eq!(built, listed);
    }

    /// Every table's columns (with their types, constraints and defaults), keys, foreign keys,
    /// rowid or not, and every index with its columns.
    fn full_schema(conn: &Connection) -> Vec<String> {
        use rusqlite::types::ValueRef;
        let rows = |sql: &str, arg: &str| -> Vec<Vec<String>> {
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            let text = |v: ValueRef<'_>| match v {
                ValueRef::Null => "NULL".to_string(),
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => format!("{b:?}"),
            };
            stmt.query_map([arg], |r| Ok((0..n).map(|i| text(r.get_ref(i).unwrap())).collect()))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let mut out = vec![];
        let tables =
            rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> ?1 ORDER BY name", "sqlite_sequence");
        for table in tables.iter().map(|r| r[0].clone()) {
            out.push(format!("table {table}"));
            let mut add = |sql: &str, arg: &str| out.extend(rows(sql, arg).into_iter().map(|r| r.join(" ")));
            add("SELECT wr, strict FROM pragma_table_list WHERE name = ?1", &table);
            add("SELECT * FROM pragma_table_info(?1)", &table);
            add("SELECT * FROM pragma_foreign_key_list(?1)", &table);
            for index in
                rows("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name", &table)
            {
                out.push(format!("index {}", index.join(" ")));
                out.extend(rows("SELECT * FROM pragma_index_xinfo(?1)", &index[0]).into_iter().map(|r| r.join(" ")));
            }
        }
        out
    }

    /// A store opens in WAL mode with durable commits (`synchronous=FULL`), and is back to them
    /// after a batch of attempt starts only (committed without fsync) is refused.
    #[test]
    fn a_store_opens_with_its_pragmas_and_restores_full_sync_after_a_refused_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let settings = || -> (String, i64, i64, i64) {
            let conn = store.conn();
            let int = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
            let mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
            (mode, int("synchronous"), int("wal_autocheckpoint"), int("foreign_keys"))
        };
        // synchronous 2 is FULL.
        let expected = ("wal".to_string(), 2, 128, 1);
        assert_eq!(settings(), expected);
        // A run this process does not own: the write is refused inside its transaction.
        let start = StepWrite::Start {
            run: "r1".into(),
            path: "s@1".into(),
            step: "s".into(),
            n: 1,
            reads: Value::Null,
            at_ms: 0,
        };
        assert!(matches!(store.write("me", &[start]), Err(RunError::Busy(_))));
        assert_eq!(settings(), expected, "a failed batch of starts left the store without fsync");
    }

    #[test]
    fn a_new_store_has_the_schema_the_migrations_build() {
        let migrated = Connection::open_in_memory().unwrap();
        for sql in MIGRATIONS {
            migrated.execute_batch(sql).unwrap();
        }
        let new = Connection::open_in_memory().unwrap();
        new.execute_batch(LATEST_DDL).unwrap();
        let (migrated, new) = (full_schema(&migrated), full_schema(&new));
        assert!(new.len() > 50, "{new:#?}");
        assert_eq!(migrated, new);
    }
}
