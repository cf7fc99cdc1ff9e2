//! Owner-only files and directories. A stack's directory holds the CA and TLS keys, the
//! gateway's shared `X-User` secret, the LDAP and IdP passwords; the env file holds the demo
//! password and a token. Another local account must read none of them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

/// Makes every file and directory this process (and the children it starts, which inherit it)
/// creates from now on owner-only (umask 077). Idempotent.
pub fn restrict_umask() {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

fn own_uid() -> u32 {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() }
}

/// `path` as a directory only this user may use: created 0700 (with its missing parents), or,
/// if it exists, refused unless it is a real directory owned by this user and closed to
/// everyone else (a planted directory could feed us another stack's endpoints).
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_private_dir(path, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
}

/// Like [`private_dir`] for a directory that must already exist.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("inspecting {}", path.display()))?;
    check_private_dir(path, &meta)
}

fn check_private_dir(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    if !meta.file_type().is_dir() {
        bail!(
            "{} is not a directory (a link or a file): refused",
            path.display()
        );
    }
    if meta.uid() != own_uid() {
        bail!(
            "{} belongs to uid {}, not to this user: refused",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is open to other users (mode {mode:o}); make it 0700",
            path.display()
        );
    }
    Ok(())
}

/// Writes `contents` to a temp file (mode 0600) beside `path`, then renames it over `path`:
/// readers see the old file or the whole new one, and never a moment of wider permissions.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_0700_and_a_file_0600() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("a/b");
        private_dir(&dir).expect("created");
        assert_eq!(mode(&dir), 0o700);
        private_dir(&dir).expect("an existing private directory is fine");
        let file = dir.join("up.env");
        write_atomically(&file, b"K=V\n").expect("written");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "K=V\n");
        write_atomically(&file, b"K=W\n").expect("replaced");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn open_directories_links_and_files_are_refused() {
        let top = tempfile::tempdir().expect("tempdir");
        let open = top.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = private_dir(&open).expect_err("0755 refused");
        assert!(e.to_string().contains("open to other users"), "{e}");
        let link = top.path().join("link");
        std::os::unix::fs::symlink(top.path(), &link).expect("symlink");
        let e = check_private(&link).expect_err("a link refused");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let file = top.path().join("file");
        std::fs::write(&file, "").expect("file");
        assert!(private_dir(&file).is_err());
    }
}
