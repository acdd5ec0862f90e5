//! The vocabulary the whole host speaks: plain types for modules, grants,
//! limits, secrets, origins and their TLS settings, the repository, the state
//! database, schedules, runs and webhooks.
//!
//! This is the bottom layer: it imports nothing else from the crate (the
//! architecture test in `tests/e2e/architecture.rs` keeps that true). The
//! config produces these types, and every other layer names them instead of
//! defining its own. Parsing the TOML file and checking it is `config`'s job;
//! enforcing a grant is the capability's.

pub mod grants;
pub mod limits;
pub mod module;
pub mod notify;
pub mod origin;
pub mod repository;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod tls;

pub use grants::{Access, ArgPolicy, GrantedProgram, Grants, SecretGrant, glob_match, unsafe_env};
pub use limits::Limits;
pub use module::{Digest, ModuleKind, ModuleRef, PipelineRef};
pub use notify::{Event, Template, Webhook};
pub use origin::{OriginPattern, origin_of, reserved_header};
pub use repository::{
    Location, ParsedLocation, RepositorySettings, RestLocation, Retention, S3Location,
    parse_location,
};
pub use run::{RunKind, RunStatus, Trigger};
pub use schedule::{Concurrency, FireAction, Missed, Retries, Schedule, ScheduleError};
pub use secret::{SecretReadError, SecretSource};
pub use state::{PostgresState, StateLocation, check_node_label, check_node_name};
pub use tls::{ClientIdentity, ServerTrust, TlsOrigin};
