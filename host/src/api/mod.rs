//! The REST API: real-time metrics, aggregates, history, alerts, plugin status, health and
//! Prometheus metrics, served with poem and described by poem-openapi.
//!
//! ```no_run
//! # async fn example(
//! #     service: std::sync::Arc<vmpulse::service::Service>,
//! #     auth: std::sync::Arc<vmpulse::auth::Authenticator>,
//! # ) -> Result<(), vmpulse::api::server::ServeError> {
//! let server_config = service.config.server.clone();
//! let routes = vmpulse::api::routes(service, auth);
//! // The WebSocket channel mounts beside the API, outside its bearer-header checks:
//! // let routes = routes.at("/ws/v1/realtime", websocket_endpoint);
//! vmpulse::api::server::serve(routes, &server_config, std::future::pending()).await
//! # }
//! ```
//!
//! Every response is an envelope `{code, message, data}` whose message follows
//! `Accept-Language` (zh, en, ja; `server.default_language` otherwise). Errors add `error`,
//! a specific code such as `404-GROUP`. Everything but `/healthz`, `/docs` and
//! `/openapi.json` needs `Authorization: Bearer <JWT>`; `/metrics` needs it unless
//! `server.metrics_require_token` is false.

use std::sync::Arc;

use poem::{EndpointExt, FromRequest, Request, RequestBody, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::auth::{Authenticator, Permission, Principal};
use crate::collection::now_ms;
use crate::i18n::Lang;
use crate::service::Service;

mod alerts;
mod edge;
mod envelope;
mod error;
mod freshness;
mod history;
mod inventory;
mod messages;
mod operations;
mod prometheus;
mod rate_limit;
mod realtime;
mod security;
pub mod server;

pub use edge::redact_query;
pub use error::{ApiError, Entity, ErrorEnvelope};
pub use rate_limit::RateLimiter;

/// The API's title in the OpenAPI document.
const TITLE: &str = "vmpulse real-time monitoring API";

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
enum ApiTags {
    /// Current metrics of VMs, aggregates and the system overview.
    Realtime,
    /// Stored samples of one VM.
    History,
    /// Alerts raised by rule plugins.
    Alerts,
    /// Plugins, collection, health and Prometheus metrics.
    Operations,
}

/// The state every handler reads: the service, token checks and rate limits.
pub struct ApiState {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    pub limiter: RateLimiter,
    /// When the API was built, in ms since the epoch: the start of the grace period before
    /// `/healthz` reports a collection that never succeeded.
    pub started_at_ms: i64,
}

impl ApiState {
    pub fn new(service: Arc<Service>, auth: Arc<Authenticator>) -> Arc<Self> {
        let limiter = RateLimiter::new(&service.config.server.rate_limit);
        Arc::new(Self {
            service,
            auth,
            limiter,
            started_at_ms: now_ms(),
        })
    }
}

/// The state and the reader's language, extracted in every handler.
pub struct Ctx {
    pub state: Arc<ApiState>,
    pub lang: Lang,
}

impl Ctx {
    /// Fails with 403 unless `principal`'s role grants `permission`.
    pub fn require(&self, principal: &Principal, permission: Permission) -> Result<(), ApiError> {
        if principal.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: principal.role,
                permission,
            })
        }
    }

    pub fn service(&self) -> &Service {
        &self.state.service
    }
}

impl<'a> FromRequest<'a> for Ctx {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = request.data::<Arc<ApiState>>().cloned().ok_or_else(|| {
            ApiError::Internal("the API state is not attached to the route".to_owned())
        })?;
        let lang = request
            .data::<Lang>()
            .copied()
            .unwrap_or(state.service.config.server.default_language);
        Ok(Self { state, lang })
    }
}

type Apis = (
    inventory::InventoryApi,
    realtime::RealtimeApi,
    history::HistoryApi,
    alerts::AlertsApi,
    operations::OperationsApi,
);

/// Builds the OpenAPI service. It has no state: handlers read [`ApiState`] from the
/// request, so the document can be generated without a running service.
fn openapi_service() -> OpenApiService<Apis, ()> {
    let apis = (
        inventory::InventoryApi,
        realtime::RealtimeApi,
        history::HistoryApi,
        alerts::AlertsApi,
        operations::OperationsApi,
    );
    OpenApiService::new(apis, TITLE, env!("CARGO_PKG_VERSION")).description(
        "Real-time metrics of VMware vSphere VMs, their aggregates and alerts.\n\n\
         Every response, errors included, is an envelope `{code, message, data}`: `code` is \
         the HTTP status and `message` is localized by `Accept-Language` (zh, en or ja, \
         otherwise the configured default). Errors add `error`, a specific code such as \
         `404-GROUP`, and on 400 `field`, the parameter at fault.\n\n\
         Requests need `Authorization: Bearer <JWT>` except `/healthz`, `/docs` and \
         `/openapi.json`; `/metrics` needs it unless `server.metrics_require_token` is \
         false. Reading needs the permission `vm:read` (every role); acknowledging alerts \
         and forcing a collection need `vm:write` (admin and operator). Each token subject \
         is rate limited by a token bucket (`server.rate_limit`), and bodies larger than \
         `server.max_body_bytes` are rejected with 413.",
    )
}

/// Returns the OpenAPI document (JSON) of the API, as `/openapi.json` serves it.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// Builds every route of the REST API, the Swagger UI at `/docs` and the document at
/// `/openapi.json`.
///
/// Add the WebSocket channel to the returned route with `.at("/ws/v1/realtime", ...)`: it
/// then stays outside the API's bearer-header checks and error envelopes.
pub fn routes(service: Arc<Service>, auth: Arc<Authenticator>) -> Route {
    let state = ApiState::new(service, auth);
    let api = openapi_service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .nest("/", api.with(edge::Edge::new(state.clone())).data(state))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use poem::http::StatusCode;
    use poem::{Endpoint, Request, handler};

    use super::*;
    use crate::alerts::AlertEngine;
    use crate::config::{AuthConfig, Config};
    use crate::live::LiveState;

    #[handler]
    fn websocket_stand_in() -> &'static str {
        "websocket"
    }

    #[tokio::test]
    async fn route_added_beside_api_is_reached() {
        let config = Config::parse("", Path::new("empty.toml"), Path::new(".")).unwrap();
        let engine = AlertEngine::new(vec![], config.alerts.clone(), None).unwrap();
        let service = Service::new(
            Arc::new(config),
            Arc::new(LiveState::default()),
            None,
            Arc::new(engine),
            vec![],
            vec![],
        );
        let auth = Arc::new(Authenticator::hs256(&[9; 32], &AuthConfig::default()).unwrap());
        let routes = routes(service, auth).at("/ws/v1/realtime", websocket_stand_in);

        let request = Request::builder()
            .uri_str("/ws/v1/realtime?token=x")
            .finish();
        let response = routes.get_response(request).await;
        let health = routes
            .get_response(Request::builder().uri_str("/healthz").finish())
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.into_body().into_string().await.unwrap(),
            "websocket"
        );
        assert_eq!(health.status(), StatusCode::OK);
    }
}
