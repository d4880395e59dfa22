//! JSON values bound as PostgreSQL's `json` type: the text serde writes goes to the server
//! as is, and the server only checks that it is JSON. (sqlx's `Json` binds `jsonb`, which
//! the server parses into a tree, at about twice the cost, and which cannot hold the escape
//! `\u0000`.) Reads take the column's text (`data::text`) and parse it here.

use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::{Encode, Postgres, Type};

/// PostgreSQL's fixed type numbers for `json` and `json[]` (`pg_type.dat`).
const JSON: Oid = Oid(114);
const JSON_ARRAY: Oid = Oid(199);

/// A value written as `json`.
#[derive(Debug, Clone, Copy)]
pub(super) struct JsonText<T>(pub(super) T);

impl<T> Type<Postgres> for JsonText<T> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSON)
    }
}

impl<T> PgHasArrayType for JsonText<T> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSON_ARRAY)
    }
}

impl<T: Serialize> Encode<'_, Postgres> for JsonText<T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // The binary form of `json` is its text.
        serde_json::to_writer(&mut **buf, &self.0)?;
        Ok(IsNull::No)
    }
}
