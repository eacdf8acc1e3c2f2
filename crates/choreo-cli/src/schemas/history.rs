//! Earlier versions of schema files, read from git history for `schemas check --against <ref>`.
//!
//! Runs the `git` binary from the repository root ([`Repo::discover`] asks
//! `git rev-parse --show-toplevel` from the schemas folder): `git log --format=%H <ref> -- <path>`
//! lists the commits that touched a file up to and including the ref, `git show <commit>:<path>`
//! reads each version. Only reads; never changes the repository. Renames are not followed: a
//! schema file that moved is new at its new path.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why git history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The schemas folder is not in a git work tree (or git is not installed).
    #[error("{dir} is not inside a git repository: {detail}")]
    NotARepository { dir: PathBuf, detail: String },
    /// The ref does not name a commit.
    #[error("`{reference}` is not a commit in the git repository at {root}")]
    UnknownRef { reference: String, root: PathBuf },
    /// git failed for another reason.
    #[error("`git {command}` failed in {root}: {detail}")]
    Failed {
        command: String,
        root: PathBuf,
        detail: String,
    },
}

/// One version of a file: the commit it is read from and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub commit: String,
    pub text: String,
}

/// A git work tree, by its root.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    /// The repository that holds `dir`.
    pub fn discover(dir: &Path) -> Result<Self, GitError> {
        let not_a_repository = |detail: String| GitError::NotARepository {
            dir: dir.to_owned(),
            detail,
        };
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "--show-toplevel"])
            .output()
            .map_err(|e| not_a_repository(format!("cannot run git: {e}")))?;
        if !output.status.success() {
            return Err(not_a_repository(stderr_of(&output)));
        }
        let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self {
            root: PathBuf::from(root),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full commit id `reference` names.
    pub fn resolve(&self, reference: &str) -> Result<String, GitError> {
        let unknown = || GitError::UnknownRef {
            reference: reference.to_owned(),
            root: self.root.clone(),
        };
        if reference.is_empty() || reference.starts_with('-') {
            return Err(unknown());
        }
        let spec = format!("{reference}^{{commit}}");
        let output = self.git(&["rev-parse", "--verify", "--quiet", &spec])?;
        if !output.status.success() {
            return Err(unknown());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `file` relative to the repository root, as git names it.
    pub fn path_of(&self, file: &Path) -> Result<PathBuf, GitError> {
        let failed = |detail: String| GitError::Failed {
            command: "ls-files".into(),
            root: self.root.clone(),
            detail,
        };
        let file = file
            .canonicalize()
            .map_err(|e| failed(format!("{}: {e}", file.display())))?;
        let root = self
            .root
            .canonicalize()
            .map_err(|e| failed(format!("{}: {e}", self.root.display())))?;
        file.strip_prefix(&root)
            .map(Path::to_owned)
            .map_err(|_| failed(format!("{} is outside the repository", file.display())))
    }

    /// Whether `path` exists in `commit`.
    pub fn exists_at(&self, commit: &str, path: &Path) -> Result<bool, GitError> {
        let object = format!("{commit}:{}", path.display());
        Ok(self.git(&["cat-file", "-e", &object])?.status.success())
    }

    /// Every distinct version of `path` in the history of `commit`, oldest first, each with the
    /// first commit that had it. Versions that differ only in whitespace or key order are one.
    pub fn versions(&self, commit: &str, path: &Path) -> Result<Vec<Version>, GitError> {
        let path_arg = path.display().to_string();
        let log = self.git(&["log", "--format=%H", commit, "--", &path_arg])?;
        if !log.status.success() {
            return Err(self.failed("log", &log));
        }
        let commits = String::from_utf8_lossy(&log.stdout).into_owned();
        let mut versions: Vec<Version> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for commit in commits.lines().rev().filter(|c| !c.is_empty()) {
            let object = format!("{commit}:{path_arg}");
            let show = self.git(&["show", &object])?;
            if !show.status.success() {
                // The commit deleted the file: there is no version to read there.
                continue;
            }
            let text = String::from_utf8_lossy(&show.stdout).into_owned();
            let key = choreo::avro::normalize_schema(&text).unwrap_or_else(|_| text.clone());
            if !seen.contains(&key) {
                seen.push(key);
                versions.push(Version {
                    commit: commit.to_owned(),
                    text,
                });
            }
        }
        Ok(versions)
    }

    fn git(&self, args: &[&str]) -> Result<std::process::Output, GitError> {
        Command::new("git")
            .current_dir(&self.root)
            .args(args)
            .output()
            .map_err(|e| GitError::Failed {
                command: args.join(" "),
                root: self.root.clone(),
                detail: format!("cannot run git: {e}"),
            })
    }

    fn failed(&self, command: &str, output: &std::process::Output) -> GitError {
        GitError::Failed {
            command: command.to_owned(),
            root: self.root.clone(),
            detail: stderr_of(output),
        }
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// The short form of a commit id for messages.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}
