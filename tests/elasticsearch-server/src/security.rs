//! Authentication (basic auth users, API keys, bearer tokens, client certificates) and the
//! privilege checks of ES's security, reduced to what a backup client meets: each request needs
//! one cluster privilege or one index privilege on the indices it names. As in ES, a concrete
//! index the user may not touch is a 403 `security_exception`, while a wildcard silently
//! expands to the indices the user may touch only.

use base64::Engine;

use crate::error::EsError;
use crate::util::wildcard_match;

/// What a user, API key or token may do (an ES role, flattened).
#[derive(Debug, Clone, Default)]
pub struct Role {
    /// Cluster privileges: `all`, `manage`, `monitor`, `manage_ilm`, `read_ilm`,
    /// `manage_index_templates`, `create_snapshot`, `monitor_snapshot`, `manage_pipeline`.
    pub cluster: Vec<String>,
    /// Index privileges by index pattern: `all`, `manage`, `read`, `view_index_metadata`,
    /// `monitor`, `write`, `index`, `create`, `create_doc`, `create_index`, `delete_index`,
    /// `maintenance`, `manage_data_stream_lifecycle`.
    pub indices: Vec<(String, Vec<String>)>,
}

impl Role {
    /// Everything (`superuser`).
    pub fn superuser() -> Role {
        Role {
            cluster: vec!["all".into()],
            indices: vec![("*".into(), vec!["all".into()])],
        }
    }

    /// A role from string slices.
    pub fn new(cluster: &[&str], indices: &[(&str, &[&str])]) -> Role {
        Role {
            cluster: cluster.iter().map(|s| (*s).to_string()).collect(),
            indices: indices
                .iter()
                .map(|(p, privs)| {
                    (
                        (*p).to_string(),
                        privs.iter().map(|s| (*s).to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    pub fn has_cluster(&self, privilege: &str) -> bool {
        self.cluster.iter().any(|p| cluster_implies(p, privilege))
    }

    pub fn has_index(&self, index: &str, privilege: &str) -> bool {
        self.indices.iter().any(|(pattern, privs)| {
            wildcard_match(pattern, index) && privs.iter().any(|p| index_implies(p, privilege))
        })
    }
}

fn cluster_implies(held: &str, wanted: &str) -> bool {
    held == wanted
        || held == "all"
        || (held == "manage"
            && matches!(
                wanted,
                "monitor"
                    | "manage_ilm"
                    | "read_ilm"
                    | "manage_index_templates"
                    | "create_snapshot"
                    | "monitor_snapshot"
                    | "manage_pipeline"
            ))
        || (held == "manage_ilm" && wanted == "read_ilm")
        || (held == "create_snapshot" && wanted == "monitor_snapshot")
        || (held == "monitor" && wanted == "monitor_snapshot")
}

fn index_implies(held: &str, wanted: &str) -> bool {
    held == wanted
        || held == "all"
        || (held == "manage"
            && matches!(
                wanted,
                "view_index_metadata" | "monitor" | "create_index" | "delete_index" | "maintenance"
            ))
        || (held == "write" && matches!(wanted, "index" | "create" | "create_doc" | "delete"))
        || (held == "index" && matches!(wanted, "create" | "create_doc"))
        || (held == "create" && wanted == "create_doc")
        || (held == "read" && wanted == "read_cross_cluster")
}

/// A basic-auth user.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub role: Role,
}

/// An API key: sent as `Authorization: ApiKey base64(id:key)`.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub key: String,
    pub role: Role,
}

impl ApiKey {
    /// The `Authorization` value ES's create-API-key answer calls `encoded`.
    pub fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.id, self.key))
    }
}

/// A bearer token (ES's token service or a service account token).
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub principal: String,
    pub role: Role,
}

/// Who a request is from.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The realm configuration of a server.
#[derive(Debug, Clone, Default)]
pub struct Realms {
    pub users: Vec<User>,
    pub api_keys: Vec<ApiKey>,
    pub tokens: Vec<Token>,
    /// The user a trusted client certificate authenticates as (PKI realm).
    pub client_cert_user: Option<Principal>,
}

impl Realms {
    /// Whether security is on (any realm has a credential).
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.api_keys.is_empty() || !self.tokens.is_empty()
    }

    /// Authenticates a request from its `Authorization` header and client certificate.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        client_cert: bool,
        target: &str,
    ) -> Result<Principal, EsError> {
        let missing = || {
            EsError::security(
                401,
                format!("missing authentication credentials for REST request [{target}]"),
            )
        };
        let Some(value) = authorization else {
            if client_cert && let Some(p) = &self.client_cert_user {
                return Ok(p.clone());
            }
            return Err(missing());
        };
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credentials)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                    return Err(missing());
                };
                match self.users.iter().find(|user| user.name == u) {
                    Some(user) if user.password == p => Ok(Principal {
                        name: user.name.clone(),
                        role: user.role.clone(),
                    }),
                    _ => Err(EsError::security(
                        401,
                        format!("unable to authenticate user [{u}] for REST request [{target}]"),
                    )),
                }
            }
            "apikey" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credentials)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let found =
                    decoded
                        .as_deref()
                        .and_then(|d| d.split_once(':'))
                        .and_then(|(id, key)| {
                            self.api_keys.iter().find(|k| k.id == id && k.key == key)
                        });
                match found {
                    Some(k) => Ok(Principal {
                        name: format!("api_key:{}", k.id),
                        role: k.role.clone(),
                    }),
                    None => Err(EsError::security(
                        401,
                        format!("unable to authenticate with provided credentials and anonymous access is not allowed for this request [{target}]"),
                    )
                    .with("additional_unsuccessful_credentials", "API key: invalid ApiKey value")),
                }
            }
            "bearer" => match self.tokens.iter().find(|t| t.token == credentials) {
                Some(t) => Ok(Principal {
                    name: t.principal.clone(),
                    role: t.role.clone(),
                }),
                None => Err(EsError::security(
                    401,
                    "failed to authenticate the token: token expired or invalid".to_string(),
                )),
            },
            _ => Err(missing()),
        }
    }
}

/// The 403 for a cluster action.
pub fn cluster_denied(principal: &Principal, privilege: &str, action: &str) -> EsError {
    EsError::new(
        403,
        "security_exception",
        format!(
            "action [{action}] is unauthorized for user [{}] with effective roles [cairn_test_role], this action is granted by the cluster privileges [{privilege},manage,all]",
            principal.name
        ),
    )
}

/// The 403 for an index action.
pub fn index_denied(principal: &Principal, privilege: &str, action: &str, index: &str) -> EsError {
    EsError::new(
        403,
        "security_exception",
        format!(
            "action [{action}] is unauthorized for user [{}] with effective roles [cairn_test_role] on indices [{index}], this action is granted by the index privileges [{privilege},manage,all]",
            principal.name
        ),
    )
}
