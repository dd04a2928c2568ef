//! `fs::File` through `futures-io`'s traits (driven by `futures_lite`'s extension traits):
//! reads, writes and seeks in order, mixed with the file's own methods; a cancelled or dropped
//! read loses no byte (principle 4), an accepted write's failure is reported by the next
//! operation and by `flush`, and a write refused by a cancelled scope accepts nothing.

mod common;

use std::ffi::CString;
use std::io::SeekFrom;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::*;
use futures_lite::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use trellis::fs::{self, File, OpenOptions};
use trellis::{move_on_after, timeout, CancelScope};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "trellis-fs-futures-io-{name}-{}",
        std::process::id()
    ))
}

fn read_write() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    options
}

/// 600 KiB of a pattern that shows any lost, repeated or reordered byte.
fn pattern() -> Vec<u8> {
    (0..600 * 1024u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn read_to_end_through_async_read_gets_every_byte_over_several_calls() {
    let path = scratch("read-to-end");
    let got = trellis::run(async {
        fs::write(&path, pattern()).await?;
        let mut file = File::open(&path).await?;
        let mut all = Vec::new();
        let n = AsyncReadExt::read_to_end(&mut file, &mut all).await?;
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>((n, all))
    })
    .unwrap();
    assert_eq!(got.0, 600 * 1024);
    assert!(got.1 == pattern(), "the bytes read differ from the file's");
}

#[test]
fn write_all_then_flush_puts_the_bytes_in_the_file_in_order() {
    let path = scratch("write-all");
    let contents = trellis::run(async {
        let mut file = File::create(&path).await?;
        AsyncWriteExt::write_all(&mut file, b"first ").await?;
        AsyncWriteExt::write_all(&mut file, b"second ").await?;
        AsyncWriteExt::write_all(&mut file, &pattern()[..1000]).await?;
        file.flush().await?;
        let on_disk = fs::read(&path).await?;
        file.close().await?;
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>(on_disk)
    })
    .unwrap();
    assert_eq!(&contents[..13], b"first second ");
    assert_eq!(&contents[13..], &pattern()[..1000]);
}

#[test]
fn seek_then_read_reads_from_the_new_position() {
    let path = scratch("seek");
    let got = trellis::run(async {
        fs::write(&path, "0123456789").await?;
        let mut file = File::open(&path).await?;
        let mut two = [0u8; 2];
        let mut log = Vec::new();
        log.push(AsyncSeekExt::seek(&mut file, SeekFrom::Start(3)).await?);
        file.read_exact(&mut two).await?;
        log.push(u64::from(two[0] - b'0') * 10 + u64::from(two[1] - b'0'));
        log.push(AsyncSeekExt::seek(&mut file, SeekFrom::Current(2)).await?);
        file.read_exact(&mut two).await?;
        log.push(u64::from(two[0] - b'0') * 10 + u64::from(two[1] - b'0'));
        log.push(AsyncSeekExt::seek(&mut file, SeekFrom::End(-1)).await?);
        let mut rest = Vec::new();
        AsyncReadExt::read_to_end(&mut file, &mut rest).await?;
        log.push(u64::from(rest[0] - b'0'));
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>(log)
    })
    .unwrap();
    // At 3 read "34"; +2 from 5 is 7, read "78"; the end minus one is 9.
    assert_eq!(got, [3, 34, 7, 78, 9, 9]);
}

#[test]
fn trait_calls_and_the_files_own_methods_interleave_in_order() {
    let path = scratch("interleave");
    let got = trellis::run(async {
        let mut file = read_write().truncate(true).open(&path).await?;
        AsyncWriteExt::write_all(&mut file, b"abc").await?; // accepted, not yet flushed
        file.write_all(b"def").await?; // the file's own: waits for the one before
        AsyncWriteExt::write_all(&mut file, b"ghi").await?;
        let start = file.seek(SeekFrom::Start(0)).await?; // waits for the accepted write
        let mut three = [0u8; 3];
        file.read_exact(&mut three).await?;
        let rest = file.read_to_end().await?;
        let len = file.metadata().await?.len();
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>((start, three, rest, len))
    })
    .unwrap();
    assert_eq!(got, (0, *b"abc", b"defghi".to_vec(), 9));
}

/// A FIFO, to be opened for reading and writing: a read on it blocks its thread until bytes
/// come.
fn fifo(name: &str) -> PathBuf {
    let path = scratch(name);
    let _ = std::fs::remove_file(&path);
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo failed"
    );
    path
}

/// Writes `bytes` into the FIFO at `path` with std, outside the runtime's I/O.
fn feed(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let mut writer = std::fs::OpenOptions::new().write(true).open(path)?;
    std::io::Write::write_all(&mut writer, bytes)
}

#[test]
fn a_cancelled_read_loses_nothing_the_next_reads_get_its_bytes() {
    let path = fifo("cancelled-read");
    let got = trellis::run(async {
        let mut file = read_write().open(&path).await?;
        let mut big = [0u8; 100];
        // The read blocks on its thread; the scope is cancelled at 50 ms.
        let cancelled = move_on_after(ms(50), AsyncReadExt::read(&mut file, &mut big)).await;
        assert!(cancelled.is_none());
        // Bytes arrive for the read still running on its thread.
        feed(&path, b"hello world")?;
        let mut five = [0u8; 5];
        let mut pieces = Vec::new();
        for _ in 0..3 {
            let n = AsyncReadExt::read(&mut file, &mut five).await?;
            pieces.push(String::from_utf8_lossy(&five[..n]).into_owned());
        }
        Ok::<_, std::io::Error>(pieces)
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(got, ["hello", " worl", "d"]);
}

#[test]
fn a_dropped_read_loses_nothing_either() {
    let path = fifo("dropped-read");
    let got = trellis::run(async {
        let mut file = read_write().open(&path).await?;
        let mut big = [0u8; 100];
        // Drop-style: the read future is dropped at 50 ms, its thread still reads.
        let timed_out = timeout(ms(50), AsyncReadExt::read(&mut file, &mut big)).await;
        assert!(timed_out.is_err());
        feed(&path, b"0123456789")?;
        let mut all = [0u8; 10];
        file.read_exact(&mut all).await?;
        Ok::<_, std::io::Error>(all)
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&got, b"0123456789");
}

#[test]
fn a_failed_accepted_write_is_reported_by_the_next_operation_and_by_flush() {
    let path = scratch("failed-write");
    let got = trellis::run(async {
        fs::write(&path, "read only").await?;
        let mut file = File::open(&path).await?; // not opened for writing
        let accepted = AsyncWriteExt::write(&mut file, b"x").await?;
        let flushed = file.flush().await.map_err(|e| e.to_string());
        let again = file.flush().await.map_err(|e| e.to_string()); // reported once
        let _ = AsyncWriteExt::write(&mut file, b"y").await?;
        let mut buf = [0u8; 4];
        let next_read = AsyncReadExt::read(&mut file, &mut buf)
            .await
            .map_err(|e| e.to_string());
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>((accepted, flushed, again, next_read))
    })
    .unwrap();
    let message = format!(
        "could not write {}: Bad file descriptor (os error 9)",
        path.display()
    );
    assert_eq!(got, (1, Err(message.clone()), Ok(()), Err(message)));
}

#[test]
fn a_write_in_a_cancelled_scope_accepts_nothing() {
    let path = scratch("cancelled-write");
    let got = trellis::run(async {
        let mut file = File::create(&path).await?;
        let scope = CancelScope::new();
        scope.cancel();
        let refused = scope
            .run(async { AsyncWriteExt::write(&mut file, b"lost?").await })
            .await;
        file.flush().await?;
        let on_disk = fs::read(&path).await?;
        fs::remove_file(&path).await?;
        Ok::<_, std::io::Error>((refused, on_disk))
    })
    .unwrap();
    // The write returned the cancellation, which its scope absorbed, and accepted nothing.
    assert!(got.0.is_none(), "got {:?}", got.0);
    assert_eq!(got.1, b"");
}

#[test]
fn bytes_kept_from_an_abandoned_read_stay_ahead_of_the_position_seen() {
    let path = scratch("read-ahead");
    // Every ready operation yields (trio's rule): the thread-slot wait below is a schedule point.
    let rt = trellis::Runtime::builder().yield_budget(0).build().unwrap();
    let got = rt
        .block_on(async {
            fs::write(&path, "0123456789").await?;
            let mut file = read_write().open(&path).await?;
            {
                let mut big = [0u8; 100];
                let mut read = std::pin::pin!(AsyncReadExt::read(&mut file, &mut big));
                // The first poll waits for a thread slot (a checkpoint); the second starts the
                // read on its thread, which cannot have finished a few instructions later.
                assert!(futures_lite::future::poll_once(read.as_mut())
                    .await
                    .is_none());
                assert!(futures_lite::future::poll_once(read.as_mut())
                    .await
                    .is_none());
            } // abandoned: the thread reads all ten bytes into the file's keeping
            trellis::sleep(ms(50)).await?;
            // Changed on disk after that read: the next read proves it was kept, not made again.
            std::fs::write(&path, "abcdefghij")?;
            let mut three = [0u8; 3];
            file.read_exact(&mut three).await?;
            let position = AsyncSeekExt::seek(&mut file, SeekFrom::Current(0)).await?;
            AsyncWriteExt::write_all(&mut file, b"XY").await?; // at the position seen, 3
            file.flush().await?;
            let on_disk = fs::read_to_string(&path).await?;
            fs::remove_file(&path).await?;
            Ok::<_, std::io::Error>((three, position, on_disk))
        })
        .unwrap();
    assert_eq!(got, (*b"012", 3, "abcXYfghij".to_string()));
}
