//! Files and directories, without blocking the runtime: each operation runs on the
//! [`thread`](crate::thread) pool (as trio's `trio.Path` and `open_file` do), because regular
//! files are always "ready" to the reactor and their system calls block.
//!
//! Every operation is a checkpoint. Cancellation follows [`run_blocking`]'s default: an
//! operation cancelled before it starts does not happen; one already running on its thread
//! completes and its result is returned, so nothing is lost or half-done (principle 4).
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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use std::fs::{FileType, Metadata, Permissions};

use crate::net::with_context;
use crate::thread::run_blocking;

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
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("read", &path, move || sfs::read_to_string(p)).await
}

/// Writes `contents` to a file, creating it or replacing its contents.
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
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("create directory", &path, move || sfs::create_dir(p)).await
}

/// Creates a directory and any missing parents.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("create directory", &path, move || sfs::create_dir_all(p)).await
}

/// Removes a file.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("remove", &path, move || sfs::remove_file(p)).await
}

/// Removes an empty directory.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let p = path.clone();
    blocking("remove directory", &path, move || sfs::remove_dir(p)).await
}

/// Removes a directory and everything in it.
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
#[derive(Debug, Clone)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    file_type: FileType,
}

impl DirEntry {
    /// The entry's full path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry's name within its directory.
    pub fn file_name(&self) -> &OsString {
        &self.file_name
    }

    /// File, directory or symbolic link (read with the listing, no extra system call).
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The entry's metadata (not following a symbolic link).
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
    pub fn new() -> Self {
        OpenOptions(sfs::OpenOptions::new())
    }

    /// Open for reading.
    pub fn read(&mut self, yes: bool) -> &mut Self {
        self.0.read(yes);
        self
    }

    /// Open for writing.
    pub fn write(&mut self, yes: bool) -> &mut Self {
        self.0.write(yes);
        self
    }

    /// Writes go to the end.
    pub fn append(&mut self, yes: bool) -> &mut Self {
        self.0.append(yes);
        self
    }

    /// Empty the file on opening.
    pub fn truncate(&mut self, yes: bool) -> &mut Self {
        self.0.truncate(yes);
        self
    }

    /// Create the file if it does not exist.
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.0.create(yes);
        self
    }

    /// Create the file, failing if it exists.
    pub fn create_new(&mut self, yes: bool) -> &mut Self {
        self.0.create_new(yes);
        self
    }

    /// Opens `path` with these options.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let options = self.0.clone();
        let file = blocking("open", &path, move || options.open(p)).await?;
        Ok(File {
            inner: Arc::new(file),
            path,
        })
    }
}

/// An open file whose operations run on the thread pool. Each operation is a checkpoint;
/// one that started on its thread completes even if cancelled (see the module docs).
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
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("path", &self.path).finish()
    }
}

impl File {
    /// Opens a file for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Creates (or truncates) a file for writing.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    async fn run<R, F>(&self, what: &'static str, f: F) -> io::Result<R>
    where
        F: FnOnce(&sfs::File) -> io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
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
        let len = buf.len();
        let data = self
            .run("read", move |mut f| {
                let mut data = vec![0u8; len];
                let n = f.read(&mut data)?;
                data.truncate(n);
                Ok(data)
            })
            .await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Reads from the current position to the end.
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        self.run("read", |mut f| {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            Ok(data)
        })
        .await
    }

    /// Writes all of `buf` at the current position.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let data = buf.to_vec();
        self.run("write", move |mut f| f.write_all(&data)).await
    }

    /// Moves the position; returns the new position from the start.
    pub async fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.run("seek in", move |mut f| f.seek(pos)).await
    }

    /// Flushes data and metadata to the device.
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
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.run("stat", |f| f.metadata()).await
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
