//! Stored bearer tokens (`opsflow token create`): each kept as the SHA-256 of the token,
//! with the actor and roles it stands for, when it expires and whether it was revoked.
//! The statements for both databases live here; they differ only in placeholders.

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

const COLUMNS: &str = "id, digest, actor, roles, created_at, expires_at, revoked_at";

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

/// SQLite statements.
pub(super) mod sqlite {
    use super::*;
    use sqlx::SqlitePool;

    pub(crate) async fn save(pool: &SqlitePool, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO api_tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
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
        pool: &SqlitePool,
        digest: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE digest = ?"
        ))
        .bind(digest)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record).collect()
    }

    pub(crate) async fn revoke(pool: &SqlitePool, id: &str, at: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// PostgreSQL statements.
pub(super) mod postgres {
    use super::*;
    use sqlx::PgPool;

    pub(crate) async fn save(pool: &PgPool, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
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
        pool: &PgPool,
        digest: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub(crate) async fn list(pool: &PgPool) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record).collect()
    }

    pub(crate) async fn revoke(pool: &PgPool, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
