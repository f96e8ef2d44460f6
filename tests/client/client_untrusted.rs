//! The client treats server data as untrusted (issue 9 §4), end to end with
//! the real binary against a real server: a name recorded by another
//! principal never replaces a local file (exit code 5 unless `--force`) and
//! never leaves the target directory; `get --extract` refuses hostile tar
//! entries, normalises modes, writes nothing before the whole content's
//! digest matched and never replaces existing files without `--force`.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::support::client::*;
use crate::support::packs::pack_files;
use crate::support::server::*;

/// `get` run from `cwd`.
fn get_in(client: &Client, server: &Server, cwd: &Path, args: &[&str]) -> Output {
    client
        .cmd(server, args)
        .current_dir(cwd)
        .output()
        .expect("run eden-cas")
}

/// Everything under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Depositor w1 stores `bytes` under the recorded `filename` and grants it
/// to reader w2; returns (server, depositor, reader, id).
fn granted(bytes: &[u8], filename: &str) -> (Server, Client, Client, String) {
    let server = Server::start_with(SERVE_ARGS);
    let exp = exp_id();
    let (_, b1) = register_worker(&server, &exp);
    let (w2, b2) = register_worker(&server, &exp);
    let depositor = Client::with(exp.clone(), b1);
    let reader = Client::with(exp, b2);
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("payload");
    fs::write(&path, bytes).unwrap();
    let v = depositor.json(&server, &["put", path_str(&path), "--filename", filename]);
    let id = v["id"].as_str().unwrap().to_string();
    depositor.json(&server, &["grant", &id, &w2]);
    (server, depositor, reader, id)
}

#[test]
fn a_granted_dotfile_never_replaces_the_readers_file() {
    let (server, _, reader, id) = granted(b"alias ls='rm -rf ~'\n", ".bashrc");
    let home = tempfile::tempdir().unwrap();
    fs::write(home.path().join(".bashrc"), b"mine").unwrap();

    // The leading dot is dropped: no hidden file appears, .bashrc is intact.
    let out = get_in(&reader, &server, home.path(), &["get", &id]);
    assert_ok(&out, &["get", &id]);
    assert_eq!(fs::read(home.path().join(".bashrc")).unwrap(), b"mine");
    assert_eq!(
        fs::read(home.path().join("bashrc")).unwrap(),
        b"alias ls='rm -rf ~'\n"
    );

    // Again: the server's name now exists locally; exit 5, nothing replaced.
    fs::write(home.path().join("bashrc"), b"mine too").unwrap();
    let msg = assert_exit(&get_in(&reader, &server, home.path(), &["get", &id]), 5);
    assert!(
        msg.contains("already exists") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(fs::read(home.path().join("bashrc")).unwrap(), b"mine too");
    // `-o DIR` follows the same rule.
    let o = get_in(&reader, &server, home.path(), &["get", &id, "-o", "."]);
    assert_exit(&o, 5);
    assert_eq!(
        listing(home.path()),
        vec![".bashrc".to_string(), "bashrc".to_string()],
        "no partial file left behind"
    );
    // A dangling symlink counts as existing (it is never written through).
    fs::remove_file(home.path().join("bashrc")).unwrap();
    let target = home.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, home.path().join("bashrc")).unwrap();
    assert_exit(&get_in(&reader, &server, home.path(), &["get", &id]), 5);
    assert!(!target.exists());

    // --force replaces (the symlink itself, not its target).
    let o = get_in(&reader, &server, home.path(), &["get", &id, "--force"]);
    assert_ok(&o, &["get", "--force"]);
    assert!(!target.exists());
    assert!(
        !fs::symlink_metadata(home.path().join("bashrc"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(home.path().join("bashrc")).unwrap(),
        b"alias ls='rm -rf ~'\n"
    );
    // -o FILE is the reader's own choice: it replaces as asked.
    let o = get_in(
        &reader,
        &server,
        home.path(),
        &["get", &id, "-o", ".bashrc"],
    );
    assert_ok(&o, &["get", "-o", ".bashrc"]);
    assert_eq!(
        fs::read(home.path().join(".bashrc")).unwrap(),
        b"alias ls='rm -rf ~'\n"
    );
}

#[test]
fn unsafe_recorded_names_fall_back_to_the_id() {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let src = tempfile::tempdir().unwrap();
    let (path, bytes) = random_file(src.path(), "f", 1000);
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("a/b");
    fs::create_dir_all(&cwd).unwrap();
    for name in [
        "../escape",
        "../../escape",
        "..",
        "sub/dir",
        "/tmp/abs",
        "...",
    ] {
        let v = client.json(&server, &["put", path_str(&path), "--filename", name]);
        let id = v["id"].as_str().unwrap().to_string();
        let out = get_in(&client, &server, &cwd, &["get", &id]);
        assert_ok(&out, &["get", name]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a safe local name"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read(cwd.join(&id)).unwrap(), bytes, "{name}");
    }
    assert!(!root.path().join("escape").exists());
    assert!(!root.path().join("a/escape").exists());
    assert!(!Path::new("/tmp/abs").exists() || fs::read("/tmp/abs").unwrap() != bytes);
}

/// One tar entry; a regular file carries `data`.
fn tar_entry(
    path: &str,
    ty: tar::EntryType,
    mode: u32,
    link: Option<&str>,
    data: &[u8],
) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(l) = link {
        h.set_link_name(l).unwrap();
    }
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = entries.concat();
    v.resize(v.len() + 1024, 0);
    v
}

/// Deposits `bytes` and returns the id.
fn deposit_file(client: &Client, server: &Server, bytes: &[u8]) -> String {
    let src = tempfile::tempdir().unwrap();
    let p = src.path().join("bundle.tar");
    fs::write(&p, bytes).unwrap();
    client.put(server, &p)["id"].as_str().unwrap().to_string()
}

#[test]
fn extract_refuses_hostile_bundles_and_writes_nothing() {
    use tar::EntryType as T;
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let out_str = path_str(&outside).to_string();
    let ok_file = tar_entry("fine.txt", T::Regular, 0o644, None, b"fine");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            tar_of(&[
                ok_file.clone(),
                tar_entry("../outside/evil", T::Regular, 0o644, None, b"x"),
            ]),
        ),
        (
            "absolute",
            tar_of(&[
                ok_file.clone(),
                tar_entry(&format!("{out_str}/evil"), T::Regular, 0o644, None, b"x"),
            ]),
        ),
        (
            "abs-link",
            tar_of(&[
                ok_file.clone(),
                tar_entry("l", T::Symlink, 0o777, Some(&out_str), b""),
            ]),
        ),
        (
            "up-link",
            tar_of(&[
                ok_file.clone(),
                tar_entry("l", T::Symlink, 0o777, Some("../outside"), b""),
            ]),
        ),
        (
            "through-link",
            tar_of(&[
                tar_entry("l", T::Symlink, 0o777, Some("."), b""),
                tar_entry("m", T::Symlink, 0o777, Some("l/../outside"), b""),
            ]),
        ),
        (
            "hardlink",
            tar_of(&[
                ok_file.clone(),
                tar_entry("h", T::Link, 0o644, Some("/etc/passwd"), b""),
            ]),
        ),
        (
            "device",
            tar_of(&[ok_file.clone(), tar_entry("d", T::Char, 0o666, None, b"")]),
        ),
        (
            "fifo",
            tar_of(&[ok_file.clone(), tar_entry("f", T::Fifo, 0o666, None, b"")]),
        ),
    ];
    for (what, bytes) in hostile {
        let id = deposit_file(&client, &server, &bytes);
        let dest = work.path().join(format!("dest-{what}"));
        let o = client.run(&server, &["get", &id, "--extract", path_str(&dest)]);
        let msg = assert_exit(&o, 1);
        assert!(msg.contains("refusing"), "{what}: {msg}");
        assert!(
            !dest.exists(),
            "{what}: the target was created: {:?}",
            listing(&dest)
        );
        assert!(listing(&outside).is_empty(), "{what}: wrote outside");
    }

    // Modes are normalised: no setuid, no world-writable file or directory.
    let bytes = tar_of(&[
        tar_entry("d/", T::Directory, 0o777, None, b""),
        tar_entry("d/suid", T::Regular, 0o6777, None, b"#!/bin/sh\n"),
        tar_entry("d/ww", T::Regular, 0o666, None, b"data"),
    ]);
    let id = deposit_file(&client, &server, &bytes);
    let dest = work.path().join("modes");
    assert_ok(
        &client.run(&server, &["get", &id, "--extract", path_str(&dest)]),
        &["get", "--extract"],
    );
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("d"), 0o755);
    assert_eq!(mode("d/suid"), 0o755);
    assert_eq!(mode("d/ww"), 0o644);
}

#[test]
fn extract_never_replaces_without_force() {
    use tar::EntryType as T;
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let bytes = tar_of(&[
        tar_entry("keep/", T::Directory, 0o755, None, b""),
        tar_entry("keep/new", T::Regular, 0o644, None, b"new"),
        tar_entry("clash", T::Regular, 0o644, None, b"theirs"),
    ]);
    let id = deposit_file(&client, &server, &bytes);
    let dest = work.path().join("dest");
    fs::create_dir_all(dest.join("keep")).unwrap();
    fs::write(dest.join("keep/mine"), b"mine").unwrap();
    fs::write(dest.join("clash"), b"mine").unwrap();
    let before = listing(&dest);
    let msg = assert_exit(
        &client.run(&server, &["get", &id, "--extract", path_str(&dest)]),
        5,
    );
    assert!(
        msg.contains("clash") && msg.contains("nothing was extracted"),
        "{msg}"
    );
    assert_eq!(listing(&dest), before, "nothing moved, no staging left");
    assert_eq!(fs::read(dest.join("clash")).unwrap(), b"mine");

    let o = client.run(
        &server,
        &["get", &id, "--extract", path_str(&dest), "--force"],
    );
    assert_ok(&o, &["get", "--extract", "--force"]);
    assert_eq!(fs::read(dest.join("clash")).unwrap(), b"theirs");
    assert_eq!(fs::read(dest.join("keep/mine")).unwrap(), b"mine");
    assert_eq!(fs::read(dest.join("keep/new")).unwrap(), b"new");
    assert_eq!(
        listing(&dest),
        vec!["clash", "keep", "keep/mine", "keep/new"]
    );
}

/// The digest is checked before anything lands in the target: a bundle
/// whose stored bytes are corrupt late in the stream (the server cuts the
/// body short) leaves the target untouched, although its first file had
/// already been unpacked (into staging).
#[test]
fn extract_writes_nothing_before_the_digest_matched() {
    use tar::EntryType as T;
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let big = random_bytes(24 << 20);
    let bytes = tar_of(&[
        tar_entry("a-first.txt", T::Regular, 0o644, None, b"early"),
        tar_entry("z-big.bin", T::Regular, 0o644, None, &big),
    ]);
    // One raw deposit: one pack, chunks in content order.
    let uri = deposit_ok(
        &server,
        &client.exp,
        &client.bearer,
        &bytes,
        "application/x-tar",
    );
    let id = uri.trim_start_matches("eden://artifacts/").to_string();
    let packs = pack_files(&server.data_dir().join("blobs"));
    assert_eq!(packs.len(), 1);
    // Random data is stored raw: tar offsets map to pack offsets + 8.
    let mut pack = fs::read(&packs[0]).unwrap();
    pack[8 + (20 << 20)] ^= 1;
    fs::write(&packs[0], pack).unwrap();

    let dest = work.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let o = client.run(&server, &["get", &id, "--extract", path_str(&dest)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(listing(&dest).is_empty(), "{:?}", listing(&dest));
}
