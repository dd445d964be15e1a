//! Tests of the document against the router built from the same table, and
//! of real responses against the documented schemas.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::check::problems;
use super::{build, document, path_parameter_doc, path_parameters};
use crate::config::Config;
use crate::server::endpoints::{Auth, endpoints};
use crate::server::{AppState, SharedState, app};
use crate::sign::Signer;
use crate::store::{Connector, ConnectorOutcome, Instance, Store, now_ms};

const ACCESS_KEY: &str = "TESTACCESSKEY";
const SECRET_KEY: &str = "TESTSECRETKEY0123456789";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const UNKNOWN_PATH: &str = "The requested URL does not exist.";

struct Server {
    app: Router,
    state: SharedState,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            Store::open(dir.path(), |_| Ok(crate::crypto::Cipher::ephemeral())).expect("store");
        store
            .insert_key(ACCESS_KEY, SECRET_KEY, PROJECT, true, "test")
            .expect("key");
        let state = Arc::new(AppState {
            config: Config::default(),
            store,
            public_url: "http://127.0.0.1:8780".to_string(),
            data_dir: dir.path().to_path_buf(),
            hostname: "test".to_string(),
        });
        Self {
            app: app(Arc::clone(&state)),
            state,
            _dir: dir,
        }
    }

    /// Sends a request, signed with the test key when `signed`.
    async fn send(&self, method: Method, target: &str, body: &[u8], signed: bool) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_string(), value.to_string())
            })
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8780"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-project-id", HeaderValue::from_static(PROJECT));
        if signed {
            Signer::new(ACCESS_KEY, SECRET_KEY)
                .sign(&method, path, &pairs, &mut headers, body)
                .expect("signing");
        }
        self.send_with(method, target, headers, body).await
    }

    async fn send_with(
        &self,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: &[u8],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .body(Body::from(body.to_vec()))
            .expect("request");
        *request.headers_mut() = headers;
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// Replaces every `{name}` segment of a path template with `value`.
fn fill(path: &str, value: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn is_fallback(reply: &Reply) -> bool {
    (reply.status == StatusCode::NOT_FOUND && reply.body["error_msg"] == UNKNOWN_PATH)
        || reply.status == StatusCode::METHOD_NOT_ALLOWED
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let server = Server::start();
    for endpoint in endpoints() {
        let target = fill(endpoint.path, "00000000-0000-0000-0000-000000000000");
        let reply = server
            .send(endpoint.method.clone(), &target, b"", false)
            .await;
        let what = format!("{} {}", endpoint.method, endpoint.path);
        assert!(!is_fallback(&reply), "{what} is not routed: {}", reply.body);
        match endpoint.auth {
            Auth::Signature => assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}"),
            Auth::NodeToken => assert!(reply.status.is_client_error(), "{what}"),
            Auth::None => assert_eq!(reply.status, StatusCode::OK, "{what}"),
        }
    }
}

#[tokio::test]
async fn undocumented_methods_are_not_routed() {
    let server = Server::start();
    let paths = document()["paths"].as_object().expect("paths");
    for (path, item) in paths {
        let target = fill(path, "00000000-0000-0000-0000-000000000000");
        let documented: BTreeSet<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if documented.contains(method.as_str()) {
                continue;
            }
            let reply = server.send(method.clone(), &target, b"", false).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answered {}: {}",
                reply.status,
                reply.body
            );
            assert_eq!(reply.body["error_code"], "DMS.00405001", "{method} {path}");
        }
    }
}

#[test]
fn table_and_document_list_the_same_operations() {
    let table: BTreeSet<(String, String)> = endpoints()
        .iter()
        .map(|e| (e.path.to_string(), e.method.as_str().to_lowercase()))
        .collect();
    assert_eq!(
        table.len(),
        endpoints().len(),
        "duplicate rows in the table"
    );
    let mut described = BTreeSet::new();
    for (path, item) in document()["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            described.insert((path.clone(), method.clone()));
        }
    }
    assert_eq!(table, described);
}

#[test]
fn operation_ids_are_unique() {
    let mut seen = BTreeSet::new();
    for endpoint in endpoints() {
        assert!(
            seen.insert(endpoint.operation_id),
            "{} twice",
            endpoint.operation_id
        );
    }
}

#[test]
fn path_parameters_are_known() {
    for endpoint in endpoints() {
        for name in path_parameters(endpoint.path) {
            assert!(
                path_parameter_doc(name).is_some(),
                "{}: describe path parameter {name} in path_parameter_doc",
                endpoint.path
            );
        }
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(document: &Value, value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    let pointer = reference.strip_prefix('#').expect("local reference");
                    assert!(
                        document.pointer(pointer).is_some(),
                        "{at}: {reference} does not resolve"
                    );
                }
                for (key, item) in map {
                    walk(document, item, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(document, item, &format!("{at}/{index}"));
                }
            }
            _ => {}
        }
    }
    let document = build(&endpoints());
    walk(&document, &document, "#");
}

#[test]
fn success_statuses_follow_the_dms_api() {
    let no_content = [
        "DeleteConnectorTask",
        "PauseConnectorTask",
        "ResumeConnectorTask",
        "RestartSmartConnectorTask",
        "RestartConnectorTask",
        "DeleteBackgroundTask",
        "RevokeKey",
    ];
    let document = document();
    for endpoint in endpoints() {
        let operation = &document["paths"][endpoint.path][endpoint.method.as_str().to_lowercase()];
        let responses = operation["responses"].as_object().expect("responses");
        let success: Vec<&String> = responses.keys().filter(|s| s.starts_with('2')).collect();
        let expected = if no_content.contains(&endpoint.operation_id) {
            "204"
        } else {
            "200"
        };
        assert_eq!(success, [expected], "{}", endpoint.operation_id);
        if expected == "204" {
            assert!(responses["204"].get("content").is_none());
        }
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{} {status}",
                    endpoint.operation_id
                );
            }
        }
    }
}

#[test]
fn signed_operations_declare_the_signature_scheme() {
    let document = document();
    let scheme = &document["components"]["securitySchemes"]["sdkHmacSha256"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
    for endpoint in endpoints() {
        let operation = &document["paths"][endpoint.path][endpoint.method.as_str().to_lowercase()];
        let expected = match endpoint.auth {
            Auth::Signature => json!([{ "sdkHmacSha256": [] }]),
            Auth::NodeToken => json!([{ "nodeToken": [] }]),
            Auth::None => json!([]),
        };
        assert_eq!(operation["security"], expected, "{}", endpoint.operation_id);
    }
}

#[test]
fn request_enums_are_the_ones_the_sink_accepts() {
    use crate::server::validate::{PARTITION_FORMATS, RECORD_DELIMITERS};
    use crate::sink::obs::encode::record_delimiter_bytes;
    use crate::sink::obs::naming::PartitionFormat;
    for format in PARTITION_FORMATS {
        assert!(PartitionFormat::parse(format).is_some(), "{format}");
    }
    for delimiter in RECORD_DELIMITERS {
        assert!(record_delimiter_bytes(delimiter).is_some(), "{delimiter:?}");
    }
}

/// Returns the schema of the success response of an operation.
fn success_schema<'a>(document: &'a Value, operation_id: &str) -> (&'a str, &'a Value) {
    for endpoint in endpoints() {
        if endpoint.operation_id != operation_id {
            continue;
        }
        let operation = &document["paths"][endpoint.path][endpoint.method.as_str().to_lowercase()];
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            if status.starts_with('2') {
                let schema = &response["content"]["application/json"]["schema"];
                return (status.as_str(), schema);
            }
        }
    }
    panic!("no operation {operation_id}");
}

/// Checks a reply against the documented success status and schema.
fn assert_documented(operation_id: &str, reply: &Reply) {
    let document = document();
    let (status, schema) = success_schema(document, operation_id);
    assert_eq!(
        reply.status.as_str(),
        status,
        "{operation_id}: {}",
        reply.body
    );
    assert!(
        reply.headers.contains_key("x-request-id"),
        "{operation_id}: no X-Request-Id"
    );
    if status == "204" {
        assert!(reply.body.is_null(), "{operation_id}: 204 with a body");
        return;
    }
    if schema.is_null() {
        return;
    }
    let found = problems(document, schema, &reply.body);
    assert!(
        found.is_empty(),
        "{operation_id} does not match its schema:\n{}\nbody: {}",
        found.join("\n"),
        reply.body
    );
}

/// Registers an instance with a running connector, as a finished create job leaves it.
fn instance_with_connector(state: &AppState) -> (String, Connector) {
    let instance = Instance {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: PROJECT.to_string(),
        name: "kafka-1".to_string(),
        bootstrap_servers: "127.0.0.1:9092".to_string(),
        specification: "100MB".to_string(),
        broker_num: 1,
        security: Default::default(),
        status: "RUNNING".to_string(),
        created_at: now_ms(),
    };
    state.store.insert_instance(&instance).expect("instance");
    let connector = Connector {
        id: uuid::Uuid::new_v4().to_string(),
        instance_id: instance.id.clone(),
        node_cnt: 2,
        specification: "100MB".to_string(),
        spec_code: None,
        token: "node-token".to_string(),
        state: "creating".to_string(),
        created_at: now_ms(),
    };
    let mut job = crate::server::jobs::new_job(
        &instance.id,
        crate::server::jobs::CREATE_CONNECTOR,
        json!({ "connector_id": connector.id }),
    );
    state
        .store
        .begin_create_connector(&connector, &job)
        .expect("connector");
    job.status = "SUCCESS".to_string();
    state
        .store
        .finish_connector_job(&job, &connector.id, ConnectorOutcome::Running)
        .expect("finish");
    (instance.id, connector)
}

fn task_body(name: &str) -> Vec<u8> {
    json!({
        "task_name": name,
        "topics": "orders, payments",
        "start_later": true,
        "source_type": "NONE",
        "sink_type": "OBS_SINK",
        "sink_task": {
            "obs_bucket_name": "bucket-1",
            "obs_path": "dump/orders",
            "access_key": "AK",
            "secret_key": "SK",
            "agency_name": "agency",
            "obs_endpoint": "http://127.0.0.1:9000",
        },
    })
    .to_string()
    .into_bytes()
}

/// Sends a node request with the connector's bearer token.
async fn node_call(server: &Server, target: &str, body: Value) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer node-token"),
    );
    server
        .send_with(Method::POST, target, headers, body.to_string().as_bytes())
        .await
}

#[tokio::test]
async fn responses_match_their_schemas() {
    let server = Server::start();
    let (instance_id, connector) = instance_with_connector(&server.state);
    let base = format!("/v2/{PROJECT}/instances/{instance_id}");
    let seen = RefCell::new(BTreeSet::new());
    let call = async |id: &'static str, method: Method, target: String, body: &[u8]| {
        let reply = server.send(method, &target, body, true).await;
        assert_documented(id, &reply);
        seen.borrow_mut().insert(id);
        reply
    };

    call(
        "ListInstances",
        Method::GET,
        format!("/v2/{PROJECT}/instances?engine=kafka"),
        b"",
    )
    .await;
    call("ShowInstance", Method::GET, base.clone(), b"").await;
    call(
        "ShowConnectorResourceInfo",
        Method::GET,
        format!("{base}/connector"),
        b"",
    )
    .await;
    let created = call(
        "CreateConnectorTask",
        Method::POST,
        format!("{base}/connector/tasks"),
        &task_body("dump-1"),
    )
    .await;
    let task_id = created.body["id"].as_str().expect("task id").to_string();
    let regex_task = json!({
        "task_name": "dump-2",
        "topics_regex": "orders-.*",
        "sink_type": "OBS_SINK",
        "sink_task": { "obs_bucket_name": "bucket-1" },
    });
    let regex = call(
        "CreateConnectorTask",
        Method::POST,
        format!("{base}/connector/tasks"),
        regex_task.to_string().as_bytes(),
    )
    .await;
    let regex_id = regex.body["id"].as_str().expect("task id").to_string();
    let task = format!("{base}/connector/tasks/{task_id}");
    call(
        "ListConnectorTasks",
        Method::GET,
        format!("{base}/connector/tasks?offset=0&limit=10"),
        b"",
    )
    .await;
    call("ShowConnectorTask", Method::GET, task.clone(), b"").await;
    call(
        "PauseConnectorTask",
        Method::PUT,
        format!("{task}/pause"),
        b"",
    )
    .await;
    call(
        "ModifyConnectorTask",
        Method::PUT,
        task.clone(),
        &task_body("dump-1"),
    )
    .await;
    call(
        "ResumeConnectorTask",
        Method::PUT,
        format!("{task}/resume"),
        b"",
    )
    .await;
    call(
        "RestartSmartConnectorTask",
        Method::PUT,
        format!("{task}/restart"),
        b"",
    )
    .await;
    let kafka_task =
        format!("/v2/{PROJECT}/kafka/instances/{instance_id}/connector/tasks/{task_id}");
    call(
        "RestartConnectorTask",
        Method::PUT,
        format!("{kafka_task}/restart"),
        b"",
    )
    .await;

    let jobs = call(
        "ListBackgroundTasks",
        Method::GET,
        format!("{base}/tasks?start=1&limit=10&begin_time=20200101000000"),
        b"",
    )
    .await;
    let job_id = jobs.body["tasks"][0]["id"]
        .as_str()
        .expect("job id")
        .to_string();
    call(
        "ShowBackgroundTask",
        Method::GET,
        format!("{base}/tasks/{job_id}"),
        b"",
    )
    .await;
    call(
        "ShowBackgroundTaskProgress",
        Method::GET,
        format!("{base}/tasks/{job_id}/progress"),
        b"",
    )
    .await;
    call(
        "ShowNodeToken",
        Method::GET,
        format!("/admin/v1/instances/{instance_id}/connector/node-token"),
        b"",
    )
    .await;

    let nodes = format!("/internal/v1/connectors/{}/nodes", connector.id);
    let registered = node_call(
        &server,
        &nodes,
        json!({ "pid": 7, "host": "test", "version": "0.1.0", "slot": 0 }),
    )
    .await;
    assert_documented("RegisterNode", &registered);
    seen.borrow_mut().insert("RegisterNode");
    let node_id = registered.body["node_id"]
        .as_str()
        .expect("node id")
        .to_string();
    let report = json!({
        "tasks": [{
            "task_id": task_id, "generation": 1, "state": "running", "error": null,
            "assigned_partitions": 2, "records_read": 1, "bytes_read": 1, "records_written": 1,
            "bytes_written": 1, "objects_written": 1, "objects_adopted": 0, "upload_retries": 0,
            "open_chunk_bytes": 0,
        }],
        "rss_bytes": 1, "buffered_bytes": 0,
    });
    let assignment = node_call(&server, &format!("{nodes}/{node_id}/heartbeat"), report).await;
    assert_documented("NodeHeartbeat", &assignment);
    seen.borrow_mut().insert("NodeHeartbeat");
    call("ShowInstance", Method::GET, base.clone(), b"").await;
    call("ShowConnectorTask", Method::GET, task.clone(), b"").await;
    let deregistered =
        node_call(&server, &format!("{nodes}/{node_id}/deregister"), json!({})).await;
    assert_documented("DeregisterNode", &deregistered);
    seen.borrow_mut().insert("DeregisterNode");

    call("DeleteConnectorTask", Method::DELETE, task.clone(), b"").await;
    call(
        "DeleteConnectorTask",
        Method::DELETE,
        format!("{base}/connector/tasks/{regex_id}"),
        b"",
    )
    .await;
    call(
        "DeleteBackgroundTask",
        Method::DELETE,
        format!("{base}/tasks/{job_id}"),
        b"",
    )
    .await;
    call(
        "DeleteConnector",
        Method::POST,
        format!("/v2/{PROJECT}/kafka/instances/{instance_id}/delete-connector"),
        b"",
    )
    .await;
    let added = call(
        "AddInstance",
        Method::POST,
        "/admin/v1/instances".to_string(),
        br#"{"name": "kafka-2", "bootstrap_servers": "127.0.0.1:9092"}"#,
    )
    .await;
    let other = added.body["instance_id"]
        .as_str()
        .expect("instance id")
        .to_string();
    call(
        "CreateConnector",
        Method::POST,
        format!("/v2/{PROJECT}/instances/{other}/connector"),
        br#"{"node_cnt": "3"}"#,
    )
    .await;
    for (id, target) in [
        ("Health", "/healthz"),
        ("Metrics", "/metrics"),
        ("OpenApi", "/openapi.json"),
    ] {
        let reply = server.send(Method::GET, target, b"", false).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}");
        seen.borrow_mut().insert(id);
    }
    // Every endpoint of this version has a sample request. An endpoint added
    // without one is checked by the schemathesis run only.
    let sampled = seen.borrow().len();
    assert!(sampled >= 25, "only {sampled} operations were sampled");
}

#[tokio::test]
async fn errors_match_the_error_schema() {
    let server = Server::start();
    let document = document();
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let bad_utf8 = format!("/v2/{PROJECT}/instances/%FF");
    let cases: [(Method, &str, &[u8], bool); 6] = [
        (Method::GET, "/v2/p/instances", b"", false),
        (Method::GET, "/no-such-path", b"", true),
        (Method::DELETE, "/healthz", b"", false),
        (Method::GET, &bad_utf8, b"", true),
        (Method::POST, "/admin/v1/instances", b"[[[[", true),
        (
            Method::POST,
            "/internal/v1/connectors/c/nodes",
            b"{\"pid\": -1}",
            false,
        ),
    ];
    for (method, target, body, signed) in cases {
        let reply = server.send(method.clone(), target, body, signed).await;
        assert!(
            reply.status.is_client_error(),
            "{method} {target}: {}",
            reply.status
        );
        let found = problems(document, &error, &reply.body);
        assert!(
            found.is_empty(),
            "{method} {target}: {found:?} in {}",
            reply.body
        );
    }
}
