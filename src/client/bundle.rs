//! Bundles: a directory stored as one artifact, an uncompressed tar stream
//! that is a pure function of the tree's names, file contents, symlink
//! targets and executable bits — so re-depositing an unchanged tree yields
//! the same bytes and dedups fully.
//!
//! Normalisation: entries in depth-first order with each directory's names
//! sorted bytewise, the root itself omitted; GNU headers with mtime 0, uid and
//! gid 0, empty user and group names; mode 0755 for directories and for files
//! with any executable bit, 0644 for other files, 0777 for symlinks. Symlinks
//! are stored as symlinks (never followed); any other file type is an error.
//!
//! Extraction ([`extract`]) refuses absolute paths, `..` components, repeated
//! paths and entry types other than file, directory and symlink, and never
//! writes through a symlink (tar's `unpack_in` checks every parent).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use tar::{Builder, EntryType, Header};

use super::{ClientError, Result};

/// `Content-Type` recorded for bundles.
pub const BUNDLE_CONTENT_TYPE: &str = "application/x-tar";

/// Writes the bundle of the directory `root` into `out`.
pub fn write_bundle(root: &Path, out: &mut dyn Write) -> Result<()> {
    let mut builder = Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    walk(&mut builder, root, Path::new(""))?;
    builder
        .finish()
        .map_err(|e| ClientError::io("cannot write the bundle", e))
}

fn walk(builder: &mut Builder<&mut dyn Write>, dir: &Path, rel: &Path) -> Result<()> {
    let read = fs::read_dir(dir)
        .map_err(|e| ClientError::io(format!("cannot list {}", dir.display()), e))?;
    let mut names: Vec<OsString> = Vec::new();
    for entry in read {
        let entry =
            entry.map_err(|e| ClientError::io(format!("cannot list {}", dir.display()), e))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let abs = dir.join(&name);
        let rel = rel.join(&name);
        let meta = fs::symlink_metadata(&abs)
            .map_err(|e| ClientError::io(format!("cannot read {}", abs.display()), e))?;
        let ty = meta.file_type();
        let write_err =
            |e: io::Error| ClientError::io(format!("cannot bundle {}", abs.display()), e);
        if ty.is_symlink() {
            let target = fs::read_link(&abs)
                .map_err(|e| ClientError::io(format!("cannot read link {}", abs.display()), e))?;
            let mut h = header(EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut h, &rel, &target)
                .map_err(write_err)?;
        } else if ty.is_dir() {
            let mut h = header(EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut h, &rel, io::empty())
                .map_err(write_err)?;
            walk(builder, &abs, &rel)?;
        } else if ty.is_file() {
            let len = meta.len();
            let mut h = header(EntryType::Regular, file_mode(&meta), len);
            let file = File::open(&abs)
                .map_err(|e| ClientError::io(format!("cannot open {}", abs.display()), e))?;
            let exact = ExactReader {
                inner: file.take(len),
                left: len,
            };
            builder
                .append_data(&mut h, &rel, exact)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => {
                        ClientError::SourceChanged(abs.display().to_string())
                    }
                    _ => write_err(e),
                })?;
        } else {
            return Err(ClientError::Local(format!(
                "{}: only regular files, directories and symlinks can be bundled",
                abs.display()
            )));
        }
    }
    Ok(())
}

fn header(ty: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

#[cfg(not(unix))]
fn file_mode(_meta: &fs::Metadata) -> u32 {
    0o644
}

/// Reads exactly `left` bytes, failing if the file shrank since its size was taken.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::client::unbundle::extract;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("b/nested/deeper")).unwrap();
        fs::create_dir_all(root.join("a-empty-dir")).unwrap();
        fs::write(root.join("b/nested/file.txt"), b"hello").unwrap();
        fs::write(root.join("b/empty"), b"").unwrap();
        fs::write(root.join("z.bin"), vec![7u8; 100_000]).unwrap();
        fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("b/nested/file.txt", root.join("link")).unwrap();
        symlink("nonexistent/target", root.join("dangling")).unwrap();
        // Names past tar's 100-byte field use GNU long-name entries.
        let long = "n".repeat(120);
        fs::create_dir_all(root.join(&long)).unwrap();
        fs::write(root.join(&long).join("f"), b"long").unwrap();
        symlink(format!("{long}/f"), root.join(format!("{long}-link"))).unwrap();
    }

    fn bundle_bytes(root: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        write_bundle(root, &mut v).unwrap();
        v
    }

    #[test]
    fn deterministic_across_trees_and_mtimes() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        tree(d1.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(d2.path());
        let b1 = bundle_bytes(d1.path());
        assert_eq!(b1, bundle_bytes(d1.path()), "same tree twice");
        assert_eq!(
            b1,
            bundle_bytes(d2.path()),
            "same content, other paths and mtimes"
        );
        assert_eq!(b1.len() % 512, 0);
        fs::write(d2.path().join("b/empty"), b"x").unwrap();
        assert_ne!(b1, bundle_bytes(d2.path()));
    }

    #[test]
    fn round_trip_restores_tree() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let bytes = bundle_bytes(src.path());
        let dst = tempfile::tempdir().unwrap();
        let got = extract(&bytes[..], dst.path()).unwrap();
        assert_eq!(got.symlinks, 3);
        assert_eq!(got.files, 5);
        assert_eq!(got.dirs, 5);
        let d = dst.path();
        assert_eq!(fs::read(d.join("b/nested/file.txt")).unwrap(), b"hello");
        assert_eq!(fs::read(d.join("b/empty")).unwrap(), b"");
        assert!(d.join("a-empty-dir").is_dir());
        assert!(d.join("b/nested/deeper").is_dir());
        assert_eq!(
            fs::read_link(d.join("link")).unwrap(),
            Path::new("b/nested/file.txt")
        );
        assert_eq!(
            fs::read_link(d.join("dangling")).unwrap(),
            Path::new("nonexistent/target")
        );
        let mode = fs::metadata(d.join("run.sh")).unwrap().permissions().mode();
        assert_ne!(mode & 0o100, 0, "executable bit restored");
        assert_eq!(
            bundle_bytes(d),
            bytes,
            "re-bundling the extraction gives the same bytes"
        );
    }

    #[test]
    fn rejects_special_files() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = write_bundle(d.path(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("only regular files"), "{err}");
    }

    #[test]
    fn absolute_links_bundle_but_do_not_extract() {
        let src = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", src.path().join("abs")).unwrap();
        let bytes = bundle_bytes(src.path());
        let dst = tempfile::tempdir().unwrap();
        let err = extract(&bytes[..], dst.path()).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}
