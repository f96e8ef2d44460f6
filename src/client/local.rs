//! Where server data becomes local paths, names and text: the client treats
//! everything the server sends as untrusted.
//!
//! - **Names.** A filename recorded by a depositor becomes a local name only
//!   through [`safe_file_name`]: one plain path component, no separators, no
//!   `.`/`..`, no control or bidi-override characters, no leading dots (no
//!   hidden files: `.bashrc` becomes `bashrc`), at most 255 bytes. Anything
//!   else falls back to the artifact id.
//! - **No replacing.** A file whose name came from the server is moved into
//!   place with [`place_new`], which never replaces an existing path (a hard
//!   link is atomic no-clobber; where links are not supported, an existence
//!   check right before the rename). `--force` replaces files and symlinks,
//!   never directories.
//! - **Text.** Server strings shown on a terminal (filenames, principals,
//!   problem details) go through [`display_safe`], which escapes control
//!   characters so an answer cannot move the cursor or rewrite the screen.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

use super::{ClientError, Result};

/// Longest name accepted from the server, in bytes (common file systems' limit).
const MAX_NAME_BYTES: usize = 255;

/// Characters that reorder or hide text (bidi controls, zero-width marks).
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The server-recorded `name` as a safe local file name, or `None`.
pub fn safe_file_name(name: &str) -> Option<String> {
    if name.chars().any(|c| c.is_control() || is_deceptive(c)) {
        return None;
    }
    if name.contains(['/', '\\']) || (cfg!(windows) && name.contains(':')) {
        return None;
    }
    let trimmed = name.trim_start_matches('.').trim();
    if trimmed.is_empty() || trimmed.len() > MAX_NAME_BYTES {
        return None;
    }
    Some(trimmed.to_string())
}

/// `s` with control and bidi characters escaped (`\u{1b}`), for terminals.
pub fn display_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || is_deceptive(c)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() || is_deceptive(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Whether anything (a file, a directory, a symlink, even a dangling one) is at `p`.
pub fn occupied(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The error for a server-named path that already exists.
pub fn exists_error(p: &Path, what: &str) -> ClientError {
    ClientError::Exists(format!(
        "{} already exists; {what} never replaces an existing path (pass --force to replace \
         it, or -o to choose another name)",
        p.display()
    ))
}

/// Moves the finished file `tmp` to `dest`, its sibling. Without `force`
/// an existing `dest` is an [`ClientError::Exists`] and nothing changes;
/// with it a file or symlink is replaced, a directory never.
pub fn place_new(tmp: &Path, dest: &Path, force: bool) -> Result<()> {
    let ctx = |e| ClientError::io(format!("cannot move the download to {}", dest.display()), e);
    if force {
        if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            return Err(ClientError::Exists(format!(
                "{} is a directory; it is never replaced",
                dest.display()
            )));
        }
        return std::fs::rename(tmp, dest).map_err(ctx);
    }
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists_error(dest, "get")),
        // No hard links here (some network and FAT file systems): check, then rename.
        Err(_) if occupied(dest) => Err(exists_error(dest, "get")),
        Err(_) => std::fs::rename(tmp, dest).map_err(ctx),
    }
}

/// Creates a new, empty temporary file next to `dest` (never opening an
/// existing path: a leftover or a planted symlink is skipped), mode 0666
/// less the umask like any new file.
pub fn create_partial(dest: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let mut last = None;
    for _ in 0..16 {
        let mut r = [0u8; 4];
        crate::auth::fill_random(&mut r);
        let suffix: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dest.with_file_name(format!(".{name}.{suffix}.eden-cas-partial"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(ClientError::io(
                    format!("cannot write {}", tmp.display()),
                    e,
                ));
            }
        }
    }
    Err(ClientError::io(
        format!("cannot create a temporary file next to {}", dest.display()),
        last.unwrap_or_else(|| io::Error::other("name collisions")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server() {
        assert_eq!(safe_file_name("model.bin").as_deref(), Some("model.bin"));
        assert_eq!(safe_file_name("ckpt 1.tar").as_deref(), Some("ckpt 1.tar"));
        assert_eq!(safe_file_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(safe_file_name("..hidden").as_deref(), Some("hidden"));
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a/b",
            "../x",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
            "\u{1b}[2Jx",
            "x\u{202E}gpj.exe",
            " ",
        ] {
            assert_eq!(safe_file_name(bad), None, "{bad:?}");
        }
        assert_eq!(safe_file_name(&"n".repeat(256)), None);
        assert!(safe_file_name(&"n".repeat(255)).is_some());
    }

    #[test]
    fn display_escapes_controls() {
        assert_eq!(display_safe("plain"), "plain");
        assert_eq!(display_safe("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(display_safe("x\u{202E}y"), "x\\u{202e}y");
    }

    #[test]
    fn placing_never_replaces_without_force() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        std::fs::write(&dest, b"mine").unwrap();
        let (tmp, _) = create_partial(&dest).unwrap();
        std::fs::write(&tmp, b"theirs").unwrap();
        let err = place_new(&tmp, &dest, false).unwrap_err();
        assert!(matches!(err, ClientError::Exists(_)), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"mine");
        place_new(&tmp, &dest, true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"theirs");
        assert!(!tmp.exists());
        std::fs::create_dir(d.path().join("dir")).unwrap();
        let (tmp, _) = create_partial(&d.path().join("dir")).unwrap();
        assert!(place_new(&tmp, &d.path().join("dir"), true).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_symlink_is_occupied() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("l");
        std::os::unix::fs::symlink("/nonexistent/x", &link).unwrap();
        assert!(occupied(&link));
        let (tmp, _) = create_partial(&link).unwrap();
        assert!(place_new(&tmp, &link, false).is_err());
        assert!(!Path::new("/nonexistent/x").exists());
    }
}
