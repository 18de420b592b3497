//! [`ApiError`], the one error type at the HTTP edge, and its JSON envelope.
//!
//! Handlers return `ApiError`; poem-openapi turns it into a `poem::Error`, and the edge
//! middleware ([`super::edge`]) renders every error (handler errors, and poem's and
//! poem-openapi's own: malformed parameters, bodies, routes and methods) as a localized
//! [`ErrorEnvelope`] in the reader's language.

use poem::error::{MethodNotAllowedError, NotFoundError, ReadBodyError, ResponseError};
use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object};

use super::messages;
use crate::auth::{AuthError, Permission, Role};
use crate::i18n::{Lang, Text};

/// The kinds of entity an ID can name, each with its own 404 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Vm,
    Group,
    Cluster,
    Host,
    Datacenter,
    Alert,
}

impl Entity {
    fn name(self) -> &'static str {
        match self {
            Entity::Vm => "VM",
            Entity::Group => "group",
            Entity::Cluster => "cluster",
            Entity::Host => "host",
            Entity::Datacenter => "datacenter",
            Entity::Alert => "alert",
        }
    }
}

/// An error the API returns as an [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A parameter or body field is missing or malformed; `field` names it.
    #[error("invalid `{field}`: {detail}")]
    BadRequest { field: String, detail: String },
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("the role `{}` lacks the permission `{}`", role.name(), permission.name())]
    Forbidden { role: Role, permission: Permission },
    #[error("{} `{id}` not found", entity.name())]
    NotFound { entity: Entity, id: String },
    #[error("no route for {0}; see /openapi.json for the paths")]
    RouteNotFound(String),
    #[error("{0} is not allowed; see /openapi.json for the methods of each path")]
    MethodNotAllowed(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Real-time data cannot be served; `retry_after_secs` is when to try again.
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Returns a 400 naming `field`.
    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// Returns a 404 for `entity` with `id`.
    pub fn not_found(entity: Entity, id: &str) -> Self {
        Self::NotFound {
            entity,
            id: id.to_owned(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } | Self::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the envelope's `error` code: the status, or a more specific code such as
    /// `404-GROUP`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "400",
            Self::Unauthorized(_) => "401",
            Self::Forbidden { .. } => "403",
            Self::NotFound { entity, .. } => match entity {
                Entity::Vm => "404",
                Entity::Group => "404-GROUP",
                Entity::Cluster => "404-CLUSTER",
                Entity::Host => "404-HOST",
                Entity::Datacenter => "404-DATACENTER",
                Entity::Alert => "404-ALERT",
            },
            Self::RouteNotFound(_) => "404-ROUTE",
            Self::MethodNotAllowed(_) => "405",
            Self::PayloadTooLarge { .. } => "413",
            Self::UnsupportedMediaType(_) => "415",
            Self::RateLimited { .. } => "429",
            Self::Unavailable { .. } => "503",
            Self::Internal(_) => "500",
        }
    }

    fn title(&self) -> &'static Text {
        match self {
            Self::BadRequest { .. } => &messages::BAD_REQUEST,
            Self::Unauthorized(_) => &messages::UNAUTHORIZED,
            Self::Forbidden { .. } => &messages::FORBIDDEN,
            Self::NotFound { entity, .. } => match entity {
                Entity::Vm => &messages::VM_NOT_FOUND,
                Entity::Group => &messages::GROUP_NOT_FOUND,
                Entity::Cluster => &messages::CLUSTER_NOT_FOUND,
                Entity::Host => &messages::HOST_NOT_FOUND,
                Entity::Datacenter => &messages::DATACENTER_NOT_FOUND,
                Entity::Alert => &messages::ALERT_NOT_FOUND,
            },
            Self::RouteNotFound(_) => &messages::ROUTE_NOT_FOUND,
            Self::MethodNotAllowed(_) => &messages::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => &messages::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => &messages::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => &messages::RATE_LIMITED,
            Self::Unavailable { .. } => &messages::UNAVAILABLE,
            Self::Internal(_) => &messages::INTERNAL,
        }
    }

    /// Returns the envelope in `lang`.
    pub fn envelope(&self, lang: Lang) -> ErrorEnvelope {
        ErrorEnvelope {
            code: self.status().as_u16(),
            error: self.code().to_owned(),
            message: messages::with_detail(self.title(), lang, &self.to_string()),
            field: match self {
                Self::BadRequest { field, .. } => Some(field.clone()),
                _ => None,
            },
            data: None,
        }
    }

    /// Renders the error as a response in `lang`, with `Retry-After` on 429 and 503 and
    /// `WWW-Authenticate` on 401.
    pub fn to_response(&self, lang: Lang) -> Response {
        let body = self
            .envelope(lang)
            .to_json()
            .expect("an object always converts to JSON");
        let mut response = poem::web::Json(body)
            .with_status(self.status())
            .into_response();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    /// Classifies any error an endpoint returned: an `ApiError` as it is, poem's and
    /// poem-openapi's errors by their kind, anything else by its status.
    ///
    /// `request` (method and path) is named in a 404 or 405, and `body_limit`
    /// (`server.max_body_bytes`) in a 413.
    pub fn from_poem(error: &poem::Error, request: &str, body_limit: usize) -> Self {
        if let Some(api) = error.downcast_ref::<ApiError>() {
            return api.clone();
        }
        if let Some(param) = error.downcast_ref::<ParseParamError>() {
            return Self::bad_request(param.name, param.reason.clone());
        }
        if let Some(path) = error.downcast_ref::<ParsePathError>() {
            return Self::bad_request(path.name, path.reason.clone());
        }
        if let Some(payload) = error.downcast_ref::<ParseRequestPayloadError>() {
            return Self::bad_request("body", payload.reason.clone());
        }
        if let Some(content_type) = error.downcast_ref::<ContentTypeError>() {
            return Self::UnsupportedMediaType(format!(
                "{content_type}; send the body as application/json"
            ));
        }
        if error.is::<AuthorizationError>() {
            return Self::Unauthorized(AuthError::Missing);
        }
        if let Some(read) = error.downcast_ref::<ReadBodyError>() {
            return match read {
                ReadBodyError::PayloadTooLarge => Self::PayloadTooLarge { limit: body_limit },
                other => Self::bad_request("body", other.to_string()),
            };
        }
        if error.is::<NotFoundError>() {
            return Self::RouteNotFound(request.to_owned());
        }
        if error.is::<MethodNotAllowedError>() {
            return Self::MethodNotAllowed(request.to_owned());
        }
        match error.status() {
            StatusCode::BAD_REQUEST => Self::bad_request("request", error.to_string()),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(AuthError::Missing),
            StatusCode::NOT_FOUND => Self::RouteNotFound(request.to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(request.to_owned()),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: body_limit },
            _ => Self::Internal(error.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }
}

/// The envelope of every error response.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    /// The HTTP status.
    pub code: u16,
    /// The specific error code: the status, or a refinement such as `404-GROUP`,
    /// `404-CLUSTER`, `404-HOST`, `404-DATACENTER`, `404-ALERT` or `404-ROUTE`.
    pub error: String,
    /// The failure, in the language `Accept-Language` selects.
    pub message: String,
    /// The parameter or body field at fault, on 400 only.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// Always null on errors.
    pub data: Option<serde_json::Value>,
}

/// One documented error status.
struct ErrorStatus {
    status: u16,
    description: &'static str,
}

const ERROR_STATUSES: &[ErrorStatus] = &[
    ErrorStatus {
        status: 400,
        description: "A parameter or body field is missing or malformed; `field` names it.",
    },
    ErrorStatus {
        status: 401,
        description: "The bearer token is missing, malformed, expired or not signed by the \
                      configured key.",
    },
    ErrorStatus {
        status: 403,
        description: "The token's role lacks the permission this operation needs.",
    },
    ErrorStatus {
        status: 404,
        description: "The ID names nothing. `error` is `404` for a VM, `404-GROUP`, \
                      `404-CLUSTER`, `404-HOST`, `404-DATACENTER` or `404-ALERT` for the others.",
    },
    ErrorStatus {
        status: 413,
        description: "The body is larger than `server.max_body_bytes`.",
    },
    ErrorStatus {
        status: 415,
        description: "The body is not sent as `application/json`.",
    },
    ErrorStatus {
        status: 429,
        description: "The token's subject exceeded its request rate; `Retry-After` gives the \
                      seconds to wait.",
    },
    ErrorStatus {
        status: 500,
        description: "The service failed, for example while reading the history store.",
    },
    ErrorStatus {
        status: 503,
        description: "No real-time data: no collection cycle succeeded in the last three \
                      intervals and no data (collected or restored from the store) is held.",
    },
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let responses = ERROR_STATUSES
            .iter()
            .map(|error| MetaResponse {
                description: error.description,
                status: Some(error.status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/json; charset=utf-8",
                    schema: ErrorEnvelope::schema_ref(),
                }],
                headers: if matches!(error.status, 429 | 503) {
                    vec![MetaHeader {
                        name: "Retry-After".to_owned(),
                        description: Some("Seconds to wait before retrying.".to_owned()),
                        required: error.status == 429,
                        deprecated: false,
                        schema: <u64 as Type>::schema_ref(),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ErrorEnvelope::register(registry);
    }
}
