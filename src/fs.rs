//! Files and directories, without blocking the runtime: each operation runs on the
//! [`thread`](crate::thread) pool (as trio's `trio.Path` and `open_file` do), because regular
//! files are always "ready" to the reactor and their system calls block.
//!
//! Every operation is a checkpoint. An operation cancelled before it starts does not happen; one
//! already running on its thread completes, so nothing is lost or half-done (principle 4). The
//! path functions follow [`run_blocking`]'s default and return its result; a [`File`]'s reads,
//! writes and seeks return the cancellation at once and the file keeps the outcome for its next
//! operation (see [`File`]).
//! Errors name the path ("could not open data/x.txt: No such file or directory (os error 2)").
//!
//! ```
//! trellis::run(async {
//!     let dir = std::env::temp_dir().join(format!("trellis-fs-doc-{}", std::process::id()));
//!     trellis::fs::create_dir_all(&dir).await?;
//!     let file = dir.join("hello.txt");
//!     trellis::fs::write(&file, "hello").await?;
//!     assert_eq!(trellis::fs::read_to_string(&file).await?, "hello");
//!     trellis::fs::remove_dir_all(&dir).await?;
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```

use std::ffi::OsString;
use std::fmt;
use std::fs as sfs;
use std::future::poll_fn;
use std::io::{self, Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

pub use std::fs::{FileType, Metadata, Permissions};

use crate::net::with_context;
use crate::state_lock::lock_blocking;
use crate::thread::run_blocking;
use file_io::FileIo;

mod file_io;

/// Runs `f` on the pool; errors get "could not {what} {path}: ".
async fn blocking<R, F>(what: &'static str, path: &Path, f: F) -> io::Result<R>
where
    F: FnOnce() -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    run_blocking(f)
        .await?
        .map_err(|e| with_context(e, || format!("could not {what} {}", path.display())))
}

/// Reads a whole file.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-read-{}", std::process::id()));
///     trellis::fs::write(&path, [0u8, 1, 2]).await?;
///     assert_eq!(trellis::fs::read(&path).await?, [0, 1, 2]);
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("read", &path, move || sfs::read(p)).await
}

/// Reads a whole file as UTF-8.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-read-to-string-{}", std::process::id()));
///     trellis::fs::write(&path, "line one\nline two\n").await?;
///     let text = trellis::fs::read_to_string(&path).await?;
///     assert_eq!(text.lines().count(), 2);
///     // Not UTF-8: an InvalidData error.
///     trellis::fs::write(&path, [0xff, 0xfe]).await?;
///     let err = trellis::fs::read_to_string(&path).await.unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("read", &path, move || sfs::read_to_string(p)).await
}

/// Writes `contents` to a file, creating it or replacing its contents.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-write-{}", std::process::id()));
///     trellis::fs::write(&path, "first version, longer").await?;
///     trellis::fs::write(&path, b"second").await?; // replaces, does not append
///     assert_eq!(trellis::fs::read(&path).await?, b"second");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    let contents = contents.as_ref().to_vec();
    blocking("write", &path, move || sfs::write(p, contents)).await
}

/// Metadata of a path, following symbolic links.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-metadata-{}", std::process::id()));
///     trellis::fs::write(&path, "12345").await?;
///     let meta = trellis::fs::metadata(&path).await?;
///     assert!(meta.is_file());
///     assert_eq!(meta.len(), 5);
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("stat", &path, move || sfs::metadata(p)).await
}

/// Metadata of a path itself (a symbolic link is not followed).
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-symlink-metadata-{}", std::process::id()));
///     let link = path.with_extension("link");
///     trellis::fs::write(&path, "target").await?;
///     std::os::unix::fs::symlink(&path, &link)?;
///     assert!(trellis::fs::symlink_metadata(&link).await?.file_type().is_symlink());
///     assert!(trellis::fs::metadata(&link).await?.is_file());
///     trellis::fs::remove_file(&link).await?;
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("stat", &path, move || sfs::symlink_metadata(p)).await
}

/// Whether a path exists (false on any error, like `Path::exists`).
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-exists-{}", std::process::id()));
///     assert!(!trellis::fs::exists(&path).await?);
///     trellis::fs::write(&path, "").await?;
///     assert!(trellis::fs::exists(&path).await?);
///     trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn exists(path: impl AsRef<Path>) -> io::Result<bool> {
    let p = path.as_ref().to_owned();
    Ok(run_blocking(move || p.exists()).await?)
}

/// Creates a directory (its parent must exist).
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-create-dir-{}", std::process::id()));
///     trellis::fs::create_dir(&dir).await?;
///     assert!(trellis::fs::metadata(&dir).await?.is_dir());
///     // Again: it exists now.
///     let err = trellis::fs::create_dir(&dir).await.unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
///     // A missing parent is an error too.
///     assert!(trellis::fs::create_dir(dir.join("a/b")).await.is_err());
///     # trellis::fs::remove_dir(&dir).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("create directory", &path, move || sfs::create_dir(p)).await
}

/// Creates a directory and any missing parents.
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-create-dir-all-{}", std::process::id()));
///     let deep = dir.join("a").join("b").join("c");
///     trellis::fs::create_dir_all(&deep).await?;
///     assert!(trellis::fs::metadata(&deep).await?.is_dir());
///     trellis::fs::create_dir_all(&deep).await?; // already there: not an error
///     # trellis::fs::remove_dir_all(&dir).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("create directory", &path, move || sfs::create_dir_all(p)).await
}

/// Removes a file.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-remove-file-{}", std::process::id()));
///     trellis::fs::write(&path, "temporary").await?;
///     trellis::fs::remove_file(&path).await?;
///     assert!(!trellis::fs::exists(&path).await?);
///     // The error names the path.
///     let err = trellis::fs::remove_file(&path).await.unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
///     assert!(err.to_string().contains("trellis-doc-remove-file"));
///
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("remove", &path, move || sfs::remove_file(p)).await
}

/// Removes an empty directory.
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-remove-dir-{}", std::process::id()));
///     trellis::fs::create_dir_all(&dir).await?;
///     trellis::fs::write(dir.join("f"), "x").await?;
///     assert!(trellis::fs::remove_dir(&dir).await.is_err()); // not empty
///     trellis::fs::remove_file(dir.join("f")).await?;
///     trellis::fs::remove_dir(&dir).await?;
///     assert!(!trellis::fs::exists(&dir).await?);
///
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("remove directory", &path, move || sfs::remove_dir(p)).await
}

/// Removes a directory and everything in it.
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-remove-dir-all-{}", std::process::id()));
///     trellis::fs::create_dir_all(dir.join("nested/deeper")).await?;
///     trellis::fs::write(dir.join("nested/file.txt"), "x").await?;
///     trellis::fs::remove_dir_all(&dir).await?;
///     assert!(!trellis::fs::exists(&dir).await?);
///
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("remove directory", &path, move || sfs::remove_dir_all(p)).await
}

/// Renames (moves) `from` to `to`, replacing `to` if it is a file.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-rename-{}", std::process::id()));
///     // Write to a temporary name, then rename: readers see the old file or the new one,
///     // never a half-written one.
///     let partial = path.with_extension("partial");
///     trellis::fs::write(&partial, "complete contents").await?;
///     trellis::fs::rename(&partial, &path).await?;
///     assert_eq!(trellis::fs::read_to_string(&path).await?, "complete contents");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let from = from.as_ref().to_owned();
    let to = to.as_ref().to_owned();
    let (f, t) = (from.clone(), to.clone());
    run_blocking(move || sfs::rename(f, t)).await?.map_err(|e| {
        with_context(e, || {
            format!("could not rename {} to {}", from.display(), to.display())
        })
    })
}

/// Copies a file's contents and permissions; returns the bytes copied.
///
/// ```
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-copy-{}", std::process::id()));
///     let copy = path.with_extension("copy");
///     trellis::fs::write(&path, "original").await?;
///     assert_eq!(trellis::fs::copy(&path, &copy).await?, 8);
///     assert_eq!(trellis::fs::read(&copy).await?, b"original");
///     trellis::fs::remove_file(&copy).await?;
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let from = from.as_ref().to_owned();
    let to = to.as_ref().to_owned();
    let (f, t) = (from.clone(), to.clone());
    run_blocking(move || sfs::copy(f, t)).await?.map_err(|e| {
        with_context(e, || {
            format!("could not copy {} to {}", from.display(), to.display())
        })
    })
}

/// The absolute path with symbolic links resolved.
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-canonicalize-{}", std::process::id()));
///     trellis::fs::create_dir_all(dir.join("sub")).await?;
///     let roundabout = dir.join("sub").join("..").join("sub");
///     let resolved = trellis::fs::canonicalize(&roundabout).await?;
///     assert!(resolved.is_absolute());
///     assert_eq!(resolved, trellis::fs::canonicalize(dir.join("sub")).await?);
///     assert!(!resolved.to_string_lossy().contains(".."));
///     # trellis::fs::remove_dir_all(&dir).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("resolve", &path, move || sfs::canonicalize(p)).await
}

/// The entries of a directory (not `.` and `..`), in the order the system lists them.
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-read-dir-{}", std::process::id()));
///     trellis::fs::create_dir_all(dir.join("sub")).await?;
///     trellis::fs::write(dir.join("a.txt"), "a").await?;
///     let mut names: Vec<_> = trellis::fs::read_dir(&dir)
///         .await?
///         .iter()
///         .map(|entry| (entry.file_name().clone(), entry.file_type().is_dir()))
///         .collect();
///     names.sort();
///     assert_eq!(names, [("a.txt".into(), false), ("sub".into(), true)]);
///     # trellis::fs::remove_dir_all(&dir).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("list", &path, move || {
        sfs::read_dir(p)?
            .map(|entry| {
                let entry = entry?;
                Ok(DirEntry {
                    path: entry.path(),
                    file_name: entry.file_name(),
                    file_type: entry.file_type()?,
                })
            })
            .collect()
    })
    .await
}

/// One entry of [`read_dir`].
///
/// ```
/// trellis::run(async {
///     # let dir = std::env::temp_dir().join(format!("trellis-doc-dir-entry-{}", std::process::id()));
///     trellis::fs::create_dir_all(&dir).await?;
///     trellis::fs::write(dir.join("only.txt"), "abc").await?;
///     let entries = trellis::fs::read_dir(&dir).await?;
///     let entry = &entries[0];
///     assert_eq!(entry.file_name(), "only.txt");
///     assert_eq!(entry.path(), dir.join("only.txt"));
///     assert!(entry.file_type().is_file());
///     assert_eq!(entry.metadata().await?.len(), 3);
///     # trellis::fs::remove_dir_all(&dir).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    file_type: FileType,
}

impl DirEntry {
    /// The entry's full path.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let dir = std::env::temp_dir().join(format!("trellis-doc-entry-path-{}", std::process::id()));
    ///     trellis::fs::create_dir_all(&dir).await?;
    ///     trellis::fs::write(dir.join("f.txt"), "").await?;
    ///     let entries = trellis::fs::read_dir(&dir).await?;
    ///     assert_eq!(entries[0].path(), dir.join("f.txt"));
    ///     # trellis::fs::remove_dir_all(&dir).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry's name within its directory.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let dir = std::env::temp_dir().join(format!("trellis-doc-entry-file-name-{}", std::process::id()));
    ///     trellis::fs::create_dir_all(&dir).await?;
    ///     trellis::fs::write(dir.join("name.txt"), "").await?;
    ///     let entries = trellis::fs::read_dir(&dir).await?;
    ///     assert_eq!(entries[0].file_name(), "name.txt");
    ///     # trellis::fs::remove_dir_all(&dir).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn file_name(&self) -> &OsString {
        &self.file_name
    }

    /// File, directory or symbolic link (read with the listing, no extra system call).
    ///
    /// ```
    /// trellis::run(async {
    ///     # let dir = std::env::temp_dir().join(format!("trellis-doc-entry-file-type-{}", std::process::id()));
    ///     trellis::fs::create_dir_all(dir.join("child")).await?;
    ///     let entries = trellis::fs::read_dir(&dir).await?;
    ///     assert!(entries[0].file_type().is_dir());
    ///     # trellis::fs::remove_dir_all(&dir).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The entry's metadata (not following a symbolic link).
    ///
    /// ```
    /// trellis::run(async {
    ///     # let dir = std::env::temp_dir().join(format!("trellis-doc-entry-metadata-{}", std::process::id()));
    ///     trellis::fs::create_dir_all(&dir).await?;
    ///     trellis::fs::write(dir.join("target"), "1234").await?;
    ///     std::os::unix::fs::symlink(dir.join("target"), dir.join("link"))?;
    ///     for entry in trellis::fs::read_dir(&dir).await? {
    ///         let meta = entry.metadata().await?;
    ///         if entry.file_name() == "link" {
    ///             assert!(meta.file_type().is_symlink());
    ///         } else {
    ///             assert_eq!(meta.len(), 4);
    ///         }
    ///     }
    ///     # trellis::fs::remove_dir_all(&dir).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        symlink_metadata(&self.path).await
    }
}

/// How to open a file (std's `OpenOptions`, opened on the thread pool).
///
/// ```
/// use trellis::fs::OpenOptions;
///
/// trellis::run(async {
///     let path = std::env::temp_dir().join(format!("trellis-open-doc-{}", std::process::id()));
///     let mut file = OpenOptions::new().create(true).append(true).open(&path).await?;
///     file.write_all(b"one line\n").await?;
///     trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions(sfs::OpenOptions);

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-new-{}", std::process::id()));
    ///     trellis::fs::write(&path, "x").await?;
    ///     // With no access mode set, opening fails.
    ///     assert!(trellis::fs::OpenOptions::new().open(&path).await.is_err());
    ///     let file = trellis::fs::OpenOptions::new().read(true).open(&path).await?;
    ///     assert_eq!(file.path(), path);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new() -> Self {
        OpenOptions(sfs::OpenOptions::new())
    }

    /// Open for reading.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-read-{}", std::process::id()));
    ///     trellis::fs::write(&path, "data").await?;
    ///     let mut file = trellis::fs::OpenOptions::new().read(true).open(&path).await?;
    ///     assert_eq!(file.read_to_end().await?, b"data");
    ///     // Read-only: writing fails.
    ///     assert!(file.write_all(b"more").await.is_err());
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn read(&mut self, yes: bool) -> &mut Self {
        self.0.read(yes);
        self
    }

    /// Open for writing.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-write-{}", std::process::id()));
    ///     trellis::fs::write(&path, "abcdef").await?;
    ///     // Writing without truncating overwrites from the start.
    ///     let mut file = trellis::fs::OpenOptions::new().write(true).open(&path).await?;
    ///     file.write_all(b"XY").await?;
    ///     assert_eq!(trellis::fs::read(&path).await?, b"XYcdef");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn write(&mut self, yes: bool) -> &mut Self {
        self.0.write(yes);
        self
    }

    /// Writes go to the end.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-append-{}", std::process::id()));
    ///     trellis::fs::write(&path, "one\n").await?;
    ///     let mut log = trellis::fs::OpenOptions::new().append(true).open(&path).await?;
    ///     log.write_all(b"two\n").await?;
    ///     assert_eq!(trellis::fs::read_to_string(&path).await?, "one\ntwo\n");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn append(&mut self, yes: bool) -> &mut Self {
        self.0.append(yes);
        self
    }

    /// Empty the file on opening.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-truncate-{}", std::process::id()));
    ///     trellis::fs::write(&path, "old contents").await?;
    ///     let mut file = trellis::fs::OpenOptions::new()
    ///         .write(true)
    ///         .truncate(true)
    ///         .open(&path)
    ///         .await?;
    ///     file.write_all(b"new").await?;
    ///     assert_eq!(trellis::fs::read(&path).await?, b"new");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn truncate(&mut self, yes: bool) -> &mut Self {
        self.0.truncate(yes);
        self
    }

    /// Create the file if it does not exist.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-create-{}", std::process::id()));
    ///     assert!(!trellis::fs::exists(&path).await?);
    ///     trellis::fs::OpenOptions::new().write(true).create(true).open(&path).await?;
    ///     assert!(trellis::fs::exists(&path).await?);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.0.create(yes);
        self
    }

    /// Create the file, failing if it exists.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-create-new-{}", std::process::id()));
    ///     let mut options = trellis::fs::OpenOptions::new();
    ///     options.write(true).create_new(true);
    ///     options.open(&path).await?;
    ///     let err = options.open(&path).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn create_new(&mut self, yes: bool) -> &mut Self {
        self.0.create_new(yes);
        self
    }

    /// Opens `path` with these options.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-options-open-{}", std::process::id()));
    ///     let err = trellis::fs::OpenOptions::new().read(true).open(&path).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    ///     assert!(err.to_string().starts_with("could not open"));
    ///     trellis::fs::write(&path, "now it exists").await?;
    ///     trellis::fs::OpenOptions::new().read(true).open(&path).await?;
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let options = self.0.clone();
        let file = blocking("open", &path, move || options.open(p)).await?;
        Ok(File {
            inner: Arc::new(file),
            path,
            io: Mutex::default(),
        })
    }
}

/// An open file whose operations run on the thread pool. Each operation is a checkpoint;
/// one that started on its thread completes even if cancelled (see the module docs).
///
/// It implements `futures-io`'s [`AsyncRead`](futures_io::AsyncRead),
/// [`AsyncWrite`](futures_io::AsyncWrite) and [`AsyncSeek`](futures_io::AsyncSeek), so the
/// `futures` ecosystem's helpers (`AsyncReadExt::read_to_end`, `AsyncWriteExt::write_all`,
/// `copy`, codecs) work on it, mixed freely with the methods below. Reads, writes and seeks run
/// one at a time on a pool thread, in the order asked. What a cancelled or abandoned poll does:
///
/// - **Reads lose nothing.** A poll cancelled (it returns the `Cancelled` error at once) or
///   dropped while its read runs on the thread leaves the read running; the bytes it brings are
///   kept and handed to the next read.
/// - **Writes are accepted, then reported.** `poll_write` returns once the thread has the bytes
///   (as tokio's and async-std's files do); the write happens even if nobody polls again. If it
///   fails, the next operation on the file returns the error, and `flush` (or `close`) waits for
///   every accepted write and returns it. Flush before dropping the file, or the last error is
///   never seen. A poll cancelled or dropped while it waits for a thread slot accepted nothing.
/// - **Seeks happen.** A seek whose poll was abandoned moves the position anyway; asking again
///   for the same target returns its result.
///
/// ```
/// use futures_lite::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
/// use std::io::SeekFrom;
///
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-futures-io-{}", std::process::id()));
///     let mut file = trellis::fs::OpenOptions::new()
///         .read(true).write(true).create(true).truncate(true)
///         .open(&path).await?;
///     AsyncWriteExt::write_all(&mut file, b"hello, world").await?;
///     file.flush().await?; // every accepted write done, errors reported
///     AsyncSeekExt::seek(&mut file, SeekFrom::Start(7)).await?;
///     let mut rest = String::new();
///     file.read_to_string(&mut rest).await?;
///     assert_eq!(rest, "world");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
///
/// ```
/// use std::io::SeekFrom;
/// use trellis::fs::File;
///
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-{}", std::process::id()));
///     let mut file = File::create(&path).await?;
///     file.write_all(b"hello, world").await?;
///     file.sync_all().await?;
///
///     let mut file = File::open(&path).await?;
///     file.seek(SeekFrom::Start(7)).await?;
///     assert_eq!(file.read_to_end().await?, b"world");
///     assert_eq!(file.metadata().await?.len(), 12);
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct File {
    inner: Arc<sfs::File>,
    path: PathBuf,
    /// The reads, writes and seeks in flight and what they left (`file_io`). A lock so that the
    /// `&self` methods can wait for them; `&mut self` ones reach it without locking.
    io: Mutex<FileIo>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("path", &self.path).finish()
    }
}

impl File {
    /// Opens a file for reading.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-open-{}", std::process::id()));
    ///     trellis::fs::write(&path, "contents").await?;
    ///     let mut file = trellis::fs::File::open(&path).await?;
    ///     assert_eq!(file.read_to_end().await?, b"contents");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Creates (or truncates) a file for writing.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-create-{}", std::process::id()));
    ///     trellis::fs::write(&path, "a much longer old text").await?;
    ///     let mut file = trellis::fs::File::create(&path).await?;
    ///     file.write_all(b"short").await?;
    ///     assert_eq!(trellis::fs::read(&path).await?, b"short");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    fn io(&self) -> MutexGuard<'_, FileIo> {
        lock_blocking(&self.io)
    }

    /// Waits for the reads, writes and seeks in flight, and returns the error of one that
    /// nobody waited for.
    async fn settle(&self) -> io::Result<()> {
        poll_fn(|cx| self.io().poll_settled(cx, &self.path)).await
    }

    /// Runs `f` on the pool once the calls in flight are done.
    async fn run<R, F>(&self, what: &'static str, f: F) -> io::Result<R>
    where
        F: FnOnce(&sfs::File) -> io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.settle().await?;
        let file = self.inner.clone();
        blocking(what, &self.path, move || f(&file)).await
    }

    /// Reads some bytes at the current position; `Ok(0)` at end of file.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-read-{}", std::process::id()));
    ///     # trellis::fs::write(&path, "abcdef").await?;
    ///     let mut file = trellis::fs::File::open(&path).await?;
    ///     let mut buf = [0u8; 4];
    ///     let n = file.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"abcd");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            let (io, file, path) = self.io_mut();
            io.poll_read(cx, buf, file, path)
        })
        .await
    }

    /// Reads from the current position to the end.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-read-to-end-{}", std::process::id()));
    ///     trellis::fs::write(&path, "header;body").await?;
    ///     let mut file = trellis::fs::File::open(&path).await?;
    ///     let mut head = [0u8; 7];
    ///     file.read(&mut head).await?;
    ///     assert_eq!(file.read_to_end().await?, b"body");
    ///     assert!(file.read_to_end().await?.is_empty()); // at the end now
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        self.settle().await?;
        // What earlier reads brought in and nobody took comes first.
        let kept = self.io.get_mut().map_or_else(
            |e| e.into_inner().take_read_ahead(),
            FileIo::take_read_ahead,
        );
        self.run("read", |mut f| {
            let mut data = kept;
            f.read_to_end(&mut data)?;
            Ok(data)
        })
        .await
    }

    /// Writes all of `buf` at the current position.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-write-all-{}", std::process::id()));
    ///     let mut file = trellis::fs::File::create(&path).await?;
    ///     file.write_all(b"part one, ").await?;
    ///     file.write_all(b"part two").await?;
    ///     assert_eq!(trellis::fs::read_to_string(&path).await?, "part one, part two");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One accepted write takes the whole buffer; the flush waits for it.
        let mut written = 0;
        while written < buf.len() {
            let rest = &buf[written..];
            written += poll_fn(|cx| {
                let (io, file, path) = self.io_mut();
                io.poll_write(cx, rest, file, path)
            })
            .await?;
        }
        poll_fn(|cx| {
            let (io, _, path) = self.io_mut();
            io.poll_flush(cx, path)
        })
        .await
    }

    /// Moves the position; returns the new position from the start.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-seek-{}", std::process::id()));
    ///     use std::io::SeekFrom;
    ///     trellis::fs::write(&path, "0123456789").await?;
    ///     let mut file = trellis::fs::File::open(&path).await?;
    ///     assert_eq!(file.seek(SeekFrom::End(-3)).await?, 7);
    ///     assert_eq!(file.read_to_end().await?, b"789");
    ///     assert_eq!(file.seek(SeekFrom::Start(2)).await?, 2);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        poll_fn(|cx| {
            let (io, file, path) = self.io_mut();
            io.poll_seek(cx, pos, file, path)
        })
        .await
    }

    /// Flushes data and metadata to the device.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-sync-all-{}", std::process::id()));
    ///     let mut file = trellis::fs::File::create(&path).await?;
    ///     file.write_all(b"must survive a crash").await?;
    ///     file.sync_all().await?; // on disk now, not only in the page cache
    ///     assert_eq!(file.metadata().await?.len(), 20);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn sync_all(&self) -> io::Result<()> {
        self.run("sync", |f| f.sync_all()).await
    }

    /// Truncates or extends the file to `len` bytes.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-set-len-{}", std::process::id()));
    ///     let mut file = trellis::fs::File::create(&path).await?;
    ///     file.write_all(b"0123456789").await?;
    ///     file.set_len(4).await?;
    ///     assert_eq!(trellis::fs::read(&path).await?, b"0123");
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.run("resize", move |f| f.set_len(len)).await
    }

    /// The file's metadata.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-metadata-{}", std::process::id()));
    ///     let mut file = trellis::fs::File::create(&path).await?;
    ///     file.write_all(b"12345").await?;
    ///     let meta = file.metadata().await?;
    ///     assert!(meta.is_file());
    ///     assert_eq!(meta.len(), 5);
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.run("stat", |f| f.metadata()).await
    }

    /// The path the file was opened with.
    ///
    /// ```
    /// trellis::run(async {
    ///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-path-{}", std::process::id()));
    ///     let file = trellis::fs::File::create(&path).await?;
    ///     assert_eq!(file.path(), path.as_path());
    ///     # trellis::fs::remove_file(&path).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl File {
    /// The lock-free way in for `&mut self` (a poisoned lock still holds a consistent state: no
    /// code runs user callbacks under it).
    fn io_mut(&mut self) -> (&mut FileIo, &Arc<sfs::File>, &Path) {
        let io = self.io.get_mut().unwrap_or_else(|e| e.into_inner());
        (io, &self.inner, &self.path)
    }
}

/// Reads run on a pool thread; see [`File`] for what a cancelled or dropped poll does.
///
/// ```
/// use futures_lite::AsyncReadExt;
///
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-async-read-{}", std::process::id()));
///     trellis::fs::write(&path, "some bytes").await?;
///     let mut file = trellis::fs::File::open(&path).await?;
///     let mut all = Vec::new();
///     // futures-lite's (the file's own `read_to_end` takes no buffer).
///     AsyncReadExt::read_to_end(&mut file, &mut all).await?;
///     assert_eq!(all, b"some bytes");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
impl futures_io::AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let (io, file, path) = self.get_mut().io_mut();
        io.poll_read(cx, buf, file, path)
    }
}

/// Writes are accepted once a pool thread has the bytes; `flush` and `close` wait for them and
/// report their errors. See [`File`].
///
/// ```
/// use futures_lite::AsyncWriteExt;
///
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-async-write-{}", std::process::id()));
///     let mut file = trellis::fs::File::create(&path).await?;
///     file.write_all(b"through ").await?; // futures-lite's, through AsyncWrite
///     file.write_all(b"AsyncWrite").await?;
///     file.close().await?;
///     assert_eq!(trellis::fs::read_to_string(&path).await?, "through AsyncWrite");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
impl futures_io::AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let (io, file, path) = self.get_mut().io_mut();
        io.poll_write(cx, buf, file, path)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, _, path) = self.get_mut().io_mut();
        io.poll_flush(cx, path)
    }

    /// Waits for the accepted writes, as `poll_flush`; the file itself closes when dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Seeks run on a pool thread after the reads and writes asked before them; see [`File`].
///
/// ```
/// use futures_lite::{AsyncReadExt, AsyncSeekExt};
/// use std::io::SeekFrom;
///
/// trellis::run(async {
///     # let path = std::env::temp_dir().join(format!("trellis-doc-file-async-seek-{}", std::process::id()));
///     trellis::fs::write(&path, "0123456789").await?;
///     let mut file = trellis::fs::File::open(&path).await?;
///     assert_eq!(AsyncSeekExt::seek(&mut file, SeekFrom::End(-4)).await?, 6);
///     let mut tail = Vec::new();
///     AsyncReadExt::read_to_end(&mut file, &mut tail).await?;
///     assert_eq!(tail, b"6789");
///     # trellis::fs::remove_file(&path).await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
impl futures_io::AsyncSeek for File {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        let (io, file, path) = self.get_mut().io_mut();
        io.poll_seek(cx, pos, file, path)
    }
}
