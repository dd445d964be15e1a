//! The route table: every endpoint of the server, once.
//!
//! Both the axum router ([`router`]) and the OpenAPI document
//! (`super::openapi`) are built from [`endpoints`], so adding an endpoint is
//! one new row here. The row's [`Operation`] states its query parameters,
//! body, success status and error statuses; the module comment of
//! `super::openapi` says where the schemas go.

use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::json;

use super::openapi::{Operation, requests, responses};
use super::{SharedState, admin, connectivity, internal, keys, metrics, openapi, routes};

/// Authentication of an endpoint's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// An SDK-HMAC-SHA256 signature with an API key (`auth::require_signature`).
    Signature,
    /// The bearer token of a connector's nodes (`internal::authorize`).
    NodeToken,
    /// None: health, metrics and this description.
    None,
}

/// One endpoint: method, path, handler and description.
pub struct Endpoint {
    pub method: Method,
    /// axum path template, which is also the OpenAPI one: `{name}` segments.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// Builds the method router of the handler for the filter of `method`.
    pub handler: fn(MethodFilter) -> MethodRouter<SharedState>,
    pub doc: fn() -> Operation,
}

const INSTANCES: &str = "Instances";
const CONNECTOR: &str = "Smart Connect";
const TASKS: &str = "Smart Connect tasks";
const JOBS: &str = "Background tasks";
const ADMIN: &str = "Admin";
const SERVICE: &str = "Service";
const NODES: &str = "Nodes";

/// Returns the route table.
pub fn endpoints() -> Vec<Endpoint> {
    use Auth::{NodeToken, Signature};
    vec![
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances",
            operation_id: "ListInstances",
            tag: INSTANCES,
            summary: "List the instances of the project.",
            auth: Signature,
            handler: |m| on(m, routes::instance_list),
            doc: || {
                Operation::json(responses::instance_list())
                    .query(requests::instance_list_query())
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}",
            operation_id: "ShowInstance",
            tag: INSTANCES,
            summary: "Show an instance with its connector fields.",
            auth: Signature,
            handler: |m| on(m, routes::instance_show),
            doc: || Operation::json(responses::instance()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::POST,
            path: "/v2/{project_id}/instances/{instance_id}/connector",
            operation_id: "CreateConnector",
            tag: CONNECTOR,
            summary: "Enable Smart Connect: start connector nodes in a background task.",
            auth: Signature,
            handler: |m| on(m, routes::connector_create),
            doc: || {
                Operation::json(responses::connector_created())
                    .body(requests::connector_request(), false)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/connector",
            operation_id: "ShowConnectorResourceInfo",
            tag: CONNECTOR,
            summary: "Tell whether the resources of Smart Connect are sold out (never).",
            auth: Signature,
            handler: |m| on(m, routes::connector_resources),
            doc: || Operation::json(responses::connector_resources()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::POST,
            path: "/v2/{project_id}/kafka/instances/{instance_id}/delete-connector",
            operation_id: "DeleteConnector",
            tag: CONNECTOR,
            summary: "Disable Smart Connect: stop the nodes in a background task.",
            auth: Signature,
            handler: |m| on(m, routes::connector_delete),
            doc: || {
                Operation::json(responses::connector_deleted())
                    .describe("Every task must be deleted first. A body is accepted and ignored.")
                    .body(json!({ "description": "Ignored." }), false)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::POST,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks",
            operation_id: "CreateConnectorTask",
            tag: TASKS,
            summary: "Create a Smart Connect task.",
            auth: Signature,
            handler: |m| on(m, routes::task_create),
            doc: || {
                Operation::json(responses::task())
                    .body(requests::task_request(), true)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks",
            operation_id: "ListConnectorTasks",
            tag: TASKS,
            summary: "List the Smart Connect tasks of an instance.",
            auth: Signature,
            handler: |m| on(m, routes::task_list),
            doc: || {
                Operation::json(responses::task_list())
                    .query(requests::task_list_query())
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}",
            operation_id: "ShowConnectorTask",
            tag: TASKS,
            summary: "Show a Smart Connect task.",
            auth: Signature,
            handler: |m| on(m, routes::task_show),
            doc: || Operation::json(responses::task()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::PUT,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}",
            operation_id: "ModifyConnectorTask",
            tag: TASKS,
            summary: "Replace the fields of a paused or waiting task.",
            auth: Signature,
            handler: |m| on(m, routes::task_modify),
            doc: || {
                Operation::json(responses::task())
                    .describe("The name cannot change; absent access_key and secret_key keep their stored values.")
                    .body(requests::task_modify_request(), true)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::DELETE,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}",
            operation_id: "DeleteConnectorTask",
            tag: TASKS,
            summary: "Delete a Smart Connect task.",
            auth: Signature,
            handler: |m| on(m, routes::task_delete),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::PUT,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}/pause",
            operation_id: "PauseConnectorTask",
            tag: TASKS,
            summary: "Pause a task.",
            auth: Signature,
            handler: |m| on(m, routes::task_pause),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::PUT,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}/resume",
            operation_id: "ResumeConnectorTask",
            tag: TASKS,
            summary: "Resume a paused task where it stopped.",
            auth: Signature,
            handler: |m| on(m, routes::task_resume),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::PUT,
            path: "/v2/{project_id}/instances/{instance_id}/connector/tasks/{task_id}/restart",
            operation_id: "RestartSmartConnectorTask",
            tag: TASKS,
            summary: "Start a waiting task, or restart a task from its consumer_strategy.",
            auth: Signature,
            handler: |m| on(m, routes::task_restart),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::PUT,
            path: "/v2/{project_id}/kafka/instances/{instance_id}/connector/tasks/{task_id}/restart",
            operation_id: "RestartConnectorTask",
            tag: TASKS,
            summary: "Start or restart a task (the path terraform uses).",
            auth: Signature,
            handler: |m| on(m, routes::task_restart),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/tasks",
            operation_id: "ListBackgroundTasks",
            tag: JOBS,
            summary: "List the background tasks of an instance.",
            auth: Signature,
            handler: |m| on(m, routes::job_list),
            doc: || {
                Operation::json(responses::job_list())
                    .query(requests::job_list_query())
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/tasks/{job_id}",
            operation_id: "ShowBackgroundTask",
            tag: JOBS,
            summary: "Show a background task.",
            auth: Signature,
            handler: |m| on(m, routes::job_show),
            doc: || Operation::json(responses::job_list()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/v2/{project_id}/instances/{instance_id}/tasks/{job_id}",
            operation_id: "DeleteBackgroundTask",
            tag: JOBS,
            summary: "Delete the record of a finished background task.",
            auth: Signature,
            handler: |m| on(m, routes::job_delete),
            doc: || Operation::no_content().errors(&[400, 404]),
        },
        Endpoint {
            method: Method::GET,
            path: "/v2/{project_id}/instances/{instance_id}/tasks/{job_id}/progress",
            operation_id: "ShowBackgroundTaskProgress",
            tag: JOBS,
            summary: "Show the steps of a background task.",
            auth: Signature,
            handler: |m| on(m, routes::job_progress),
            doc: || Operation::json(responses::job_progress()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::POST,
            path: "/v2/{project_id}/instances/{instance_id}/connector/validate",
            operation_id: "ValidateConnectorConnectivity",
            tag: CONNECTOR,
            summary: "Check that the peer of a replication task is reachable and accepts its credentials; creates nothing.",
            auth: Signature,
            handler: |m| on(m, connectivity::validate_connectivity),
            doc: || {
                Operation::json(responses::empty_object())
                    .body(requests::validate_request(), true)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::POST,
            path: "/admin/v1/keys",
            operation_id: "CreateKey",
            tag: ADMIN,
            summary: "Create an API key for a project; the response is the only one that contains its secret (admin keys only).",
            auth: Signature,
            handler: |m| on(m, keys::key_create),
            doc: || {
                Operation::json(responses::key_created())
                    .body(requests::create_key_request(), true)
                    .errors(&[400, 403])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/admin/v1/keys",
            operation_id: "ListKeys",
            tag: ADMIN,
            summary: "List API keys without their secrets, of one project or of all (admin keys only).",
            auth: Signature,
            handler: |m| on(m, keys::key_list),
            doc: || {
                Operation::json(responses::key_list())
                    .query(requests::key_list_query())
                    .errors(&[400, 403])
            },
        },
        Endpoint {
            method: Method::DELETE,
            path: "/admin/v1/keys/{access_key}",
            operation_id: "RevokeKey",
            tag: ADMIN,
            summary: "Revoke an API key; the last admin key cannot be revoked (admin keys only).",
            auth: Signature,
            handler: |m| on(m, keys::key_revoke),
            doc: || Operation::no_content().errors(&[400, 403, 404]),
        },
        Endpoint {
            method: Method::POST,
            path: "/admin/v1/instances",
            operation_id: "AddInstance",
            tag: ADMIN,
            summary: "Register a Kafka cluster as an instance of the key's project.",
            auth: Signature,
            handler: |m| on(m, admin::instance_add),
            doc: || {
                Operation::json(responses::instance_added())
                    .body(requests::add_instance_request(), true)
                    .errors(&[400, 403])
            },
        },
        Endpoint {
            method: Method::GET,
            path: "/admin/v1/instances/{instance_id}/connector/node-token",
            operation_id: "ShowNodeToken",
            tag: ADMIN,
            summary: "Show the token that nodes of the instance's connector authenticate with.",
            auth: Signature,
            handler: |m| on(m, admin::node_token),
            doc: || Operation::json(responses::node_token()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::POST,
            path: "/internal/v1/connectors/{connector_id}/nodes",
            operation_id: "RegisterNode",
            tag: NODES,
            summary: "Register a node of a connector.",
            auth: NodeToken,
            handler: |m| on(m, internal::node_register),
            doc: || {
                Operation::json(responses::node_registered())
                    .body(requests::register_request(), true)
                    .errors(&[400, 404, 409])
            },
        },
        Endpoint {
            method: Method::POST,
            path: "/internal/v1/connectors/{connector_id}/nodes/{node_id}/heartbeat",
            operation_id: "NodeHeartbeat",
            tag: NODES,
            summary: "Report a node's tasks and get the connector's work.",
            auth: NodeToken,
            handler: |m| on(m, internal::node_heartbeat),
            doc: || {
                Operation::json(responses::node_assignment())
                    .body(requests::heartbeat_request(), true)
                    .errors(&[400, 404])
            },
        },
        Endpoint {
            method: Method::POST,
            path: "/internal/v1/connectors/{connector_id}/nodes/{node_id}/deregister",
            operation_id: "DeregisterNode",
            tag: NODES,
            summary: "Remove a node that is stopping.",
            auth: NodeToken,
            handler: |m| on(m, internal::node_deregister),
            doc: || Operation::json(responses::empty_object()).errors(&[400, 404]),
        },
        Endpoint {
            method: Method::GET,
            path: "/healthz",
            operation_id: "Health",
            tag: SERVICE,
            summary: "Answer `ok` while the server runs.",
            auth: Auth::None,
            handler: |m| on(m, metrics::health),
            doc: || Operation::text("text/plain"),
        },
        Endpoint {
            method: Method::GET,
            path: "/metrics",
            operation_id: "Metrics",
            tag: SERVICE,
            summary: "Prometheus metrics summed from the nodes' reports.",
            auth: Auth::None,
            handler: |m| on(m, metrics::metrics),
            doc: || Operation::text("text/plain"),
        },
        Endpoint {
            method: Method::GET,
            path: "/openapi.json",
            operation_id: "OpenApi",
            tag: SERVICE,
            summary: "This OpenAPI description.",
            auth: Auth::None,
            handler: |m| on(m, openapi::serve_document),
            doc: || Operation::json(json!({ "type": "object" })),
        },
    ]
}

/// Builds the router of the endpoints of one [`Auth`] kind.
pub fn router(auth: Auth) -> axum::Router<SharedState> {
    endpoints()
        .into_iter()
        .filter(|endpoint| endpoint.auth == auth)
        .fold(axum::Router::new(), |router, endpoint| {
            let filter = MethodFilter::try_from(endpoint.method.clone())
                .unwrap_or_else(|e| panic!("{} {}: {e}", endpoint.method, endpoint.path));
            router.route(endpoint.path, (endpoint.handler)(filter))
        })
}
