//! Encryption of secrets at rest with a master key.
//!
//! Secret values (API secret keys, OBS credentials, SASL passwords, node
//! tokens) are stored as `sealed:v1:` followed by the base64 of a random
//! 96-bit nonce and the AES-256-GCM ciphertext with its tag. The master key is
//! 32 bytes, given as base64 or 64 hex digits, from the `WEIR_MASTER_KEY`
//! environment variable, from `server.master_key_file`, or from
//! `DATA_DIR/master.key`, which the server creates for a new data directory.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tracing::{info, warn};

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;
/// Environment variable that carries the master key itself.
pub const MASTER_KEY_ENV: &str = "WEIR_MASTER_KEY";

/// Source of the master key, named in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    /// Random key of a test.
    #[cfg(test)]
    Ephemeral,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Environment => write!(f, "the {MASTER_KEY_ENV} environment variable"),
            KeySource::File(path) => write!(f, "the file {}", path.display()),
            #[cfg(test)]
            KeySource::Ephemeral => write!(f, "a random key"),
        }
    }
}

/// Failure to decrypt a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed value is not valid base64 or is too short")]
    Malformed,
    #[error("the master key does not decrypt the value")]
    WrongKey,
}

/// AES-256-GCM cipher over the master key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    source: KeySource,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    pub fn new(key: &[u8; 32], source: KeySource) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
            source,
        }
    }

    /// Creates a cipher over a fresh random key.
    #[cfg(test)]
    pub fn ephemeral() -> Self {
        Self::new(&random_key(), KeySource::Ephemeral)
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // AES-GCM encryption fails only for plaintexts over 2^36 bytes
        // (aes-gcm 0.10), far beyond any secret stored here.
        let ciphertext = self
            .aead
            .encrypt(nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut bytes = nonce_bytes.to_vec();
        bytes.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", BASE64.encode(bytes))
    }

    /// Decrypts a value made by [`Cipher::seal`]. A value without the
    /// `sealed:v1:` prefix is plain text from a store written before
    /// encryption, and is returned as it is.
    pub fn open(&self, value: &str) -> Result<String, OpenError> {
        let Some(encoded) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let bytes = BASE64.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plaintext = self
            .aead
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| OpenError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::Malformed)
    }
}

/// Returns whether `value` was made by [`Cipher::seal`].
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn random_key() -> [u8; 32] {
    rand::random()
}

/// Parses a master key given as base64 (44 characters) or as 64 hex digits.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        BASE64
            .decode(text)
            .map_err(|_| "it is neither base64 nor 64 hex digits".to_string())?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("it decodes to {} bytes, not 32", bytes.len()))
}

/// Returns a new master key in the text form `parse_key` reads.
pub fn generate_key_text() -> String {
    BASE64.encode(random_key())
}

/// Loads the master key: from `WEIR_MASTER_KEY` when set, else from
/// `key_file` when configured, else from `DATA_DIR/master.key`.
///
/// The default file is created only when `store_has_secrets` is false, that
/// is for a data directory whose store holds no sealed value yet. A missing
/// key for a store that has secrets is an error, so that a lost key is
/// reported instead of being replaced by a new one.
pub fn load_master_key(
    env_value: Option<&str>,
    key_file: Option<&Path>,
    data_dir: &Path,
    store_has_secrets: bool,
) -> anyhow::Result<Cipher> {
    if let Some(text) = env_value {
        let key = parse_key(text).map_err(|reason| {
            anyhow::anyhow!(
                "invalid master key in {MASTER_KEY_ENV}: {reason}; give 32 bytes as base64, \
                 for example the output of `weir master-key generate`"
            )
        })?;
        return Ok(Cipher::new(&key, KeySource::Environment));
    }
    let (path, configured) = match key_file {
        Some(path) => (path.to_path_buf(), true),
        None => (data_dir.join("master.key"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            warn_if_readable_by_others(&path);
            let key = parse_key(&text).map_err(|reason| {
                anyhow::anyhow!(
                    "invalid master key in {}: {reason}; the file must contain 32 bytes as base64",
                    path.display()
                )
            })?;
            Ok(Cipher::new(&key, KeySource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !configured && !store_has_secrets => {
            let text = generate_key_text();
            write_key_file(&path, &text)?;
            warn!(
                path = %path.display(),
                "Created a master key for the secrets of this data directory. Keep a copy \
                 outside the data directory: without it the stored secrets cannot be read."
            );
            let key = parse_key(&text).map_err(|reason| anyhow::anyhow!(reason))?;
            Ok(Cipher::new(&key, KeySource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(anyhow::anyhow!(
            "master key file {} not found, and the store in {} holds secrets encrypted with a \
             master key; restore the file, or give the key in {MASTER_KEY_ENV} or \
             server.master_key_file",
            path.display(),
            data_dir.display()
        )),
        Err(e) => Err(anyhow::anyhow!(
            "reading master key file {} failed: {e}",
            path.display()
        )),
    }
}

fn write_key_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating master key file {} failed: {e}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("writing master key file {} failed: {e}", path.display()))?;
    info!(path = %path.display(), "Master key file written.");
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "The master key file is readable by other users; restrict it with chmod 600."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let cipher = Cipher::ephemeral();
        let sealed = cipher.seal("s3cr3t");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(cipher.open(&sealed).expect("open"), "s3cr3t");
    }

    #[test]
    fn seal_uses_fresh_nonces() {
        let cipher = Cipher::ephemeral();
        assert_ne!(cipher.seal("same"), cipher.seal("same"));
    }

    #[test]
    fn open_with_other_key_fails() {
        let sealed = Cipher::ephemeral().seal("value");
        let error = Cipher::ephemeral().open(&sealed).expect_err("wrong key");
        assert!(matches!(error, OpenError::WrongKey));
    }

    #[test]
    fn open_passes_plain_text_through() {
        assert_eq!(Cipher::ephemeral().open("legacy").expect("open"), "legacy");
    }

    #[test]
    fn open_rejects_malformed_values() {
        let cipher = Cipher::ephemeral();
        assert!(matches!(
            cipher.open("sealed:v1:!!"),
            Err(OpenError::Malformed)
        ));
        assert!(matches!(
            cipher.open("sealed:v1:AAAA"),
            Err(OpenError::Malformed)
        ));
    }

    #[test]
    fn parse_key_accepts_base64_and_hex() {
        let hex_text = "00".repeat(32);
        assert_eq!(parse_key(&hex_text).expect("hex"), [0u8; 32]);
        let text = generate_key_text();
        assert!(parse_key(&text).is_ok());
        assert!(
            parse_key("c2hvcnQ=")
                .expect_err("short")
                .contains("5 bytes")
        );
        assert!(parse_key("not a key").is_err());
    }

    #[test]
    fn default_key_file_created_for_new_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_master_key(None, None, dir.path(), false).expect("create");
        let sealed = first.seal("x");
        let again = load_master_key(None, None, dir.path(), true).expect("reload");
        assert_eq!(again.open(&sealed).expect("open"), "x");
    }

    #[test]
    fn missing_key_file_for_store_with_secrets_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = load_master_key(None, None, dir.path(), true).expect_err("missing");
        assert!(error.to_string().contains("not found"), "{error}");
    }

    #[test]
    fn configured_key_file_is_never_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.key");
        let error = load_master_key(None, Some(&path), dir.path(), false).expect_err("absent");
        assert!(error.to_string().contains("absent.key"), "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn environment_key_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = generate_key_text();
        let cipher = load_master_key(Some(&text), None, dir.path(), true).expect("env");
        assert_eq!(cipher.source(), &KeySource::Environment);
        assert!(load_master_key(Some("bad"), None, dir.path(), true).is_err());
    }
}
