//! Secrets read from a file or the environment, never from a flag (which `ps` shows) and never
//! printed: a variable `X` is read from the file named by `X_FILE` (how Kubernetes Secrets and
//! compose secrets are mounted) or else from `X` itself. The value is a
//! [`secrecy::SecretString`], whose `Debug` says `[REDACTED]`, so a config struct that holds one
//! can derive `Debug` and be logged safely.

use std::path::Path;

pub use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

/// The secret in `{var}_FILE` (its content, without the trailing newline) or else in `{var}`;
/// `Ok(None)` when neither is set. Both set is an error: which one wins would be a guess.
pub fn read(var: &'static str) -> Result<Option<SecretString>, ConfigError> {
    let file_var = format!("{var}_FILE");
    let from_file = std::env::var(&file_var)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let direct = std::env::var(var).ok().filter(|v| !v.is_empty());
    match (from_file, direct) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            var,
            value: "[REDACTED]".into(),
            why: format!("both {var} and {file_var} are set; set one"),
        }),
        (Some(path), None) => from_path(var, Path::new(path.trim())).map(Some),
        (None, Some(value)) => Ok(Some(SecretString::from(value))),
        (None, None) => Ok(None),
    }
}

/// Like [`read`], but missing is an error.
pub fn required(var: &'static str) -> Result<SecretString, ConfigError> {
    read(var)?.ok_or(ConfigError::Missing { var })
}

/// The content of the secret file at `path` (named by `{var}_FILE`), without its trailing
/// newline; errors name `var`.
pub fn from_path(var: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        var,
        value: path.display().to_string(),
        why: format!("cannot read the secret file ({var}_FILE): {e}"),
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            var,
            value: path.display().to_string(),
            why: format!("the secret file ({var}_FILE) is empty"),
        });
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_without_its_newline_and_never_shown() {
        let dir = std::env::temp_dir().join(format!("choreo-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = from_path("X", &path).unwrap();
        assert_eq!(secret.expose_secret(), "s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        let err = from_path("X", &path).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = from_path("X", &dir.join("absent")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
