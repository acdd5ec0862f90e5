//! [`Error`], the one error type of a module, and its helpers.

use std::any::Any;
use std::fmt;

use crate::__private::types::Error as WitError;

/// `Result<T, cairn_guest::Error>`, the return type of every fallible SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which case of the WIT `error` variant an [`Error`] becomes when it reaches
/// the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The job's grants do not allow the request.
    Denied,
    /// The request or the params are malformed.
    Invalid,
    /// What was asked for does not exist.
    NotFound,
    /// A limit was reached: a size cap or a timeout.
    Limit,
    /// The capability is not available here.
    Unsupported,
    /// The operation was attempted and failed. Plain errors get this kind.
    Failed,
}

impl ErrorKind {
    /// The WIT case name: `denied`, `invalid`, `not-found`, `limit`,
    /// `unsupported` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Denied => "denied",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Limit => "limit",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Failed => "failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of a module, in the spirit of `anyhow::Error`.
///
/// - `?` converts any `std::error::Error + Send + Sync + 'static` into it,
///   keeping the error's `source()` chain as text.
/// - An error from a host capability keeps its WIT case ([`ErrorKind`]): a
///   task that returns it unchanged (or with added
///   [context](ErrorContext::context)) reports the same case to the host.
/// - Anything else reaches the host as `failed`, with the message chain
///   joined by `": "`.
///
/// `Display` prints the whole chain, outermost context first.
pub struct Error {
    kind: ErrorKind,
    /// Messages, outermost context first, root cause last.
    chain: Vec<String>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Error {
            kind,
            chain: vec![message.to_string()],
        }
    }

    /// A plain error (kind [`Failed`](ErrorKind::Failed)) with `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Failed, message)
    }

    /// A [`Denied`](ErrorKind::Denied) error.
    pub fn denied(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Denied, message)
    }

    /// An [`Invalid`](ErrorKind::Invalid) error, for example a bad param.
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Invalid, message)
    }

    /// A [`NotFound`](ErrorKind::NotFound) error.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// A [`Limit`](ErrorKind::Limit) error.
    pub fn limit(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Limit, message)
    }

    /// An [`Unsupported`](ErrorKind::Unsupported) error.
    pub fn unsupported(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// A [`Failed`](ErrorKind::Failed) error; the same as [`Error::msg`].
    pub fn failed(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Failed, message)
    }

    /// The WIT case this error becomes.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error reported as another WIT case.
    #[must_use]
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Wrap the error with a higher-level message; the kind is unchanged.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.chain.insert(0, context.to_string());
        self
    }

    /// The messages, outermost context first, root cause last.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        self.chain.iter().map(String::as_str)
    }

    /// The innermost message.
    pub fn root_cause(&self) -> &str {
        self.chain.last().map_or("", String::as_str)
    }

    /// The whole chain joined by `": "` (the same as `to_string()`).
    pub fn message(&self) -> String {
        self.chain.join(": ")
    }

    pub(crate) fn from_wit(error: WitError) -> Self {
        let (kind, message) = match error {
            WitError::Denied(m) => (ErrorKind::Denied, m),
            WitError::Invalid(m) => (ErrorKind::Invalid, m),
            WitError::NotFound(m) => (ErrorKind::NotFound, m),
            WitError::Limit(m) => (ErrorKind::Limit, m),
            WitError::Unsupported(m) => (ErrorKind::Unsupported, m),
            WitError::Failed(m) => (ErrorKind::Failed, m),
        };
        Error::new(kind, message)
    }

    pub(crate) fn into_wit(self) -> WitError {
        let message = self.message();
        match self.kind {
            ErrorKind::Denied => WitError::Denied(message),
            ErrorKind::Invalid => WitError::Invalid(message),
            ErrorKind::NotFound => WitError::NotFound(message),
            ErrorKind::Limit => WitError::Limit(message),
            ErrorKind::Unsupported => WitError::Unsupported(message),
            ErrorKind::Failed => WitError::Failed(message),
        }
    }

    /// Wrap this error in an `std::io::Error` such that converting that
    /// `io::Error` back with `?` restores this error, kind included.
    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match self.kind {
            ErrorKind::Denied => std::io::ErrorKind::PermissionDenied,
            ErrorKind::Invalid => std::io::ErrorKind::InvalidInput,
            ErrorKind::NotFound => std::io::ErrorKind::NotFound,
            ErrorKind::Limit => std::io::ErrorKind::QuotaExceeded,
            ErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
            ErrorKind::Failed => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, IoBridge(self))
    }
}

/// Carries an [`Error`] through an `std::io::Error`.
struct IoBridge(Error);

impl fmt::Debug for IoBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for IoBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for IoBridge {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", self.kind, self.message())
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        // A host capability's error keeps its WIT case.
        if let Some(wit) = (&error as &dyn Any).downcast_ref::<WitError>() {
            return Error::from_wit(wit.clone());
        }
        // So does one of ours that travelled through `std::io` (a storage
        // reader or writer).
        if let Some(io) = (&error as &dyn Any).downcast_ref::<std::io::Error>() {
            if let Some(IoBridge(inner)) = io.get_ref().and_then(|e| e.downcast_ref::<IoBridge>()) {
                return Error {
                    kind: inner.kind,
                    chain: inner.chain.clone(),
                };
            }
        }
        let mut chain = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        Error {
            kind: ErrorKind::Failed,
            chain,
        }
    }
}

/// Adds context to errors: `.context("…")` and `.with_context(|| …)` on any
/// `Result` whose error converts into [`Error`], and on `Option` (where
/// `None` becomes a `failed` error with that message).
///
/// ```no_run
/// use cairn_guest::{ErrorContext, Result};
///
/// fn read_config(text: &str) -> Result<serde_json::Value> {
///     let value = serde_json::from_str(text).context("config is not JSON")?;
///     Ok(value)
/// }
/// ```
pub trait ErrorContext<T> {
    /// Wrap the error (or `None`) with `context`.
    ///
    /// # Errors
    ///
    /// The error, with `context` as its outermost message.
    fn context<C: fmt::Display>(self, context: C) -> Result<T>;

    /// Like [`context`](ErrorContext::context), computing the message only on
    /// error.
    ///
    /// # Errors
    ///
    /// The error, with the computed context as its outermost message.
    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, context: F) -> Result<T>;
}

impl<T, E: Into<Error>> ErrorContext<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, context: F) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

impl<T> ErrorContext<T> for Option<T> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, context: F) -> Result<T> {
        self.ok_or_else(|| Error::msg(context()))
    }
}

/// Return early with an error.
///
/// `bail!("format {}", args)` returns a plain (`failed`) error;
/// `bail!(expr)` returns `Error::from(expr)`, for example
/// `bail!(Error::invalid("…"))`.
///
/// ```no_run
/// use cairn_guest::{bail, Error, Result};
///
/// fn check(batch: u64) -> Result<()> {
///     if batch == 0 {
///         bail!(Error::invalid("`batch` must be at least 1"));
///     }
///     if batch > 10_000 {
///         bail!("batch {batch} is too large");
///     }
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! bail {
    ($fmt:literal $($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($fmt $($arg)*)))
    };
    ($err:expr $(,)?) => {
        return ::core::result::Result::Err($crate::Error::from($err))
    };
}

/// Return early with an error unless a condition holds.
///
/// `ensure!(cond, "format {}", args)` or `ensure!(cond, error_expr)`; with
/// only a condition the message names it.
///
/// ```no_run
/// use cairn_guest::{ensure, Result};
///
/// fn check(batch: u64) -> Result<()> {
///     ensure!(batch > 0, "`batch` must be at least 1, got {batch}");
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr $(,)?) => {
        if !$cond {
            return ::core::result::Result::Err($crate::Error::msg(::core::concat!(
                "condition failed: ",
                ::core::stringify!($cond)
            )));
        }
    };
    ($cond:expr, $($rest:tt)+) => {
        if !$cond {
            $crate::bail!($($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the dump")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn plain_error_becomes_failed_with_its_chain() {
        let e = Error::from(Outer(std::io::Error::other("disk on fire")));
        assert_eq!(e.kind(), ErrorKind::Failed);
        let e = e.context("backing up");
        match e.into_wit() {
            WitError::Failed(m) => assert_eq!(m, "backing up: reading the dump: disk on fire"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn host_error_keeps_its_case_through_question_mark() {
        fn call() -> Result<()> {
            Err(WitError::Denied("http to x not granted".into()))?;
            Ok(())
        }
        match call().unwrap_err().into_wit() {
            WitError::Denied(m) => assert_eq!(m, "http to x not granted"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_survives_a_trip_through_io() {
        fn call() -> Result<()> {
            Err(Error::limit("artifact too large").into_io())?;
            Ok(())
        }
        let e = call().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit);
        assert_eq!(e.to_string(), "artifact too large");
    }

    #[test]
    fn context_on_option_and_macros() {
        fn pick(v: Option<u8>) -> Result<u8> {
            let v = v.context("no value")?;
            ensure!(v > 1, Error::invalid(format!("{v} is too small")));
            ensure!(v < 9);
            if v == 5 {
                bail!("five is {}", "unlucky");
            }
            Ok(v)
        }
        assert_eq!(pick(None).unwrap_err().to_string(), "no value");
        assert_eq!(pick(Some(1)).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(
            pick(Some(9)).unwrap_err().to_string(),
            "condition failed: v < 9"
        );
        assert_eq!(pick(Some(5)).unwrap_err().to_string(), "five is unlucky");
        assert_eq!(pick(Some(3)).unwrap(), 3);
    }
}
