//! `get --extract`: unpacking a bundle (tar) that came from the server,
//! treating every byte of it as untrusted.
//!
//! The stream is unpacked into a fresh staging directory inside the target
//! ([`Staging`]), and only after the whole content's BLAKE3 matched is the
//! staged tree moved into place ([`install`]); a tampered or cut download
//! leaves the target exactly as it was.
//!
//! Unpacking ([`extract`]) refuses absolute paths, `..` components,
//! repeated paths, entry types other than file, directory and symlink
//! (hard links, devices, FIFOs…), symlinks whose target is absolute or
//! leads outside the tree (following the tree's own symlinks), and never
//! writes through a symlink (tar's `unpack_in` checks every parent). Modes
//! are normalised as bundles record them: 0755 for directories and for
//! files with any executable bit, 0644 for other files — never setuid,
//! setgid, sticky or group/world-writable.
//!
//! Installing merges the staged tree into the target: a missing path is
//! moved in; an existing directory is merged into; anything else existing
//! is a conflict, reported (all conflicts, before anything moves) with exit
//! code 5, unless `--force`, which replaces files and symlinks but never a
//! directory, and never merges into a symlink.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::local::occupied;
use super::{ClientError, Result};

/// What [`extract`] restored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
}

/// A staging directory inside the target, removed (with whatever it still
/// holds) when dropped.
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    /// Creates `dest` if needed, then a new staging directory inside it.
    pub fn new(dest: &Path) -> Result<Staging> {
        fs::create_dir_all(dest)
            .map_err(|e| ClientError::io(format!("cannot create {}", dest.display()), e))?;
        let mut r = [0u8; 8];
        crate::auth::fill_random(&mut r);
        let suffix: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let path = dest.join(format!(".eden-cas-extract-{suffix}"));
        fs::create_dir(&path)
            .map_err(|e| ClientError::io(format!("cannot create {}", path.display()), e))?;
        Ok(Staging { path })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn refuse(path: &Path, why: &str) -> ClientError {
    ClientError::Local(format!(
        "refusing to extract {}: {why}",
        super::local::display_safe(&path.display().to_string())
    ))
}

/// Unpacks a tar stream into `dest` (an empty staging directory), refusing
/// anything unsafe.
pub fn extract(reader: impl Read, dest: &Path) -> Result<Extracted> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_mtime(false);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let bad = |e: io::Error| ClientError::Local(format!("cannot extract the bundle: {e}"));
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut links: Vec<PathBuf> = Vec::new();
    let mut out = Extracted::default();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let clean = safe_relative(&path)?;
        if !seen.insert(clean.clone()) {
            return Err(refuse(&path, "it appears twice in the bundle"));
        }
        let ty = entry.header().entry_type();
        let mode = entry.header().mode().map_err(bad)?;
        match ty {
            EntryType::Regular | EntryType::Continuous => out.files += 1,
            EntryType::Directory => out.dirs += 1,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .ok_or_else(|| refuse(&path, "a symlink without a target"))?;
                if target.is_absolute() || target.as_os_str().is_empty() {
                    return Err(refuse(
                        &path,
                        "its symlink target is absolute; only links within the bundle are restored",
                    ));
                }
                out.symlinks += 1;
                links.push(clean.clone());
            }
            other => {
                return Err(refuse(
                    &path,
                    &format!("entry type {other:?} is not a file, directory or symlink"),
                ));
            }
        }
        let unpacked = entry
            .unpack_in(dest)
            .map_err(|e| ClientError::Local(format!("cannot extract {}: {e}", path.display())))?;
        if !unpacked {
            return Err(refuse(&path, "it would land outside the target directory"));
        }
        if ty != EntryType::Symlink {
            normalise_mode(&dest.join(&clean), ty == EntryType::Directory, mode)?;
        }
    }
    // Checked once the whole tree is there: a link may go through others.
    for link in &links {
        let target = fs::read_link(dest.join(link))
            .map_err(|e| ClientError::io(format!("cannot read link {}", link.display()), e))?;
        let mut pos: Vec<OsString> = link
            .parent()
            .map(|p| p.iter().map(|c| c.to_os_string()).collect())
            .unwrap_or_default();
        let mut budget = 40;
        if !stays_inside(dest, &mut pos, &target, &mut budget) {
            return Err(refuse(
                link,
                &format!(
                    "its symlink target {} leads outside the target directory",
                    target.display()
                ),
            ));
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn normalise_mode(p: &Path, dir: bool, recorded: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir || recorded & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| ClientError::io(format!("cannot set the mode of {}", p.display()), e))
}

#[cfg(not(unix))]
fn normalise_mode(_p: &Path, _dir: bool, _recorded: u32) -> Result<()> {
    Ok(())
}

/// Whether following `target` from `pos` (a directory inside `root`, as
/// components) stays inside `root`, resolving symlinks met inside `root`
/// (at most `budget` of them: a loop counts as escaping).
fn stays_inside(root: &Path, pos: &mut Vec<OsString>, target: &Path, budget: &mut u32) -> bool {
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if pos.pop().is_none() {
                    return false;
                }
            }
            Component::Normal(n) => {
                pos.push(n.to_os_string());
                let here: PathBuf = root.join(pos.iter().collect::<PathBuf>());
                if fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    let Ok(next) = fs::read_link(&here) else {
                        return false;
                    };
                    pos.pop();
                    if next.is_absolute() || !stays_inside(root, pos, &next, budget) {
                        return false;
                    }
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The entry path with `.` components removed; absolute paths and `..` are errors.
pub(crate) fn safe_relative(path: &Path) -> Result<PathBuf> {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(refuse(path, "unsafe path"));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(ClientError::Local(
            "refusing to extract an empty path".into(),
        ));
    }
    Ok(clean)
}

/// Moves the staged tree into `dest`. Every conflict is found before
/// anything moves; without `force` an existing file or symlink is one.
pub fn install(staging: &Staging, dest: &Path, force: bool) -> Result<()> {
    let mut conflicts = Vec::new();
    plan(staging.path(), dest, force, &mut conflicts)?;
    if !conflicts.is_empty() {
        let n = conflicts.len();
        let shown: Vec<String> = conflicts
            .iter()
            .take(5)
            .map(|p| super::local::display_safe(&p.display().to_string()).into_owned())
            .collect();
        return Err(ClientError::Exists(format!(
            "{n} path(s) of the bundle already exist in {}: {}{}; nothing was extracted \
             (--force replaces files and symlinks, never directories)",
            dest.display(),
            shown.join(", "),
            if n > 5 { ", …" } else { "" }
        )));
    }
    apply(staging.path(), dest, force)
}

fn entries(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir)
        .map_err(|e| ClientError::io(format!("cannot list {}", dir.display()), e))?
    {
        names.push(
            e.map_err(|e| ClientError::io(format!("cannot list {}", dir.display()), e))?
                .file_name(),
        );
    }
    Ok(names)
}

fn plan(src: &Path, dst: &Path, force: bool, conflicts: &mut Vec<PathBuf>) -> Result<()> {
    for name in entries(src)? {
        let (s, d) = (src.join(&name), dst.join(&name));
        let Ok(dm) = fs::symlink_metadata(&d) else {
            continue;
        };
        let s_dir = fs::symlink_metadata(&s).is_ok_and(|m| m.is_dir());
        if s_dir && dm.is_dir() {
            plan(&s, &d, force, conflicts)?;
        } else if s_dir || dm.is_dir() || !force {
            conflicts.push(d);
        }
    }
    Ok(())
}

fn apply(src: &Path, dst: &Path, force: bool) -> Result<()> {
    for name in entries(src)? {
        let (s, d) = (src.join(&name), dst.join(&name));
        let moved = |e| ClientError::io(format!("cannot move into place {}", d.display()), e);
        let s_dir = fs::symlink_metadata(&s).is_ok_and(|m| m.is_dir());
        if s_dir && fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            apply(&s, &d, force)?;
        } else if s_dir {
            if occupied(&d) {
                return Err(super::local::exists_error(&d, "get --extract"));
            }
            fs::rename(&s, &d).map_err(moved)?;
        } else if force {
            fs::rename(&s, &d).map_err(moved)?;
        } else {
            match fs::hard_link(&s, &d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(super::local::exists_error(&d, "get --extract"));
                }
                Err(_) if occupied(&d) => {
                    return Err(super::local::exists_error(&d, "get --extract"));
                }
                Err(_) => fs::rename(&s, &d).map_err(moved)?,
            }
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tar::Header;

    fn header(path: &[u8], ty: EntryType, mode: u32, link: Option<&str>, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(mode);
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        h
    }

    /// One entry (a regular file holds one byte `x`), no end marker.
    fn entry(path: &[u8], ty: EntryType, link: Option<&str>) -> Vec<u8> {
        let size = if ty == EntryType::Regular { 1 } else { 0 };
        let mut v = header(path, ty, 0o644, link, size).as_bytes().to_vec();
        if ty == EntryType::Regular {
            v.push(b'x');
            v.resize(1024, 0);
        }
        v
    }

    fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut v: Vec<u8> = entries.concat();
        v.resize(v.len() + 1024, 0);
        v
    }

    fn staged(t: &[u8]) -> (tempfile::TempDir, Result<Extracted>) {
        let d = tempfile::tempdir().unwrap();
        let r = extract(t, d.path());
        (d, r)
    }

    #[test]
    fn refuses_unsafe_entries() {
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().to_str().unwrap().to_string();
        let cases: Vec<Vec<u8>> = vec![
            archive(&[entry(b"/etc/evil", EntryType::Regular, None)]),
            archive(&[entry(b"../evil", EntryType::Regular, None)]),
            archive(&[entry(b"a/../../evil", EntryType::Regular, None)]),
            archive(&[entry(b"dev", EntryType::Char, None)]),
            archive(&[entry(b"blk", EntryType::Block, None)]),
            archive(&[entry(b"fifo", EntryType::Fifo, None)]),
            archive(&[entry(b"hard", EntryType::Link, Some("/etc/passwd"))]),
            archive(&[entry(b"abs", EntryType::Symlink, Some(&out))]),
            archive(&[entry(b"up", EntryType::Symlink, Some("../x"))]),
            archive(&[entry(b"d/up", EntryType::Symlink, Some("../../x"))]),
            // Each link alone stays inside; together `b/..` leaves the tree.
            archive(&[
                entry(b"b", EntryType::Symlink, Some(".")),
                entry(b"a", EntryType::Symlink, Some("b/..")),
            ]),
            archive(&[
                entry(b"loop1", EntryType::Symlink, Some("loop2")),
                entry(b"loop2", EntryType::Symlink, Some("loop1/x")),
            ]),
            // Writing through a symlink is refused even to a target inside.
            archive(&[
                entry(b"esc", EntryType::Symlink, Some(&out)),
                entry(b"esc/file", EntryType::Regular, None),
            ]),
            archive(&[
                entry(b"same", EntryType::Regular, None),
                entry(b"same", EntryType::Regular, None),
            ]),
        ];
        for t in cases {
            let (_d, r) = staged(&t);
            let err = r.unwrap_err();
            assert!(err.to_string().contains("refusing"), "{err}");
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn links_inside_the_tree_are_kept() {
        let t = archive(&[
            entry(b"lib/", EntryType::Directory, None),
            entry(b"lib/real.so", EntryType::Regular, None),
            entry(b"bin/", EntryType::Directory, None),
            entry(b"bin/tool", EntryType::Symlink, Some("../lib/real.so")),
            entry(b"cur", EntryType::Symlink, Some("./lib")),
        ]);
        let (d, r) = staged(&t);
        assert_eq!(r.unwrap().symlinks, 2);
        assert_eq!(fs::read(d.path().join("bin/tool")).unwrap(), b"x");
    }

    #[test]
    fn modes_are_normalised() {
        let mut v = header(b"suid", EntryType::Regular, 0o6777, None, 1)
            .as_bytes()
            .to_vec();
        v.push(b'x');
        v.resize(1024, 0);
        let mut w = header(b"ww", EntryType::Regular, 0o666, None, 1)
            .as_bytes()
            .to_vec();
        w.push(b'x');
        w.resize(1024, 0);
        let dir = header(b"d/", EntryType::Directory, 0o777, None, 0)
            .as_bytes()
            .to_vec();
        let (d, r) = staged(&archive(&[v, w, dir]));
        r.unwrap();
        let mode = |p: &str| fs::metadata(d.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("suid"), 0o755);
        assert_eq!(mode("ww"), 0o644);
        assert_eq!(mode("d"), 0o755);
    }

    #[test]
    fn install_merges_and_never_replaces_without_force() {
        let dest = tempfile::tempdir().unwrap();
        fs::create_dir(dest.path().join("keep")).unwrap();
        fs::write(dest.path().join("keep/mine"), b"mine").unwrap();
        fs::write(dest.path().join("clash"), b"mine").unwrap();
        let make = || {
            let s = Staging::new(dest.path()).unwrap();
            fs::create_dir(s.path().join("keep")).unwrap();
            fs::write(s.path().join("keep/new"), b"new").unwrap();
            fs::write(s.path().join("clash"), b"theirs").unwrap();
            s
        };
        let s = make();
        let err = install(&s, dest.path(), false).unwrap_err();
        assert!(matches!(err, ClientError::Exists(_)), "{err}");
        assert!(!dest.path().join("keep/new").exists(), "nothing moved");
        drop(s);
        let s = make();
        install(&s, dest.path(), true).unwrap();
        drop(s);
        assert_eq!(fs::read(dest.path().join("clash")).unwrap(), b"theirs");
        assert_eq!(fs::read(dest.path().join("keep/mine")).unwrap(), b"mine");
        assert_eq!(fs::read(dest.path().join("keep/new")).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(dest.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "the staging directory is gone");
    }

    #[test]
    fn install_never_merges_into_a_symlink() {
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("d")).unwrap();
        let s = Staging::new(dest.path()).unwrap();
        fs::create_dir(s.path().join("d")).unwrap();
        fs::write(s.path().join("d/f"), b"x").unwrap();
        for force in [false, true] {
            assert!(install(&s, dest.path(), force).is_err());
        }
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn safe_relative_paths() {
        assert_eq!(
            safe_relative(Path::new("./a/./b")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(safe_relative(Path::new("/a")).is_err());
        assert!(safe_relative(Path::new("a/..")).is_err());
        assert!(safe_relative(Path::new(".")).is_err());
    }
}
