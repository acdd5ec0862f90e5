//! What a host function returns when it does not succeed: an error the guest
//! receives as the WIT `error` variant (a denial, a limit, a failure it can
//! handle), or a trap (a fault of the host or a broken invariant: the store is
//! dropped and the run fails).
//!
//! The bindings map every `result<_, error>` of the contract to
//! `Result<_, HostError>` (wasmtime's `trappable_error_type`), so capabilities
//! return their own error types with `?` and never write `Ok(Err(..))`.

use super::bindings::WitError;

/// A guest-visible error or a trap.
#[derive(Debug)]
pub struct HostError(Repr);

#[derive(Debug)]
enum Repr {
    Guest(WitError),
    Trap(wasmtime::Error),
}

/// The result of a host function.
pub type HostResult<T> = Result<T, HostError>;

impl HostError {
    /// A trap: the store stops and the run fails with `error`.
    pub fn trap(error: impl Into<wasmtime::Error>) -> Self {
        Self(Repr::Trap(error.into()))
    }

    /// The WIT error the guest receives, or the trap.
    ///
    /// # Errors
    /// The trap, when this is one.
    pub fn into_guest(self) -> wasmtime::Result<WitError> {
        match self.0 {
            Repr::Guest(e) => Ok(e),
            Repr::Trap(e) => Err(e),
        }
    }

    /// The guest-visible error, if this is not a trap.
    #[must_use]
    pub fn guest(&self) -> Option<&WitError> {
        match &self.0 {
            Repr::Guest(e) => Some(e),
            Repr::Trap(_) => None,
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Guest(e) => f.write_str(&describe(e)),
            Repr::Trap(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<WitError> for HostError {
    fn from(e: WitError) -> Self {
        Self(Repr::Guest(e))
    }
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self::trap(e)
    }
}

/// `variant: message` for a WIT error (a failure is its message alone).
#[must_use]
pub fn describe(e: &WitError) -> String {
    match e {
        WitError::Denied(m) => format!("denied: {m}"),
        WitError::Invalid(m) => format!("invalid: {m}"),
        WitError::NotFound(m) => format!("not found: {m}"),
        WitError::Limit(m) => format!("limit: {m}"),
        WitError::Unsupported(m) => format!("unsupported: {m}"),
        WitError::Failed(m) => m.clone(),
    }
}

/// `e` with every secret form in its message replaced.
#[must_use]
pub fn redacted(redactor: &super::redact::Redactor, e: WitError) -> WitError {
    let r = |m: String| redactor.redact(&m);
    match e {
        WitError::Denied(m) => WitError::Denied(r(m)),
        WitError::Invalid(m) => WitError::Invalid(r(m)),
        WitError::NotFound(m) => WitError::NotFound(r(m)),
        WitError::Limit(m) => WitError::Limit(r(m)),
        WitError::Unsupported(m) => WitError::Unsupported(r(m)),
        WitError::Failed(m) => WitError::Failed(r(m)),
    }
}

/// `e` with `prefix: ` before its message, same variant.
#[must_use]
pub fn prefixed(prefix: &str, e: WitError) -> WitError {
    let p = |m: String| format!("{prefix}: {m}");
    match e {
        WitError::Denied(m) => WitError::Denied(p(m)),
        WitError::Invalid(m) => WitError::Invalid(p(m)),
        WitError::NotFound(m) => WitError::NotFound(p(m)),
        WitError::Limit(m) => WitError::Limit(p(m)),
        WitError::Unsupported(m) => WitError::Unsupported(p(m)),
        WitError::Failed(m) => WitError::Failed(p(m)),
    }
}
