//! API keys (AK/SK): each belongs to one project, and admin keys may also
//! manage keys and instances.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, now_ms};

/// The stored half of a key that signature checks need.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub secret_key: String,
    pub project_id: String,
    pub admin: bool,
}

/// A key as listed: everything but the secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub access_key: String,
    pub project_id: String,
    pub admin: bool,
    pub description: String,
    /// Milliseconds since the Unix epoch.
    pub create_time: i64,
}

/// Reason a key was not revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("access key {0} does not exist")]
    NotFound(String),
    #[error("access key {0} is the last admin key")]
    LastAdmin(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

const KEY_INFO_COLUMNS: &str = "access_key, project_id, admin, description, created_at";

fn key_info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        access_key: r.get(0)?,
        project_id: r.get(1)?,
        admin: r.get(2)?,
        description: r.get(3)?,
        create_time: r.get(4)?,
    })
}

impl Store {
    /// Inserts a key, or replaces the key with the same access key.
    pub fn insert_key(
        &self,
        access_key: &str,
        secret_key: &str,
        project_id: &str,
        admin: bool,
        description: &str,
    ) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO keys (access_key, secret_key, project_id, created_at, admin, description) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                access_key,
                self.seal(secret_key),
                project_id,
                now_ms(),
                admin,
                description
            ],
        )?;
        Ok(())
    }

    /// Returns the secret key, project and role of an access key.
    pub fn find_key(&self, access_key: &str) -> rusqlite::Result<Option<KeyRecord>> {
        let row: Option<(String, String, bool)> = self
            .conn()
            .query_row(
                "SELECT secret_key, project_id, admin FROM keys WHERE access_key = ?1",
                [access_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(secret_key, project_id, admin)| {
            Ok(KeyRecord {
                secret_key: self.open_secret(&secret_key)?,
                project_id,
                admin,
            })
        })
        .transpose()
    }

    /// Lists the keys of one project, or of every project, oldest first.
    pub fn keys(&self, project_id: Option<&str>) -> rusqlite::Result<Vec<KeyInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_INFO_COLUMNS} FROM keys \
             WHERE ?1 IS NULL OR project_id = ?1 ORDER BY created_at, access_key"
        ))?;
        let rows = stmt.query_map([project_id], key_info_from_row)?;
        rows.collect()
    }

    pub fn key_count(&self) -> rusqlite::Result<u64> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM keys", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    }

    /// Deletes a key. The last admin key cannot be deleted, so that keys can
    /// always be managed through the API.
    pub fn revoke_key(&self, access_key: &str) -> Result<KeyInfo, RevokeError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let key = tx
            .query_row(
                &format!("SELECT {KEY_INFO_COLUMNS} FROM keys WHERE access_key = ?1"),
                [access_key],
                key_info_from_row,
            )
            .optional()?
            .ok_or_else(|| RevokeError::NotFound(access_key.to_string()))?;
        if key.admin {
            let admins: i64 =
                tx.query_row("SELECT COUNT(*) FROM keys WHERE admin = 1", [], |r| {
                    r.get(0)
                })?;
            if admins <= 1 {
                return Err(RevokeError::LastAdmin(access_key.to_string()));
            }
        }
        tx.execute("DELETE FROM keys WHERE access_key = ?1", [access_key])?;
        tx.commit()?;
        Ok(key)
    }
}
