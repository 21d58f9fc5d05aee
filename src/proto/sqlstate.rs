//! SQLSTATE codes lakepool itself emits (PostgreSQL `errcodes.txt`).

/// A five-character SQLSTATE code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SqlState([u8; 5]);

impl SqlState {
    const fn c(s: &'static str) -> Self {
        let b = s.as_bytes();
        Self([b[0], b[1], b[2], b[3], b[4]])
    }

    /// Parses a code received from a server (five ASCII digits or upper-case letters).
    pub(crate) fn parse(code: &str) -> Option<Self> {
        let b: [u8; 5] = code.as_bytes().try_into().ok()?;
        b.iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            .then_some(Self(b))
    }

    /// The code as text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// `25P03` idle_in_transaction_session_timeout.
    pub(crate) const IDLE_IN_TRANSACTION_TIMEOUT: Self = Self::c("25P03");
    /// `01000` warning.
    pub(crate) const WARNING: Self = Self::c("01000");
    /// `08P01` protocol_violation.
    pub(crate) const PROTOCOL_VIOLATION: Self = Self::c("08P01");
    /// `08006` connection_failure: the upstream connection broke or could not be made.
    pub(crate) const CONNECTION_FAILURE: Self = Self::c("08006");
    /// `08001` sqlclient_unable_to_establish_sqlconnection: upstream login impossible.
    pub(crate) const UNABLE_TO_CONNECT: Self = Self::c("08001");
    /// `0A000` feature_not_supported.
    pub(crate) const FEATURE_NOT_SUPPORTED: Self = Self::c("0A000");
    /// `28P01` invalid_password.
    pub(crate) const INVALID_PASSWORD: Self = Self::c("28P01");
    /// `28000` invalid_authorization_specification.
    pub(crate) const INVALID_AUTHORIZATION: Self = Self::c("28000");
    /// `3D000` invalid_catalog_name (unknown database).
    pub(crate) const INVALID_CATALOG_NAME: Self = Self::c("3D000");
    /// `53300` too_many_connections.
    pub(crate) const TOO_MANY_CONNECTIONS: Self = Self::c("53300");
    /// `57014` query_canceled: used for the pool queue wait timeout, like a statement timeout.
    pub(crate) const QUERY_CANCELED: Self = Self::c("57014");
    /// `57P01` admin_shutdown.
    pub(crate) const ADMIN_SHUTDOWN: Self = Self::c("57P01");
    /// `57P05` idle_session_timeout: client_idle_timeout closed an idle client.
    pub(crate) const IDLE_SESSION_TIMEOUT: Self = Self::c("57P05");
    /// `22023` invalid_parameter_value.
    pub(crate) const INVALID_PARAMETER_VALUE: Self = Self::c("22023");
    /// `42501` insufficient_privilege.
    pub(crate) const INSUFFICIENT_PRIVILEGE: Self = Self::c("42501");
    /// `42601` syntax_error.
    pub(crate) const SYNTAX_ERROR: Self = Self::c("42601");
    /// `F0000` config_file_error.
    pub(crate) const CONFIG_FILE_ERROR: Self = Self::c("F0000");
    /// `invalid_sql_statement_name`: no prepared statement by that name.
    pub(crate) const INVALID_SQL_STATEMENT_NAME: Self = Self::c("26000");
    /// `duplicate_prepared_statement`.
    pub(crate) const DUPLICATE_PREPARED_STATEMENT: Self = Self::c("42P05");
    /// `program_limit_exceeded`: a per-client limit of lakepool's.
    pub(crate) const PROGRAM_LIMIT_EXCEEDED: Self = Self::c("54000");
    /// `reserved_name`: names lakepool uses on server connections.
    pub(crate) const RESERVED_NAME: Self = Self::c("42939");
    /// `in_failed_sql_transaction`.
    pub(crate) const IN_FAILED_SQL_TRANSACTION: Self = Self::c("25P02");
    /// `internal_error`: a state lakepool itself should never reach.
    pub(crate) const INTERNAL_ERROR: Self = Self::c("XX000");
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        assert_eq!(SqlState::parse("28P01"), Some(SqlState::INVALID_PASSWORD));
        assert_eq!(SqlState::parse("28p01"), None);
        assert_eq!(SqlState::parse("2801"), None);
        assert_eq!(SqlState::ADMIN_SHUTDOWN.as_str(), "57P01");
    }
}
