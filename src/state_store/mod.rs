//! The state store: offsets, searches versions, drain jobs and the instance id in RocksDB (docs/operations.md §5.1).
//!
//! # Layout
//!
//! One RocksDB directory per instance, with column families:
//!
//! * `offsets` — key `topic \0 partition(i32 BE)`, value the **next offset
//!   to process** (i64 BE): every message before it has its match records
//!   acknowledged by the output or sits in the dead letters.
//! * `meta` — `schema` → layout version; `instance_id`; `active_version`
//!   (u64 BE) → the searches version in use.
//! * `versions` — every accepted searches version, immutable:
//!   `m` + version (u64 BE) → its description ([`VersionMeta`], JSON) and
//!   `d` + version → the searches document it was compiled from, or, for
//!   a version made by a one-topic change until its merge,
//!   `p` + version → the version it patches (u64 BE) and the patch (the
//!   searches service's format). Adding a version and making it active is
//!   one synced WriteBatch.
//!
//! * `jobs` — drain jobs (catch-ups and replays, `service::drain`): job
//!   id (u64 BE) → the job as JSON (its ranges per partition and cursors
//!   per class). Written in the same WriteBatch as the offsets, so the
//!   offsets and the cursors of one batch of output never disagree.
//!
//! # Writes
//!
//! A checkpoint is one `WriteBatch` across families, written with `sync`
//! (the batch is durable when `commit` returns, even after a machine
//! crash). The service writes one per batch of messages, never one per
//! message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard};

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

const CF_OFFSETS: &str = "offsets";
const CF_META: &str = "meta";
const CF_VERSIONS: &str = "versions";
/// A drain job to store with a checkpoint: its id and its encoded form
/// (`service::drain::Job`). Jobs are never deleted: a finished one stays
/// as the history `/drain` and the reports read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJob {
    pub id: u64,
    pub bytes: Vec<u8>,
}

const CF_JOBS: &str = "jobs";
const FAMILIES: [&str; 4] = [CF_OFFSETS, CF_META, CF_VERSIONS, CF_JOBS];
const SCHEMA: &[u8] = b"1";

/// A partition of an input topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.topic.len() + 5);
        k.extend_from_slice(self.topic.as_bytes());
        k.push(0);
        k.extend_from_slice(&self.partition.to_be_bytes());
        k
    }

    fn from_key(k: &[u8]) -> Option<TopicPartition> {
        let split = k.len().checked_sub(5)?;
        if k[split] != 0 {
            return None;
        }
        let topic = std::str::from_utf8(&k[..split]).ok()?.to_string();
        let partition = i32::from_be_bytes(k[split + 1..].try_into().ok()?);
        Some(TopicPartition { topic, partition })
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The description of one accepted searches version.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VersionMeta {
    /// Its number; match records carry it as `searches_version`.
    pub version: u64,
    /// SHA-256 of the document, hex.
    pub hash: String,
    /// When it was accepted (RFC 3339, UTC).
    pub created_at: String,
    /// Where it came from: `file:PATH`, `api`, `kafka:TOPIC`.
    pub source: String,
    /// Compile time in milliseconds.
    pub compile_ms: u64,
    /// Enabled topics.
    pub topics: usize,
    /// Enabled searches.
    pub searches: usize,
}

fn version_key(kind: u8, version: u64) -> [u8; 9] {
    let mut k = [kind; 9];
    k[1..].copy_from_slice(&version.to_be_bytes());
    k
}

/// Errors of the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("state store {path}: {source}")]
    Rocks {
        /// The directory.
        path: String,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A value has the wrong size.
    #[error("state store: corrupt value under {0}")]
    Corrupt(String),
    /// The store was closed to recover from a failed write and could not
    /// be opened again yet.
    #[error("state store {0}: closed after a failed write, not reopened yet")]
    Closed(String),
    /// A write failure injected by a unit test.
    #[cfg(test)]
    #[error("state store: injected write failure")]
    Injected,
}

/// The checkpoint store.
///
/// # Failed writes
///
/// RocksDB stops accepting writes after a failed WAL write (a full disk, an
/// I/O error) until the database is opened again. So a failed write marks
/// the store broken, and the next write first closes and reopens it (the
/// WAL's torn tail is dropped by point-in-time recovery; every write before
/// the failed one is there). Until a reopen succeeds every call answers the
/// error, and the service keeps its input paused (docs/operations.md §5.1).
pub struct StateStore {
    db: RwLock<Option<DB>>,
    dir: PathBuf,
    path: String,
    broken: AtomicBool,
    read_only: bool,
    /// Writes still to fail (unit tests inject I/O errors with it).
    #[cfg(test)]
    inject_failures: std::sync::atomic::AtomicU32,
}

/// A read guard on the open database.
struct OpenDb<'a>(RwLockReadGuard<'a, Option<DB>>);

impl std::ops::Deref for OpenDb<'_> {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.0
            .as_ref()
            .expect("checked open when the guard was made")
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

fn open_rw(dir: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = FAMILIES.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&opts, dir, cfs)
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// # Errors
    ///
    /// When RocksDB cannot open it (another process holds it, bad path).
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        let path = dir.display().to_string();
        let db = open_rw(dir).map_err(|source| StoreError::Rocks {
            path: path.clone(),
            source,
        })?;
        db.put_cf(cf(&db, CF_META), b"schema", SCHEMA)
            .map_err(|source| StoreError::Rocks {
                path: path.clone(),
                source,
            })?;
        Ok(StateStore::holding(db, dir, path, false))
    }

    /// Opens the store read-only (for `status` while the service runs).
    ///
    /// # Errors
    ///
    /// When it does not exist or cannot be read.
    pub fn open_read_only(dir: &Path) -> Result<StateStore, StoreError> {
        let path = dir.display().to_string();
        let opts = Options::default();
        let families = DB::list_cf(&opts, dir).unwrap_or_default();
        let present = FAMILIES
            .into_iter()
            .filter(|f| families.iter().any(|g| g == f));
        let db = DB::open_cf_for_read_only(&opts, dir, present, false).map_err(|source| {
            StoreError::Rocks {
                path: path.clone(),
                source,
            }
        })?;
        Ok(StateStore::holding(db, dir, path, true))
    }

    fn holding(db: DB, dir: &Path, path: String, read_only: bool) -> StateStore {
        StateStore {
            db: RwLock::new(Some(db)),
            dir: dir.to_path_buf(),
            path,
            broken: AtomicBool::new(false),
            read_only,
            #[cfg(test)]
            inject_failures: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The open database; reopens it first when a reopen after a failed
    /// write did not succeed yet.
    fn db(&self) -> Result<OpenDb<'_>, StoreError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return Ok(OpenDb(guard));
        }
        drop(guard);
        self.reopen()?;
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            return Err(StoreError::Closed(self.path.clone()));
        }
        Ok(OpenDb(guard))
    }

    /// Whether the last write failed (and no write has succeeded since).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Relaxed)
    }

    /// Closes and reopens the database after a failed write.
    fn reopen(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Closed(self.path.clone()));
        }
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        // The old handle must be closed first: it holds the directory lock.
        // (Another thread may have reopened it meanwhile: then this reopens
        // a healthy store, which is harmless.)
        drop(guard.take());
        let db = open_rw(&self.dir).map_err(|e| self.err(e))?;
        *guard = Some(db);
        tracing::info!(path = %self.path, "state store reopened after a failed write");
        Ok(())
    }

    fn sync_write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.broken.load(Relaxed) {
            self.reopen()?;
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        #[cfg(test)]
        if self
            .inject_failures
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            self.broken.store(true, Relaxed);
            return Err(StoreError::Injected);
        }
        let written = self.db()?.write_opt(batch, &w).map_err(|e| self.err(e));
        self.broken.store(written.is_err(), Relaxed);
        written
    }

    /// The searches version in use, if any was ever accepted.
    ///
    /// # Errors
    ///
    /// RocksDB errors and corrupt values.
    pub fn active_version(&self) -> Result<Option<u64>, StoreError> {
        let db = self.db()?;
        let Some(v) = db
            .get_cf(cf(&db, CF_META), b"active_version")
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let b: [u8; 8] = v
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("active_version".into()))?;
        Ok(Some(u64::from_be_bytes(b)))
    }

    /// Stores a new version (its description and document) and makes it
    /// the active one, in one synced WriteBatch.
    ///
    /// # Errors
    ///
    /// RocksDB errors; then nothing was written.
    pub fn add_version(&self, meta: &VersionMeta, document: &[u8]) -> Result<(), StoreError> {
        self.add_version_as(meta, b'd', document)
    }

    /// Stores a new version as a patch of version `base` (stored whole),
    /// and makes it the active one, in one synced WriteBatch. `patch` is
    /// the caller's; this store only keeps it beside `base`.
    ///
    /// # Errors
    ///
    /// RocksDB errors; then nothing was written.
    pub fn add_version_patch(
        &self,
        meta: &VersionMeta,
        base: u64,
        patch: &[u8],
    ) -> Result<(), StoreError> {
        let mut value = base.to_be_bytes().to_vec();
        value.extend_from_slice(patch);
        self.add_version_as(meta, b'p', &value)
    }

    /// Stores `meta` and `value` under key kind `kind` (`d` document, `p`
    /// patch) and makes the version active, in one synced WriteBatch.
    fn add_version_as(&self, meta: &VersionMeta, kind: u8, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        {
            let db = self.db()?;
            let versions = cf(&db, CF_VERSIONS);
            let json = serde_json::to_vec(meta).expect("version meta serializes");
            batch.put_cf(versions, version_key(b'm', meta.version), json);
            batch.put_cf(versions, version_key(kind, meta.version), value);
            batch.put_cf(
                cf(&db, CF_META),
                b"active_version",
                meta.version.to_be_bytes(),
            );
        }
        self.sync_write(batch)
    }

    /// Replaces the patch of stored version `version` by its whole
    /// document (the merge of a delta, or a patch version compiled whole).
    ///
    /// # Errors
    ///
    /// RocksDB errors; then the patch stays.
    pub fn make_whole(&self, version: u64, document: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        {
            let db = self.db()?;
            let versions = cf(&db, CF_VERSIONS);
            batch.put_cf(versions, version_key(b'd', version), document);
            batch.delete_cf(versions, version_key(b'p', version));
        }
        self.sync_write(batch)
    }

    /// Makes the stored version `version` the active one (rollback).
    ///
    /// # Errors
    ///
    /// RocksDB errors.
    pub fn set_active_version(&self, version: u64) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&*self.db()?, CF_META),
            b"active_version",
            version.to_be_bytes(),
        );
        self.sync_write(batch)
    }

    /// Deletes stored versions (their description and document), in one
    /// synced WriteBatch.
    ///
    /// # Errors
    ///
    /// RocksDB errors; then nothing was deleted.
    pub fn delete_versions(&self, versions: &[u64]) -> Result<(), StoreError> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        {
            let db = self.db()?;
            let cf = cf(&db, CF_VERSIONS);
            for &v in versions {
                batch.delete_cf(cf, version_key(b'm', v));
                batch.delete_cf(cf, version_key(b'd', v));
                batch.delete_cf(cf, version_key(b'p', v));
            }
        }
        self.sync_write(batch)
    }

    /// Every stored version's description, oldest first.
    ///
    /// # Errors
    ///
    /// RocksDB errors and corrupt values.
    pub fn versions(&self) -> Result<Vec<VersionMeta>, StoreError> {
        let db = self.db()?;
        let Some(cf) = db.cf_handle(CF_VERSIONS) else {
            return Ok(Vec::new()); // a read-only open of an older store
        };
        let mut out = Vec::new();
        for item in db
            .prefix_iterator_cf(cf, b"m")
            .take_while(|i| i.as_ref().map_or(true, |(k, _)| k.first() == Some(&b'm')))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt(format!("{k:?}")))?,
            );
        }
        Ok(out)
    }

    /// The document of stored version `version`.
    ///
    /// # Errors
    ///
    /// RocksDB errors.
    pub fn version_document(&self, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        db.get_cf(cf(&db, CF_VERSIONS), version_key(b'd', version))
            .map_err(|e| self.err(e))
    }

    /// The patch of stored version `version` and the version it patches,
    /// if it is stored as a patch.
    ///
    /// # Errors
    ///
    /// RocksDB errors and corrupt values.
    pub fn version_patch(&self, version: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let db = self.db()?;
        let Some(v) = db
            .get_cf(cf(&db, CF_VERSIONS), version_key(b'p', version))
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let base: [u8; 8] = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("patch of version {version}")))?;
        Ok(Some((u64::from_be_bytes(base), v[8..].to_vec())))
    }

    fn err(&self, source: rocksdb::Error) -> StoreError {
        StoreError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// This instance's stable id for static group membership: generated
    /// once and kept in the `meta` family, so a restart with the same state
    /// directory rejoins as the same member (its partitions come straight
    /// back instead of waiting for the old member's session to expire).
    ///
    /// # Errors
    ///
    /// RocksDB errors.
    pub fn instance_id(&self, prefix: &str) -> Result<String, StoreError> {
        let db = self.db()?;
        let meta = cf(&db, CF_META);
        if let Some(v) = db.get_cf(meta, b"instance_id").map_err(|e| self.err(e))? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!(
            "{prefix}-{:x}",
            nanos ^ (u128::from(std::process::id()) << 64)
        );
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.put_cf_opt(meta, b"instance_id", id.as_bytes(), &w)
            .map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// The next offset to process of `tp`, if checkpointed.
    ///
    /// # Errors
    ///
    /// RocksDB errors and corrupt values.
    pub fn get(&self, tp: &TopicPartition) -> Result<Option<i64>, StoreError> {
        let db = self.db()?;
        match db
            .get_cf(cf(&db, CF_OFFSETS), tp.key())
            .map_err(|e| self.err(e))?
        {
            None => Ok(None),
            Some(v) => Ok(Some(i64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(tp.to_string()))?,
            ))),
        }
    }

    /// Every checkpoint, sorted by topic and partition.
    ///
    /// # Errors
    ///
    /// RocksDB errors.
    pub fn all(&self) -> Result<Vec<(TopicPartition, i64)>, StoreError> {
        let mut out = Vec::new();
        let db = self.db()?;
        for item in db.iterator_cf(cf(&db, CF_OFFSETS), rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let (Some(tp), Ok(b)) = (TopicPartition::from_key(&k), <[u8; 8]>::try_from(&*v)) {
                out.push((tp, i64::from_be_bytes(b)));
            }
        }
        Ok(out)
    }

    /// Writes the next offsets of `advance` and deletes the checkpoints of
    /// `forget` (partitions handed to another instance), in one synced
    /// WriteBatch.
    ///
    /// # Errors
    ///
    /// RocksDB errors; then nothing was written.
    pub fn commit(
        &self,
        advance: &[(TopicPartition, i64)],
        forget: &[TopicPartition],
    ) -> Result<(), StoreError> {
        self.commit_with_jobs(advance, forget, &[])
    }

    /// [`StateStore::commit`] plus drain jobs to write, all in one synced
    /// WriteBatch.
    ///
    /// # Errors
    ///
    /// RocksDB errors; then nothing was written.
    pub fn commit_with_jobs(
        &self,
        advance: &[(TopicPartition, i64)],
        forget: &[TopicPartition],
        jobs: &[StoredJob],
    ) -> Result<(), StoreError> {
        if advance.is_empty() && forget.is_empty() && jobs.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        {
            let db = self.db()?;
            let offsets = cf(&db, CF_OFFSETS);
            for (tp, next) in advance {
                batch.put_cf(offsets, tp.key(), next.to_be_bytes());
            }
            for tp in forget {
                batch.delete_cf(offsets, tp.key());
            }
            let jcf = cf(&db, CF_JOBS);
            for job in jobs {
                batch.put_cf(jcf, job.id.to_be_bytes(), &job.bytes);
            }
        }
        self.sync_write(batch)
    }

    /// Every stored drain job, oldest first.
    ///
    /// # Errors
    ///
    /// RocksDB errors.
    pub fn jobs(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let db = self.db()?;
        let Some(cf) = db.cf_handle(CF_JOBS) else {
            return Ok(Vec::new()); // read-only open of an older store
        };
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Ok(b) = <[u8; 8]>::try_from(&*k) {
                out.push((u64::from_be_bytes(b), v.to_vec()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
