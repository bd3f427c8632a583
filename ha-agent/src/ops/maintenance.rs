//! Maintenance mode survives restarts: a marker file per agent instance.
use std::{
    io,
    path::{Path, PathBuf},
};

const STATE_DIR: &str = "/var/lib/ha-agent";

pub struct MaintenanceFile {
    path: PathBuf,
}

impl MaintenanceFile {
    pub fn new(pin_dir: &Path) -> Self {
        let name = pin_dir.to_string_lossy().trim_matches('/').replace('/', "_");
        Self { path: Path::new(STATE_DIR).join(format!("{name}.maintenance")) }
    }

    pub fn is_on(&self) -> bool {
        self.path.exists()
    }

    pub fn set(&self, on: bool) -> io::Result<()> {
        if on {
            std::fs::create_dir_all(STATE_DIR)?;
            std::fs::write(&self.path, b"maintenance: this node does not take the shared address\n")
        } else {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }
}
