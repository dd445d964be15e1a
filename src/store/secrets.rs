//! Sealing of the secret columns: API secret keys, connector tokens, SASL
//! passwords of instances, and the credentials inside task entities.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{Connector, Instance, Store, Task};
use crate::config::InstanceSecurity;
use crate::crypto::{self, OpenError};

const CHECK_NAME: &str = "master_key_check";
const CHECK_PLAINTEXT: &str = "weir master key check";
/// Names of task entity fields whose string values are secrets, at any depth.
const SECRET_FIELDS: &[&str] = &["access_key", "secret_key", "password"];

/// Returns the sealed check value, present once the store has been unlocked.
pub(super) fn check_value(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = ?1",
        [CHECK_NAME],
        |r| r.get(0),
    )
    .optional()
}

fn open_failure(error: OpenError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
}

/// Names the row whose sealed value failed to open, so that the log of the
/// failed request points at it.
fn in_row(what: &str, id: &str) -> impl FnOnce(rusqlite::Error) -> rusqlite::Error {
    let context = format!("{what} {id}");
    move |error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("opening the sealed secret of {context} failed: {error}; restore the row from a backup or set the secret again").into(),
        )
    }
}

impl Store {
    /// Checks the cipher against the check value, or, for a store that has
    /// none yet, seals every plain-text secret and writes the check value.
    pub(super) fn unlock(&self, check: Option<&str>, path: &Path) -> anyhow::Result<()> {
        if let Some(check) = check {
            return match self.cipher.open(check) {
                Ok(text) if text == CHECK_PLAINTEXT => Ok(()),
                _ => Err(anyhow::anyhow!(
                    "the master key from {} does not match the store {}: its secrets were \
                     encrypted with another master key. The data is not damaged; start the \
                     server with the original master key (WEIR_MASTER_KEY, \
                     server.master_key_file, or master.key in the data directory)",
                    self.cipher.source(),
                    path.display()
                )),
            };
        }
        self.seal_plain_rows().map_err(|e| {
            anyhow::anyhow!("encrypting the secrets in {} failed: {e}", path.display())
        })
    }

    /// Seals the secrets of a store written before encryption, in one transaction.
    fn seal_plain_rows(&self) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let keys: Vec<(String, String)> = tx
            .prepare("SELECT access_key, secret_key FROM keys")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (access_key, secret_key) in keys {
            if !crypto::is_sealed(&secret_key) {
                tx.execute(
                    "UPDATE keys SET secret_key = ?1 WHERE access_key = ?2",
                    params![self.seal(&secret_key), access_key],
                )?;
            }
        }
        let connectors: Vec<(String, String)> = tx
            .prepare("SELECT id, token FROM connectors")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, token) in connectors {
            if !crypto::is_sealed(&token) {
                tx.execute(
                    "UPDATE connectors SET token = ?1 WHERE id = ?2",
                    params![self.seal(&token), id],
                )?;
            }
        }
        let instances: Vec<(String, String)> = tx
            .prepare("SELECT id, security FROM instances")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, security) in instances {
            let security: InstanceSecurity = super::from_json(&security);
            tx.execute(
                "UPDATE instances SET security = ?1 WHERE id = ?2",
                params![super::json(&self.seal_security(&security)), id],
            )?;
        }
        let tasks: Vec<(String, String)> = tx
            .prepare("SELECT id, entity FROM tasks")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, entity) in tasks {
            let entity: Value = serde_json::from_str(&entity).unwrap_or(Value::Null);
            tx.execute(
                "UPDATE tasks SET entity = ?1 WHERE id = ?2",
                params![self.seal_entity(&entity).to_string(), id],
            )?;
        }
        tx.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)",
            params![CHECK_NAME, self.seal(CHECK_PLAINTEXT)],
        )?;
        tx.commit()
    }

    /// Seals a value unless it is sealed already.
    pub(super) fn seal(&self, value: &str) -> String {
        if crypto::is_sealed(value) {
            value.to_string()
        } else {
            self.cipher.seal(value)
        }
    }

    pub(super) fn open_secret(&self, value: &str) -> rusqlite::Result<String> {
        self.cipher.open(value).map_err(open_failure)
    }

    pub(super) fn seal_security(&self, security: &InstanceSecurity) -> InstanceSecurity {
        InstanceSecurity {
            password: security.password.as_deref().map(|p| self.seal(p)),
            ..security.clone()
        }
    }

    pub(super) fn open_instance(&self, mut instance: Instance) -> rusqlite::Result<Instance> {
        if let Some(password) = &instance.security.password {
            instance.security.password = Some(
                self.open_secret(password)
                    .map_err(in_row("instance", &instance.id))?,
            );
        }
        Ok(instance)
    }

    pub(super) fn open_connector(&self, mut connector: Connector) -> rusqlite::Result<Connector> {
        connector.token = self
            .open_secret(&connector.token)
            .map_err(in_row("connector", &connector.id))?;
        Ok(connector)
    }

    /// Returns a copy of a task entity with every secret field sealed.
    pub(super) fn seal_entity(&self, entity: &Value) -> Value {
        map_secret_fields(entity, &mut |text| Ok(self.seal(text))).unwrap_or(Value::Null)
    }

    pub(super) fn open_entity(&self, entity: &Value) -> rusqlite::Result<Value> {
        map_secret_fields(entity, &mut |text| {
            self.cipher.open(text).map_err(open_failure)
        })
    }

    pub(super) fn open_task(&self, mut task: Task) -> rusqlite::Result<Task> {
        task.entity = self
            .open_entity(&task.entity)
            .map_err(in_row("task", &task.id))?;
        Ok(task)
    }
}

/// Copies `value`, passing the string value of every field named in
/// `SECRET_FIELDS` through `map`.
fn map_secret_fields(
    value: &Value,
    map: &mut dyn FnMut(&str) -> rusqlite::Result<String>,
) -> rusqlite::Result<Value> {
    match value {
        Value::Object(fields) => {
            let mut out = serde_json::Map::with_capacity(fields.len());
            for (name, field) in fields {
                let mapped = match field {
                    Value::String(text) if SECRET_FIELDS.contains(&name.as_str()) => {
                        Value::String(map(text)?)
                    }
                    other => map_secret_fields(other, map)?,
                };
                out.insert(name.clone(), mapped);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| map_secret_fields(item, map))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}
