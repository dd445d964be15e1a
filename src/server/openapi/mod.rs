//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`.
//!
//! The document is built from the route table in `super::endpoints`, the same
//! table that builds the axum router, so a route cannot exist without its
//! description or the other way round. The tests in `tests.rs` check both
//! directions against the real router. Each table row names its method, path, handler
//! and an [`Operation`]: the query parameters, the request body schema, the
//! success status with its schema, and the error statuses. Path parameters
//! come from the path template itself.
//!
//! The schemas are `serde_json` values built by hand in [`requests`] and
//! [`responses`], not derived with `utoipa`. The request checks in
//! `validate.rs` work on untyped JSON maps because the DMS API is lax in ways
//! that derived types cannot state: `node_cnt` is a number or a numeric
//! string, `null` and `""` mean absent, and errors must name the field in the
//! DMS format. The request schemas take their enums, ranges and patterns from
//! the constants that `validate.rs` checks against, so the two cannot disagree.
//! A unit test sends a request to each endpoint through the router and checks
//! the response against its schema, reporting every undeclared field, so that
//! a new response field fails the tests until it is described.
//!
//! To add an endpoint, add one [`Endpoint`](super::endpoints::Endpoint) row to
//! `super::endpoints::endpoints()`: its handler, its [`Operation`] and, when
//! it has new bodies, their schemas in [`requests`] or [`responses`]. The
//! router, this document, the route tests and the schemathesis run
//! (`tests/integration/test_openapi.py`) pick the row up from there. A sample
//! request in `tests.rs` (`responses_match_their_schemas`) adds the unit check
//! of its response; without one, only the schemathesis run checks it.

pub mod requests;
pub mod responses;

#[cfg(test)]
mod check;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::endpoints::{Auth, Endpoint, endpoints};

/// Name of the security scheme of `/v2` and `/admin` requests.
pub const SIGNATURE_SCHEME: &str = "sdkHmacSha256";
/// Name of the security scheme of the node endpoints.
pub const NODE_TOKEN_SCHEME: &str = "nodeToken";

/// Description of one operation besides its method and path.
#[derive(Debug, Clone)]
pub struct Operation {
    pub description: Option<&'static str>,
    /// Query parameter objects, made with [`query_parameter`].
    pub query: Vec<Value>,
    pub body: Option<RequestBody>,
    pub success: Success,
    /// Error statuses besides the ones every operation of its [`Auth`] kind has.
    pub errors: &'static [u16],
}

#[derive(Debug, Clone)]
pub struct RequestBody {
    pub schema: Value,
    pub required: bool,
}

/// The success response of an operation.
#[derive(Debug, Clone)]
pub enum Success {
    /// A JSON body with this status and schema.
    Json(u16, Value),
    /// 204 with an empty body.
    NoContent,
    /// A 200 text body of this media type.
    Text(&'static str),
}

impl Operation {
    /// Builds an operation that responds 200 with a JSON body of `schema`.
    pub fn json(schema: Value) -> Self {
        Self::new(Success::Json(200, schema))
    }

    /// Builds an operation that responds 204 with an empty body.
    pub fn no_content() -> Self {
        Self::new(Success::NoContent)
    }

    /// Builds an operation that responds 200 with a text body of `media_type`.
    pub fn text(media_type: &'static str) -> Self {
        Self::new(Success::Text(media_type))
    }

    fn new(success: Success) -> Self {
        Self {
            description: None,
            query: Vec::new(),
            body: None,
            success,
            errors: &[],
        }
    }

    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    pub fn query(mut self, parameters: Vec<Value>) -> Self {
        self.query = parameters;
        self
    }

    pub fn body(mut self, schema: Value, required: bool) -> Self {
        self.body = Some(RequestBody { schema, required });
        self
    }

    pub fn errors(mut self, statuses: &'static [u16]) -> Self {
        self.errors = statuses;
        self
    }
}

/// Builds a query parameter object.
pub fn query_parameter(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    })
}

/// Returns a `$ref` to a schema of `components/schemas`.
pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Returns `schema` widened to also accept JSON `null`, which the request
/// checks treat as an absent field.
pub fn or_null(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

/// Error statuses of every operation of an [`Auth`] kind: the signature or
/// token check, the body bounds of `extract::buffer_body`, and internal errors.
fn common_errors(auth: Auth) -> &'static [u16] {
    match auth {
        Auth::Signature => &[401, 408, 413, 500],
        Auth::NodeToken => &[401, 408, 410, 413, 500],
        Auth::None => &[],
    }
}

/// Returns the document, built on first use.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| build(&endpoints()))
}

/// Serves `GET /openapi.json`.
pub async fn serve_document() -> Json<&'static Value> {
    Json(document())
}

fn build(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let item = paths
            .entry(endpoint.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(endpoint.method.as_str().to_lowercase(), operation(endpoint));
        }
    }
    let mut schemas = requests::components();
    schemas.extend(responses::components());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weir",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Smart Connect part of the Huawei Cloud DMS for Kafka v2 API, served by Weir, plus its admin and node endpoints. Error responses carry {\"error_code\", \"error_msg\"}; every response carries X-Request-Id.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": {
                "RequestId": {
                    "description": "Identifier of the request: the client's X-Request-Id when it sent one of 1 to 128 characters, a new one otherwise.",
                    "required": true,
                    "schema": { "type": "string", "minLength": 1 },
                },
            },
            "securitySchemes": {
                SIGNATURE_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "SDK-HMAC-SHA256 request signature, as the Huawei Cloud SDKs compute it: `SDK-HMAC-SHA256 Access=AK, SignedHeaders=h1;h2, Signature=HEX`, where HEX is the HMAC-SHA256, keyed with the SK, of `SDK-HMAC-SHA256\\n{X-Sdk-Date}\\n{hex SHA-256 of the canonical request}`. The canonical request holds the method, the re-encoded path, the sorted query, the signed headers and the hex SHA-256 of the body. X-Sdk-Date (YYYYMMDDTHHMMSSZ) must be within 15 minutes of the server clock.",
                },
                NODE_TOKEN_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Node token of the connector, from GET /admin/v1/instances/{instance_id}/connector/node-token.",
                },
            },
        },
    })
}

fn operation(endpoint: &Endpoint) -> Value {
    let doc = (endpoint.doc)();
    let mut parameters: Vec<Value> = path_parameters(endpoint.path).map(path_parameter).collect();
    parameters.extend(doc.query.iter().cloned());
    let mut op = Map::new();
    op.insert("operationId".into(), Value::from(endpoint.operation_id));
    op.insert("summary".into(), Value::from(endpoint.summary));
    op.insert("tags".into(), json!([endpoint.tag]));
    if let Some(description) = doc.description {
        op.insert("description".into(), Value::from(description));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = &doc.body {
        op.insert(
            "requestBody".into(),
            json!({
                "required": body.required,
                "content": { "application/json": { "schema": body.schema } },
            }),
        );
    }
    op.insert(
        "responses".into(),
        Value::Object(responses_of(endpoint, &doc)),
    );
    let security = match endpoint.auth {
        Auth::Signature => json!([{ SIGNATURE_SCHEME: [] }]),
        Auth::NodeToken => json!([{ NODE_TOKEN_SCHEME: [] }]),
        Auth::None => json!([]),
    };
    op.insert("security".into(), security);
    Value::Object(op)
}

fn responses_of(endpoint: &Endpoint, doc: &Operation) -> Map<String, Value> {
    let request_id = json!({ "X-Request-Id": { "$ref": "#/components/headers/RequestId" } });
    let mut responses = Map::new();
    let (status, content) = match &doc.success {
        Success::Json(status, schema) => (
            *status,
            Some(json!({ "application/json": { "schema": schema } })),
        ),
        Success::NoContent => (204, None),
        Success::Text(media_type) => (
            200,
            Some(json!({ *media_type: { "schema": { "type": "string" } } })),
        ),
    };
    let mut success = json!({ "description": reason(status), "headers": request_id });
    if let Some(content) = content {
        success["content"] = content;
    }
    responses.insert(status.to_string(), success);
    let mut errors: Vec<u16> = common_errors(endpoint.auth)
        .iter()
        .chain(doc.errors)
        .copied()
        .collect();
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        responses.insert(
            status.to_string(),
            json!({
                "description": reason(status),
                "headers": request_id,
                "content": { "application/json": { "schema": schema_ref("Error") } },
            }),
        );
    }
    responses
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Response")
}

/// Returns the names of the `{name}` segments of a path template.
pub fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// Builds the parameter object of a path parameter.
fn path_parameter(name: &str) -> Value {
    let (schema, description) =
        path_parameter_doc(name).unwrap_or((json!({ "type": "string" }), "Path parameter."));
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": schema,
    })
}

/// Returns the schema and description of a path parameter, known by its
/// name; a test checks that every name in the route table is known.
fn path_parameter_doc(name: &str) -> Option<(Value, &'static str)> {
    let doc = match name {
        "project_id" => (
            json!({ "type": "string", "minLength": 1 }),
            "Project ID of the signing key.",
        ),
        "instance_id" => (
            json!({ "type": "string", "format": "uuid" }),
            "Instance ID, a UUID.",
        ),
        "task_id" => (
            json!({ "type": "string", "format": "uuid" }),
            "Smart Connect task ID, a UUID.",
        ),
        "job_id" => (
            json!({ "type": "string", "pattern": "^[0-9a-f]{32}$" }),
            "Background task ID, 32 hex digits.",
        ),
        "connector_id" => (
            json!({ "type": "string", "minLength": 1 }),
            "Connector ID, as CreateConnector returned it. An unknown one gets 410, which tells a node to exit.",
        ),
        "node_id" => (
            json!({ "type": "string", "minLength": 1 }),
            "Node ID, as node registration returned it.",
        ),
        "access_key" => (
            json!({ "type": "string", "minLength": 1 }),
            "Access key (AK) of an API key.",
        ),
        _ => return None,
    };
    Some(doc)
}
