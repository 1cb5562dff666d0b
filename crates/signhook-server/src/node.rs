//! This node's identity. Its node id names it in the leases it takes and the
//! attempts it makes; it is kept in the data directory (`node-id`), so that
//! the process started again after a crash is the same node and can give
//! back at once what its previous run held (see
//! [`signhook_store::Store::release_leases_of_previous_run`]). `--node-id`
//! overrides the file.
//!
//! Two live processes must never share an id: at start a node releases
//! every lease held under its id, including those of a live twin. On
//! PostgreSQL each node has a data directory (hence an id) of its own, or an
//! explicit `--node-id`.

use crate::ServerError;
use signhook_core::ids::NodeId;
use std::io::Write;
use std::path::Path;

/// The file in the data directory that keeps the node id.
pub const NODE_ID_FILE: &str = "node-id";

/// This node's id: `given` (`--node-id`) when there is one, else the one
/// kept in `data_dir`, made and kept there (mode 0600) the first time.
/// A file that does not hold a valid id is an error naming it: a node that
/// silently took a new id would leave its previous run's claims to wait out
/// their leases.
pub fn resolve(given: Option<NodeId>, data_dir: &Path) -> Result<NodeId, ServerError> {
    match given {
        Some(id) => Ok(id),
        None => load_or_create(&data_dir.join(NODE_ID_FILE)),
    }
}

fn load_or_create(path: &Path) -> Result<NodeId, ServerError> {
    let io_error = |source| ServerError::NodeIdFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => NodeId::parse(text.trim()).map_err(|source| ServerError::MalformedNodeId {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeId::generate();
            match place(path, format!("{id}\n").as_bytes(), id.as_str()) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), node_id = %id, "made a node id for this data directory");
                    Ok(id)
                }
                // Another process made it first: its id is the one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(source) => Err(io_error(source)),
            }
        }
        Err(source) => Err(io_error(source)),
    }
}

/// Writes `contents` to `path` whole or not at all, and never over an
/// existing file: written in full to a private file of its own name first
/// (`unique` in its name, so that no two processes share a draft), then
/// linked into place (which fails with `AlreadyExists` if `path` exists).
/// Also used for the self-signed seal ([`crate::seal_cert`]).
pub(crate) fn place(path: &Path, contents: &[u8], unique: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|dir| !dir.exists()) {
        signhook_store::private_dir(dir)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy());
    let draft = path.with_file_name(format!(".{name}.{unique}"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&draft)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::hard_link(&draft, path)?;
        // The link itself survives a power cut too.
        if let Some(dir) = dir {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    let placed = write();
    let _ = std::fs::remove_file(&draft);
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_first_start_makes_a_private_id_that_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve(None, &data).unwrap();
        let file = data.join(NODE_ID_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{first}\n"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(resolve(None, &data).unwrap(), first);
        let entries = std::fs::read_dir(&data).unwrap().count();
        assert_eq!(entries, 1, "no draft is left behind");
    }

    #[test]
    fn a_given_id_wins_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let kept = resolve(None, dir.path()).unwrap();
        let given = NodeId::parse("node-b").unwrap();
        assert_eq!(resolve(Some(given.clone()), dir.path()).unwrap(), given);
        assert_eq!(resolve(None, dir.path()).unwrap(), kept);
    }

    #[test]
    fn an_id_written_by_hand_is_read_and_a_malformed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(NODE_ID_FILE);
        std::fs::write(&file, "web-1.eu\n").unwrap();
        assert_eq!(resolve(None, dir.path()).unwrap().as_str(), "web-1.eu");
        std::fs::write(&file, "not a node id\n").unwrap();
        let refused = resolve(None, dir.path()).unwrap_err();
        assert!(matches!(refused, ServerError::MalformedNodeId { .. }), "{refused:?}");
        assert!(refused.to_string().contains(&file.display().to_string()), "{refused}");
        std::fs::write(&file, "").unwrap();
        assert!(resolve(None, dir.path()).is_err(), "an empty file is no id either");
    }

    #[test]
    fn processes_starting_together_agree_on_one_id() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<NodeId> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| resolve(None, dir.path()).unwrap()))
                .collect();
            starts.into_iter().map(|start| start.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }
}
