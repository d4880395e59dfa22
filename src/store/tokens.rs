//! Stored bearer tokens (`opsflow token create`): each kept as the SHA-256 of the token,
//! with the actor and roles it stands for, when it expires and whether it was revoked.
//! The statements are written once; each database gets them with its placeholders.

use super::StoreError;

/// A stored token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    /// Public name of the token (for lists and revocation).
    pub id: String,
    /// SHA-256 (hex) of the token.
    #[serde(skip)]
    pub digest: String,
    /// The actor it acts as.
    pub actor: String,
    /// The roles it holds.
    pub roles: Vec<String>,
    /// When it was made, ms since the epoch.
    pub created_at: i64,
    /// When it stops working, ms since the epoch.
    pub expires_at: Option<i64>,
    /// When it was revoked, ms since the epoch.
    pub revoked_at: Option<i64>,
}

impl TokenRecord {
    /// It may be used at `now`.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

fn record<R: sqlx::Row>(row: &R) -> Result<TokenRecord, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
{
    let roles: String = row.try_get("roles")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        digest: row.try_get("digest")?,
        actor: row.try_get("actor")?,
        roles: serde_json::from_str(&roles)
            .map_err(|e| StoreError::Corrupt(format!("token roles: {e}")))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn roles_json(t: &TokenRecord) -> String {
    serde_json::Value::from(t.roles.clone()).to_string()
}

/// The statements, written with `?` placeholders.
const SAVE: &str =
    "INSERT INTO api_tokens (id, digest, actor, roles, created_at, expires_at, revoked_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)";
const BY_DIGEST: &str = "SELECT id, digest, actor, roles, created_at, expires_at, revoked_at
                           FROM api_tokens WHERE digest = ?";
const LIST: &str = "SELECT id, digest, actor, roles, created_at, expires_at, revoked_at
                      FROM api_tokens ORDER BY created_at, id";
const REVOKE: &str = "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL";

/// SQLite takes the statements as written.
fn as_written(sql: &str) -> String {
    sql.to_owned()
}

/// PostgreSQL numbers its placeholders: `?` becomes `$1`, `$2`, ...
fn numbered(sql: &str) -> String {
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The same four functions for each database, over its connections and placeholders.
macro_rules! statements {
    ($module:ident, $db:ty, $sql:ident) => {
        pub(super) mod $module {
            use super::*;

            pub(crate) async fn save(
                pool: impl sqlx::Executor<'_, Database = $db>,
                t: &TokenRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(&$sql(SAVE))
                    .bind(&t.id)
                    .bind(&t.digest)
                    .bind(&t.actor)
                    .bind(roles_json(t))
                    .bind(t.created_at)
                    .bind(t.expires_at)
                    .bind(t.revoked_at)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            pub(crate) async fn by_digest(
                pool: impl sqlx::Executor<'_, Database = $db>,
                digest: &str,
            ) -> Result<Option<TokenRecord>, StoreError> {
                let row = sqlx::query(&$sql(BY_DIGEST))
                    .bind(digest)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(record).transpose()
            }

            pub(crate) async fn list(
                pool: impl sqlx::Executor<'_, Database = $db>,
            ) -> Result<Vec<TokenRecord>, StoreError> {
                let rows = sqlx::query(&$sql(LIST)).fetch_all(pool).await?;
                rows.iter().map(record).collect()
            }

            pub(crate) async fn revoke(
                pool: impl sqlx::Executor<'_, Database = $db>,
                id: &str,
                at: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(&$sql(REVOKE))
                    .bind(at)
                    .bind(id)
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

statements!(sqlite, sqlx::Sqlite, as_written);
statements!(postgres, sqlx::Postgres, numbered);

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("UPDATE t SET a = ? WHERE b = ? AND c IS NULL"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c IS NULL"
        );
    }
}
