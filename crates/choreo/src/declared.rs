//! The error of a file a system declares (a topic spec, a saga): which file, which field and
//! why, so that a bad file is fixed without reading code. One type for every such file, read by
//! the services' tools and checks alike.

use std::fmt;
use std::path::{Path, PathBuf};

/// A declared file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// The field at fault, dotted (`steps[1].after[0]`, `configs.retention.ms`), or empty when
    /// the file as a whole is.
    pub field: String,
    pub why: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field.as_str() {
            "" => write!(f, "{}: {}", self.file.display(), self.why),
            field => write!(f, "{}: field `{field}`: {}", self.file.display(), self.why),
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// An error of `file` as a whole (no field).
    pub fn whole(file: &Path, why: String) -> Self {
        Self {
            file: file.to_owned(),
            field: String::new(),
            why,
        }
    }
}

/// The `*.yaml`/`*.yml` files of `dir`, in file name order; an error names the folder (`the
/// {folder} folder`) or says it holds no `{files}`.
pub fn yaml_files(dir: &Path, folder: &str, files: &str) -> Result<Vec<PathBuf>, FileError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| FileError::whole(dir, format!("cannot read the {folder} folder: {e}")))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(FileError::whole(
            dir,
            format!("no *.yaml {files} in this folder"),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_and_the_field_when_there_is_one() {
        let error = |field: &str| FileError {
            file: "sagas/job.yaml".into(),
            field: field.into(),
            why: "unknown field `owner`".into(),
        };
        assert_eq!(
            error("steps[0]").to_string(),
            "sagas/job.yaml: field `steps[0]`: unknown field `owner`"
        );
        assert_eq!(
            error("").to_string(),
            "sagas/job.yaml: unknown field `owner`"
        );
    }
}
