//! File operations on the thread pool: contents, directories, options, and errors that name
//! the path.

use std::io::{self, SeekFrom};
use std::path::PathBuf;

use trellis::fs::{self, File, OpenOptions};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trellis-fs-{name}-{}", std::process::id()))
}

#[test]
fn write_read_rename_list_and_remove() {
    let dir = scratch("basics");
    trellis::run(async {
        fs::create_dir_all(dir.join("sub/deeper")).await?;
        fs::write(dir.join("a.txt"), b"alpha").await?;
        fs::write(dir.join("b.txt"), "beta").await?;
        assert_eq!(fs::read(dir.join("a.txt")).await?, b"alpha");
        assert_eq!(fs::read_to_string(dir.join("b.txt")).await?, "beta");
        assert_eq!(fs::metadata(dir.join("a.txt")).await?.len(), 5);
        assert!(fs::metadata(dir.join("sub")).await?.is_dir());
        fs::rename(dir.join("b.txt"), dir.join("c.txt")).await?;
        assert!(!fs::exists(dir.join("b.txt")).await?);
        assert_eq!(fs::copy(dir.join("c.txt"), dir.join("d.txt")).await?, 4);
        let mut names: Vec<(String, bool)> = fs::read_dir(&dir)
            .await?
            .into_iter()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.file_type().is_dir(),
                )
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("a.txt".to_owned(), false),
                ("c.txt".to_owned(), false),
                ("d.txt".to_owned(), false),
                ("sub".to_owned(), true),
            ]
        );
        fs::remove_file(dir.join("a.txt")).await?;
        fs::remove_dir(dir.join("sub/deeper")).await?;
        fs::remove_dir_all(&dir).await?;
        assert!(!fs::exists(&dir).await?);
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn files_open_with_options_and_seek() {
    let dir = scratch("files");
    trellis::run(async {
        fs::create_dir_all(&dir).await?;
        let path = dir.join("log.txt");
        let mut f = File::create(&path).await?;
        f.write_all(b"0123456789").await?;
        f.sync_all().await?;
        drop(f);
        let mut f = OpenOptions::new().append(true).open(&path).await?;
        f.write_all(b"abc").await?;
        drop(f);
        let mut f = File::open(&path).await?;
        assert_eq!(f.seek(SeekFrom::Start(8)).await?, 8);
        let mut buf = [0u8; 3];
        assert_eq!(f.read(&mut buf).await?, 3);
        assert_eq!(&buf, b"89a");
        assert_eq!(f.read_to_end().await?, b"bc");
        assert_eq!(f.metadata().await?.len(), 13);
        let err = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        fs::remove_dir_all(&dir).await?;
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn errors_name_the_path() {
    let missing = scratch("missing").join("nothing.txt");
    trellis::run(async {
        let err = fs::read(&missing).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "could not read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let err = File::open(&missing).await.unwrap_err();
        assert!(err.to_string().starts_with("could not open "), "{err}");
        let err = fs::rename(&missing, "/tmp/elsewhere").await.unwrap_err();
        assert!(
            err.to_string().contains("nothing.txt to /tmp/elsewhere"),
            "{err}"
        );
    });
}
