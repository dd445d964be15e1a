//! Client subcommands: signed calls to the DMS for Kafka v2 API and the admin endpoints
//! of a Weir server.
//!
//! Every verb maps to one HTTP request. Text output is a table or `key: value` lines,
//! and `--output json` prints the response body as the server sent it.

use std::fmt;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use clap::{Args, Subcommand, ValueEnum};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::sign::{Signer, canonical_query};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8780";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters left unencoded in a path parameter. The SDK encodes path parameters with
/// Python's `quote(value, safe='')`, which leaves only these.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Connection and output options shared by every client subcommand.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Client options")]
pub struct ClientOptions {
    /// Base URL of the Weir server.
    #[arg(
        long,
        global = true,
        env = "WEIR_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        value_name = "URL"
    )]
    pub endpoint: String,

    /// Project ID that owns the resources. Every call under /v2 requires it.
    #[arg(
        long,
        global = true,
        env = "WEIR_PROJECT_ID",
        value_name = "PROJECT_ID"
    )]
    pub project: Option<String>,

    /// Access key (AK) that signs the requests.
    #[arg(long, global = true, env = "WEIR_ACCESS_KEY", value_name = "AK")]
    pub ak: Option<String>,

    /// Secret key (SK) that signs the requests.
    #[arg(
        long,
        global = true,
        env = "WEIR_SECRET_KEY",
        hide_env_values = true,
        value_name = "SK"
    )]
    pub sk: Option<String>,

    /// Output format: readable text, or the JSON response body.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Client subcommands, grouped by resource.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register and inspect Kafka instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Enable, inspect and disable Smart Connect on an instance.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Create and control Smart Connect tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Inspect background jobs, which the API calls background tasks.
    #[command(subcommand)]
    Job(JobCommand),
    /// Create, list and revoke API keys (needs an admin key).
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key for the project given by --project and print its secret,
    /// which is shown only once.
    Create(KeyCreateArgs),
    /// List keys, of the --project project when given, else of every project.
    List {
        /// List the keys of every project, even when --project or WEIR_PROJECT_ID is set.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key: requests signed with it are rejected from now on.
    Revoke {
        /// Access key to revoke.
        access_key: String,
    },
}

#[derive(Args, Debug)]
pub struct KeyCreateArgs {
    /// Let the key manage keys too.
    #[arg(long)]
    pub admin: bool,
    /// Free text stored with the key, such as its owner (at most 255 characters).
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum InstanceCommand {
    /// Register a Kafka cluster as an instance and print its ID.
    Add(InstanceAddArgs),
    /// List the instances of the project.
    List(InstanceListArgs),
    /// Show one instance.
    Show {
        /// Instance ID.
        instance: String,
    },
}

#[derive(Args, Debug)]
pub struct InstanceAddArgs {
    /// Instance name.
    #[arg(long)]
    pub name: String,
    /// Kafka bootstrap servers, as a comma-separated host:port list.
    #[arg(long, value_name = "LIST")]
    pub bootstrap_servers: String,
    /// Bandwidth specification, for example 100MB.
    #[arg(long)]
    pub specification: Option<String>,
    /// Number of brokers in the cluster.
    #[arg(long, value_name = "N")]
    pub broker_num: Option<u32>,
    /// Security protocol that nodes use to reach the cluster.
    #[arg(long, value_parser = ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"])]
    pub security_protocol: Option<String>,
    /// SASL mechanism, for example PLAIN or SCRAM-SHA-512.
    #[arg(long)]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long)]
    pub username: Option<String>,
    /// SASL password.
    #[arg(long, env = "WEIR_KAFKA_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Args, Debug)]
pub struct InstanceListArgs {
    /// Show only instances whose name contains this text.
    #[arg(long)]
    pub name: Option<String>,
    /// Number of instances to skip (0-based).
    #[arg(long)]
    pub offset: Option<u32>,
    /// Maximum number of instances to return (1-50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub limit: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCommand {
    /// Enable Smart Connect on an instance.
    Create(ConnectorCreateArgs),
    /// Show the Smart Connect fields of an instance and its connector nodes.
    Show(InstanceArg),
    /// Disable Smart Connect on an instance. Delete its tasks first.
    Delete(InstanceArg),
    /// Print the token that a node started by hand needs to join the connector.
    Token(InstanceArg),
    /// Check that the peer cluster of a replication task is reachable and accepts its
    /// credentials, without creating anything.
    Validate(ConnectorValidateArgs),
}

#[derive(Args, Debug)]
pub struct ConnectorValidateArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// JSON file, or `-` for standard input, with a CreateConnectorTask body of a
    /// KAFKA_REPLICATOR_SOURCE task or a ValidateConnectorConnectivity body
    /// (`{"type": ..., "task": {...}}`).
    #[arg(long, value_name = "FILE")]
    pub file: String,
}

#[derive(Args, Debug)]
pub struct InstanceArg {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
}

#[derive(Args, Debug)]
pub struct ConnectorCreateArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Number of connector nodes (the server default is 2).
    #[arg(long, value_name = "N")]
    pub node_cnt: Option<u32>,
    /// Bandwidth specification, for example 100MB.
    #[arg(long)]
    pub specification: Option<String>,
    /// Connector node spec code, for example kafka.c3.mini.connector.
    #[arg(long, value_name = "CODE")]
    pub spec_code: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Create a task from a JSON file or, for an OBS_SINK task, from flags.
    Create(Box<TaskCreateArgs>),
    /// List the tasks of an instance.
    List(TaskListArgs),
    /// Show one task.
    Show(TaskArgs),
    /// Replace a task with the task entity in a JSON file.
    Modify(TaskModifyArgs),
    /// Pause a running task.
    Pause(TaskArgs),
    /// Resume a paused task.
    Resume(TaskArgs),
    /// Start a waiting task or restart a task, which resets its progress.
    Restart(TaskArgs),
    /// Delete a task.
    Delete(TaskArgs),
}

#[derive(Args, Debug)]
pub struct TaskArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Task ID.
    pub task: String,
}

#[derive(Args, Debug)]
pub struct TaskListArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Number of tasks to skip (0-based).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Maximum number of tasks to return (1-50).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct TaskModifyArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Task ID.
    pub task: String,
    /// JSON file with the task entity, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub file: String,
}

#[derive(Args, Debug)]
pub struct TaskCreateArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// JSON file with the CreateConnectorTask body, or `-` for standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "obs_sink_flags")]
    pub file: Option<String>,
    #[command(flatten)]
    pub sink: ObsSinkFlags,
}

/// Flags that build an OBS_SINK task when no `--file` is given.
#[derive(Args, Debug)]
#[group(id = "obs_sink_flags", multiple = true)]
pub struct ObsSinkFlags {
    /// Task name: 4-64 characters from letters, digits, `_` and `-`.
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// Comma-separated topic names.
    #[arg(long, required_unless_present_any = ["file", "topics_regex"],
          conflicts_with = "topics_regex")]
    pub topics: Option<String>,
    /// Regular expression that selects the topics.
    #[arg(long, value_name = "REGEX")]
    pub topics_regex: Option<String>,
    /// Destination bucket.
    #[arg(long, required_unless_present = "file")]
    pub bucket: Option<String>,
    /// Directory in the bucket, with `/` between levels.
    #[arg(long)]
    pub path: Option<String>,
    /// Time directory layout of the objects.
    #[arg(long, value_parser = ["yyyy", "yyyy/MM", "yyyy/MM/dd", "yyyy/MM/dd/HH",
                                "yyyy/MM/dd/HH/mm"])]
    pub partition_format: Option<String>,
    /// Record delimiter: `,`, `;`, `|`, `\n` or NULL for none.
    #[arg(long, value_name = "DELIMITER")]
    pub delimiter: Option<String>,
    /// Write each record's key before its value.
    #[arg(long)]
    pub store_keys: bool,
    /// Seconds between two uploads of a partition (30-900).
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(30..=900))]
    pub deliver_time_interval: Option<u32>,
    /// Start position for partitions without a committed offset.
    #[arg(long, value_parser = ["latest", "earliest"])]
    pub consumer_strategy: Option<String>,
    /// Create the task in the WAITING state instead of starting it.
    #[arg(long)]
    pub start_later: bool,
    /// S3 endpoint URL. Without it, the server writes to its local bucket directory.
    #[arg(long, value_name = "URL")]
    pub obs_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, value_name = "REGION")]
    pub obs_region: Option<String>,
    /// Address buckets by path instead of by virtual host.
    #[arg(long)]
    pub obs_path_style: bool,
    /// Access key of the object store.
    #[arg(long, value_name = "AK")]
    pub obs_access_key: Option<String>,
    /// Secret key of the object store.
    #[arg(long, value_name = "SK")]
    pub obs_secret_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List the background jobs of an instance.
    List(JobListArgs),
    /// Show one job.
    Show(JobArgs),
    /// Show the progress steps of a job.
    Progress(JobArgs),
    /// Delete a finished job record.
    Delete(JobArgs),
}

#[derive(Args, Debug)]
pub struct JobArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Job ID.
    pub job: String,
}

#[derive(Args, Debug)]
pub struct JobListArgs {
    /// Instance ID.
    #[arg(long)]
    pub instance: String,
    /// Position of the first job to return (1-based).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub start: u32,
    /// Maximum number of jobs to return (1-100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Show only jobs created at or after this time, as YYYYMMDDHHmmss.
    #[arg(long, value_name = "TIME")]
    pub begin_time: Option<String>,
    /// Show only jobs created at or before this time, as YYYYMMDDHHmmss.
    #[arg(long, value_name = "TIME")]
    pub end_time: Option<String>,
}

/// Runs a client subcommand, then prints any error as `error: ...` to standard error.
/// Returns the process exit code.
pub async fn run_and_report(options: ClientOptions, command: ClientCommand) -> ExitCode {
    match run(options, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the request of a client subcommand and prints the response to standard output.
///
/// A non-2xx response becomes an error that shows the HTTP status, `error_code`,
/// `error_msg` and the request ID.
pub async fn run(options: ClientOptions, command: ClientCommand) -> anyhow::Result<()> {
    let output = execute(&options, command).await?;
    print!("{output}");
    Ok(())
}

/// Sends the request of a client subcommand and returns the text to print.
async fn execute(options: &ClientOptions, command: ClientCommand) -> anyhow::Result<String> {
    let client = ApiClient::new(options)?;
    let call = plan(command, options.project.as_deref())?;
    let body = client.send(&call).await?;
    render(&call.view, &body, options.output)
}

/// One HTTP request of the API and how to show its response.
#[derive(Debug)]
struct ApiCall {
    method: Method,
    /// Path after the endpoint, with path parameters already percent-encoded.
    path: String,
    /// Decoded query pairs.
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    view: View,
}

impl ApiCall {
    fn new(method: Method, path: String, view: View) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            view,
        }
    }

    fn with_query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }

    fn with_json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }
}

/// Presentation of a response in text output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    /// `key: value` lines of the whole response, nested objects as dotted keys.
    KeyValues,
    /// Only the `instance_id` field.
    InstanceId,
    InstanceTable,
    /// The Smart Connect fields of ShowInstance and the `connector_nodes` table.
    Connector,
    TaskTable,
    JobTable,
    /// `key: value` lines of the first element of `tasks`.
    FirstJob,
    Progress,
    /// A new key with its secret and a reminder that it is shown once.
    KeyCreated,
    KeyTable,
    /// A fixed message, for responses without a body.
    Done(String),
}

fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

fn require_project(project: Option<&str>) -> anyhow::Result<String> {
    match project {
        Some(project) if !project.is_empty() => Ok(encode_segment(project)),
        _ => bail!("missing project ID: pass --project or set WEIR_PROJECT_ID"),
    }
}

/// Builds the HTTP request for a client subcommand. Reads `--file` inputs.
fn plan(command: ClientCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    match command {
        ClientCommand::Instance(command) => plan_instance(command, project),
        ClientCommand::Connector(command) => plan_connector(command, project),
        ClientCommand::Task(command) => plan_task(command, project),
        ClientCommand::Job(command) => plan_job(command, project),
        ClientCommand::Key(command) => plan_key(command, project),
    }
}

fn plan_key(command: KeyCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    let call = match command {
        KeyCommand::Create(args) => {
            let Some(project) = project.filter(|p| !p.is_empty()) else {
                bail!("missing project ID: pass --project with the project the new key belongs to");
            };
            let mut body = Map::new();
            body.insert("project_id".into(), project.into());
            body.insert("admin".into(), args.admin.into());
            insert_some(&mut body, "description", args.description);
            ApiCall::new(Method::POST, "/admin/v1/keys".into(), View::KeyCreated)
                .with_json(&Value::Object(body))
        }
        KeyCommand::List { all } => {
            let mut query = Vec::new();
            let project = project.filter(|p| !all && !p.is_empty());
            push_some(&mut query, "project_id", project);
            ApiCall::new(Method::GET, "/admin/v1/keys".into(), View::KeyTable).with_query(query)
        }
        KeyCommand::Revoke { access_key } => ApiCall::new(
            Method::DELETE,
            format!("/admin/v1/keys/{}", encode_segment(&access_key)),
            View::Done(format!("Revoked access key {access_key}.")),
        ),
    };
    Ok(call)
}

fn plan_instance(command: InstanceCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    let call = match command {
        InstanceCommand::Add(args) => {
            let mut body = Map::new();
            insert_some(&mut body, "project_id", project.filter(|p| !p.is_empty()));
            body.insert("name".into(), args.name.into());
            body.insert("bootstrap_servers".into(), args.bootstrap_servers.into());
            insert_some(&mut body, "specification", args.specification);
            insert_some(&mut body, "broker_num", args.broker_num);
            insert_some(&mut body, "security_protocol", args.security_protocol);
            insert_some(&mut body, "sasl_mechanism", args.sasl_mechanism);
            insert_some(&mut body, "username", args.username);
            insert_some(&mut body, "password", args.password);
            ApiCall::new(Method::POST, "/admin/v1/instances".into(), View::InstanceId)
                .with_json(&Value::Object(body))
        }
        InstanceCommand::List(args) => {
            let project = require_project(project)?;
            let mut query = vec![("engine".to_owned(), "kafka".to_owned())];
            push_some(&mut query, "name", args.name);
            push_some(&mut query, "offset", args.offset);
            push_some(&mut query, "limit", args.limit);
            ApiCall::new(
                Method::GET,
                format!("/v2/{project}/instances"),
                View::InstanceTable,
            )
            .with_query(query)
        }
        InstanceCommand::Show { instance } => {
            let project = require_project(project)?;
            let instance = encode_segment(&instance);
            ApiCall::new(
                Method::GET,
                format!("/v2/{project}/instances/{instance}"),
                View::KeyValues,
            )
        }
    };
    Ok(call)
}

fn plan_connector(command: ConnectorCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    let call = match command {
        ConnectorCommand::Create(args) => {
            let project = require_project(project)?;
            let instance = encode_segment(&args.instance);
            let mut body = Map::new();
            insert_some(&mut body, "node_cnt", args.node_cnt);
            insert_some(&mut body, "specification", args.specification);
            insert_some(&mut body, "spec_code", args.spec_code);
            ApiCall::new(
                Method::POST,
                format!("/v2/{project}/instances/{instance}/connector"),
                View::KeyValues,
            )
            .with_json(&Value::Object(body))
        }
        ConnectorCommand::Show(args) => {
            let project = require_project(project)?;
            let instance = encode_segment(&args.instance);
            ApiCall::new(
                Method::GET,
                format!("/v2/{project}/instances/{instance}"),
                View::Connector,
            )
        }
        ConnectorCommand::Delete(args) => {
            let project = require_project(project)?;
            let instance = encode_segment(&args.instance);
            // The SDK sends no body here, and the terraform provider's body is ignored.
            ApiCall::new(
                Method::POST,
                format!("/v2/{project}/kafka/instances/{instance}/delete-connector"),
                View::KeyValues,
            )
        }
        ConnectorCommand::Token(args) => {
            let instance = encode_segment(&args.instance);
            ApiCall::new(
                Method::GET,
                format!("/admin/v1/instances/{instance}/connector/node-token"),
                View::KeyValues,
            )
        }
        ConnectorCommand::Validate(args) => {
            let project = require_project(project)?;
            let instance = encode_segment(&args.instance);
            let body = validate_body(&read_json_file(&args.file)?, &args.file)?;
            ApiCall::new(
                Method::POST,
                format!("/v2/{project}/instances/{instance}/connector/validate"),
                View::Done(
                    "The peer cluster is reachable and accepted the connection settings.".into(),
                ),
            )
            .with_json(&body)
        }
    };
    Ok(call)
}

fn plan_task(command: TaskCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    let project = require_project(project)?;
    let tasks_path = |instance: &str| {
        let instance = encode_segment(instance);
        format!("/v2/{project}/instances/{instance}/connector/tasks")
    };
    let task_path = |args: &TaskArgs| {
        let task = encode_segment(&args.task);
        format!("{}/{task}", tasks_path(&args.instance))
    };

    let call = match command {
        TaskCommand::Create(args) => {
            let call = ApiCall::new(Method::POST, tasks_path(&args.instance), View::KeyValues);
            match &args.file {
                Some(file) => call.with_body(read_json_file(file)?),
                None => call.with_json(&obs_sink_task_body(&args.sink)?),
            }
        }
        TaskCommand::List(args) => {
            let query = vec![
                ("offset".to_owned(), args.offset.to_string()),
                ("limit".to_owned(), args.limit.to_string()),
            ];
            ApiCall::new(Method::GET, tasks_path(&args.instance), View::TaskTable).with_query(query)
        }
        TaskCommand::Show(args) => ApiCall::new(Method::GET, task_path(&args), View::KeyValues),
        TaskCommand::Modify(args) => {
            let task = encode_segment(&args.task);
            let path = format!("{}/{task}", tasks_path(&args.instance));
            ApiCall::new(Method::PUT, path, View::KeyValues).with_body(read_json_file(&args.file)?)
        }
        TaskCommand::Pause(args) => ApiCall::new(
            Method::PUT,
            format!("{}/pause", task_path(&args)),
            View::Done(format!("Pause of task {} accepted.", args.task)),
        ),
        TaskCommand::Resume(args) => ApiCall::new(
            Method::PUT,
            format!("{}/resume", task_path(&args)),
            View::Done(format!("Resume of task {} accepted.", args.task)),
        ),
        TaskCommand::Restart(args) => {
            // RestartConnectorTask lives under the extra `kafka/` segment, the path that
            // the terraform provider uses for both start and restart.
            let instance = encode_segment(&args.instance);
            let task = encode_segment(&args.task);
            ApiCall::new(
                Method::PUT,
                format!("/v2/{project}/kafka/instances/{instance}/connector/tasks/{task}/restart"),
                View::Done(format!("Restart of task {} accepted.", args.task)),
            )
        }
        TaskCommand::Delete(args) => ApiCall::new(
            Method::DELETE,
            task_path(&args),
            View::Done(format!("Deleted task {}.", args.task)),
        ),
    };
    Ok(call)
}

fn plan_job(command: JobCommand, project: Option<&str>) -> anyhow::Result<ApiCall> {
    let project = require_project(project)?;
    let jobs_path = |instance: &str| {
        let instance = encode_segment(instance);
        format!("/v2/{project}/instances/{instance}/tasks")
    };
    let job_path = |args: &JobArgs| {
        let job = encode_segment(&args.job);
        format!("{}/{job}", jobs_path(&args.instance))
    };

    let call = match command {
        JobCommand::List(args) => {
            let mut query = vec![
                ("start".to_owned(), args.start.to_string()),
                ("limit".to_owned(), args.limit.to_string()),
            ];
            push_some(&mut query, "begin_time", args.begin_time);
            push_some(&mut query, "end_time", args.end_time);
            ApiCall::new(Method::GET, jobs_path(&args.instance), View::JobTable).with_query(query)
        }
        JobCommand::Show(args) => ApiCall::new(Method::GET, job_path(&args), View::FirstJob),
        JobCommand::Progress(args) => ApiCall::new(
            Method::GET,
            format!("{}/progress", job_path(&args)),
            View::Progress,
        ),
        JobCommand::Delete(args) => ApiCall::new(
            Method::DELETE,
            job_path(&args),
            View::Done(format!("Deleted job {}.", args.job)),
        ),
    };
    Ok(call)
}

fn insert_some(object: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value.into());
    }
}

fn push_some(query: &mut Vec<(String, String)>, key: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        query.push((key.to_owned(), value.to_string()));
    }
}

/// Builds a CreateConnectorTask body for an OBS_SINK task from the flags. Optional flags
/// that were not given are left out, so the server applies its defaults. `store_keys` is
/// always sent, and `destination_file_type` is always `TEXT`, its only valid value.
fn obs_sink_task_body(flags: &ObsSinkFlags) -> anyhow::Result<Value> {
    let name = flags
        .name
        .clone()
        .context("missing task name: pass --name or --file")?;
    let bucket = flags
        .bucket
        .clone()
        .context("missing bucket: pass --bucket or --file")?;

    let mut sink = Map::new();
    insert_some(
        &mut sink,
        "consumer_strategy",
        flags.consumer_strategy.clone(),
    );
    sink.insert("destination_file_type".into(), "TEXT".into());
    insert_some(
        &mut sink,
        "deliver_time_interval",
        flags.deliver_time_interval,
    );
    insert_some(&mut sink, "access_key", flags.obs_access_key.clone());
    insert_some(&mut sink, "secret_key", flags.obs_secret_key.clone());
    sink.insert("obs_bucket_name".into(), bucket.into());
    insert_some(&mut sink, "obs_path", flags.path.clone());
    insert_some(
        &mut sink,
        "partition_format",
        flags.partition_format.clone(),
    );
    insert_some(&mut sink, "record_delimiter", flags.delimiter.clone());
    sink.insert("store_keys".into(), flags.store_keys.into());
    insert_some(&mut sink, "obs_endpoint", flags.obs_endpoint.clone());
    insert_some(&mut sink, "obs_region", flags.obs_region.clone());
    if flags.obs_path_style {
        sink.insert("obs_path_style".into(), true.into());
    }

    let mut body = Map::new();
    body.insert("task_name".into(), name.into());
    if flags.start_later {
        body.insert("start_later".into(), true.into());
    }
    match (&flags.topics, &flags.topics_regex) {
        (Some(topics), None) => body.insert("topics".into(), topics.clone().into()),
        (None, Some(regex)) => body.insert("topics_regex".into(), regex.clone().into()),
        _ => bail!("pass exactly one of --topics and --topics-regex"),
    };
    body.insert("source_type".into(), "NONE".into());
    body.insert("sink_type".into(), "OBS_SINK".into());
    body.insert("sink_task".into(), Value::Object(sink));
    Ok(Value::Object(body))
}

/// Builds a ValidateConnectorConnectivity body from a file's JSON. A body that has `type`
/// is sent as it is. A CreateConnectorTask body becomes `type` from its `source_type` and
/// `task` from its `source_task`, so the file of a task can be checked before the task is
/// created.
fn validate_body(bytes: &[u8], file: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_slice(bytes)
        .with_context(|| format!("{file} does not contain valid JSON"))?;
    if value.get("type").is_some() {
        return Ok(value);
    }
    let (Some(source_type), Some(source_task)) =
        (value.get("source_type"), value.get("source_task"))
    else {
        bail!(
            "{file} has neither `type` nor `source_type` and `source_task`: give a \
             ValidateConnectorConnectivity body or the CreateConnectorTask body of a \
             KAFKA_REPLICATOR_SOURCE task"
        );
    };
    Ok(json!({ "type": source_type, "task": source_task }))
}

/// Reads a JSON request body from a file, or from standard input for `-`. The bytes are
/// sent unchanged. Parsing them only catches a broken file before the request is sent.
fn read_json_file(file: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("failed to read the request body from standard input")?;
        bytes
    } else {
        std::fs::read(file).with_context(|| format!("failed to read {file}"))?
    };

    let source = if file == "-" { "standard input" } else { file };
    serde_json::from_slice::<Value>(&bytes)
        .with_context(|| format!("{source} does not contain valid JSON"))?;
    Ok(bytes)
}

/// Signing HTTP client for one endpoint.
struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    signer: Signer,
    project: Option<String>,
}

impl ApiClient {
    fn new(options: &ClientOptions) -> anyhow::Result<Self> {
        let endpoint = parse_endpoint(&options.endpoint)?;
        let access_key = require_key(&options.ak, "access key", "--ak", "WEIR_ACCESS_KEY")?;
        let secret_key = require_key(&options.sk, "secret key", "--sk", "WEIR_SECRET_KEY")?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("failed to create the HTTP client")?;

        Ok(Self {
            http,
            endpoint,
            signer: Signer::new(access_key, secret_key),
            project: options
                .project
                .clone()
                .filter(|project| !project.is_empty()),
        })
    }

    /// Signs and sends a call. Returns the body of a 2xx response.
    async fn send(&self, call: &ApiCall) -> anyhow::Result<Vec<u8>> {
        let url = self.url_for(call);
        let body = call.body.clone().unwrap_or_default();

        let mut headers = HeaderMap::new();
        headers.insert(HOST, host_header(&url)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("weir/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(project) = &self.project {
            let value = HeaderValue::from_str(project)
                .with_context(|| format!("invalid project ID {project:?}"))?;
            headers.insert("x-project-id", value);
        }
        self.signer
            .sign(&call.method, url.path(), &call.query, &mut headers, &body)
            .context("failed to sign the request")?;

        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .headers(headers);
        if call.body.is_some() {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error, &url))?;

        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error, &url))?;

        if !status.is_success() {
            return Err(ApiError::from_response(status, request_id, &bytes).into());
        }
        Ok(bytes.to_vec())
    }

    /// Joins the endpoint, which may have a path prefix, with the call's path and query.
    fn url_for(&self, call: &ApiCall) -> Url {
        let mut url = self.endpoint.clone();
        let path = format!(
            "{}{}",
            self.endpoint.path().trim_end_matches('/'),
            call.path
        );
        url.set_path(&path);
        let query = canonical_query(&call.query);
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        url
    }

    fn transport_error(&self, error: &reqwest::Error, url: &Url) -> anyhow::Error {
        let cause = root_cause(error);
        if error.is_connect() {
            anyhow!(
                "could not connect to the Weir server at {}: {cause}. Check --endpoint \
                 (or WEIR_ENDPOINT) and that the server is running",
                self.endpoint.as_str().trim_end_matches('/')
            )
        } else if error.is_timeout() {
            anyhow!(
                "request to {url} timed out after {} s",
                REQUEST_TIMEOUT.as_secs()
            )
        } else {
            anyhow!("request to {url} failed: {cause}")
        }
    }
}

fn require_key<'a>(
    value: &'a Option<String>,
    name: &str,
    flag: &str,
    variable: &str,
) -> anyhow::Result<&'a str> {
    match value.as_deref() {
        Some(key) if !key.is_empty() => Ok(key),
        _ => bail!(
            "missing {name}: pass {flag} or set {variable} \
             (a new server writes one to DATA_DIR/initial-key.json)"
        ),
    }
}

fn parse_endpoint(endpoint: &str) -> anyhow::Result<Url> {
    let url = Url::parse(endpoint).with_context(|| {
        format!("invalid --endpoint {endpoint:?}: expected a URL such as {DEFAULT_ENDPOINT}")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!(
            "invalid --endpoint {endpoint:?}: expected an http or https URL such as {DEFAULT_ENDPOINT}"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("invalid --endpoint {endpoint:?}: the URL must not have a query or fragment");
    }
    Ok(url)
}

/// Returns the Host header for a URL: host and, unless it is the scheme's default,
/// port. The header is signed, so it is set explicitly rather than left to the client.
fn host_header(url: &Url) -> anyhow::Result<HeaderValue> {
    let host = url.host_str().context("the endpoint URL has no host")?;
    let value = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&value).with_context(|| format!("invalid host {value:?}"))
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Non-2xx response of the API.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error_code: Option<String>,
    error_msg: Option<String>,
    request_id: Option<String>,
    /// Start of a body that has no error code, to show instead.
    body_excerpt: String,
}

impl ApiError {
    const EXCERPT_CHARS: usize = 200;

    fn from_response(status: StatusCode, request_id: Option<String>, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<Value>(body).ok();
        let (error_code, error_msg) = parsed.as_ref().and_then(find_error_fields).unzip();
        let body_excerpt = String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(Self::EXCERPT_CHARS)
            .collect();
        Self {
            status,
            error_code,
            error_msg: error_msg.flatten(),
            request_id,
            body_excerpt,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.status)?;
        match (&self.error_code, &self.error_msg) {
            (Some(code), Some(message)) => write!(formatter, " {code}: {message}")?,
            (Some(code), None) => write!(formatter, " {code}")?,
            _ if !self.body_excerpt.is_empty() => write!(formatter, ": {}", self.body_excerpt)?,
            _ => {}
        }
        if let Some(request_id) = &self.request_id {
            write!(formatter, " (request id: {request_id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Finds the error code and message in an error body: the pair `error_code`/`error_msg`,
/// `errorCode`/`errorMsg` or `code`/`message`, at the top level or in an object one level
/// down.
fn find_error_fields(body: &Value) -> Option<(String, Option<String>)> {
    const PAIRS: [(&str, &str); 3] = [
        ("error_code", "error_msg"),
        ("errorCode", "errorMsg"),
        ("code", "message"),
    ];
    let from_object = |object: &Map<String, Value>| {
        PAIRS.iter().find_map(|(code_key, message_key)| {
            let code = object.get(*code_key)?.as_str()?.to_owned();
            let message = object
                .get(*message_key)
                .and_then(Value::as_str)
                .map(str::to_owned);
            Some((code, message))
        })
    };

    let object = body.as_object()?;
    from_object(object).or_else(|| {
        object
            .values()
            .filter_map(Value::as_object)
            .find_map(from_object)
    })
}

/// Formats a 2xx response body for printing.
fn render(view: &View, body: &[u8], format: OutputFormat) -> anyhow::Result<String> {
    match format {
        OutputFormat::Json => render_json(view, body),
        OutputFormat::Text => render_text(view, body),
    }
}

fn render_json(view: &View, body: &[u8]) -> anyhow::Result<String> {
    match view {
        View::InstanceId => {
            let response = parse_body(body)?;
            let id = instance_id(&response)?;
            Ok(format!("{}\n", json!({ "instance_id": id })))
        }
        View::Connector => {
            let response = parse_body(body)?;
            Ok(format!("{}\n", connector_fields(&response)))
        }
        _ => {
            let mut text = String::from_utf8_lossy(body).into_owned();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            Ok(text)
        }
    }
}

fn render_text(view: &View, body: &[u8]) -> anyhow::Result<String> {
    if let View::Done(message) = view {
        return Ok(format!("{message}\n"));
    }

    let response = parse_body(body)?;
    let text = match view {
        View::KeyValues => format_key_values(&response),
        View::InstanceId => format!("{}\n", instance_id(&response)?),
        View::InstanceTable => format_instance_table(&response),
        View::Connector => format_connector(&response),
        View::TaskTable => format_task_table(&response),
        View::JobTable => format_job_table(&response),
        View::FirstJob => {
            let job = response
                .get("tasks")
                .and_then(Value::as_array)
                .and_then(|jobs| jobs.first())
                .context("the response contains no job")?;
            format_key_values(job)
        }
        View::Progress => format_progress(&response),
        View::KeyCreated => format!(
            "{}\nThe secret key is shown only now: store it safely.\n",
            format_key_values(&response).trim_end()
        ),
        View::KeyTable => format_object_table(array_field(&response, "keys")),
        View::Done(_) => String::new(),
    };
    Ok(text)
}

fn parse_body(body: &[u8]) -> anyhow::Result<Value> {
    if body.is_empty() {
        bail!("the server returned an empty response where JSON was expected");
    }
    serde_json::from_slice(body).context("the server returned a response that is not valid JSON")
}

fn instance_id(response: &Value) -> anyhow::Result<&str> {
    response
        .get("instance_id")
        .and_then(Value::as_str)
        .context("the response has no instance_id")
}

/// ShowInstance fields that `connector show` prints, in output order.
const CONNECTOR_SUMMARY_FIELDS: [&str; 5] = [
    "instance_id",
    "connector_enable",
    "connector_id",
    "connector_node_num",
    "status",
];

/// Smart Connect fields of a ShowInstance response, including the `connector_nodes`
/// extension when the server sends it.
fn connector_fields(instance: &Value) -> Value {
    let mut fields = Map::new();
    for key in CONNECTOR_SUMMARY_FIELDS.iter().chain(&["connector_nodes"]) {
        if let Some(value) = instance.get(*key) {
            fields.insert((*key).to_owned(), value.clone());
        }
    }
    Value::Object(fields)
}

/// Formats a JSON value for one table cell or `key: value` line. Missing values and
/// `null` show as `-`, and strings with control characters, such as a newline delimiter,
/// are shown JSON-escaped.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) if text.chars().any(char::is_control) => {
            Value::String(text.clone()).to_string()
        }
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Response fields that hold epoch milliseconds, shown as RFC 3339 times in text output.
const EPOCH_MILLIS_FIELDS: [&str; 3] = ["create_time", "last_heartbeat", "registered_at"];

/// Formats the value of the field `name` for text output: epoch milliseconds as a time,
/// everything else as [`cell`] does.
fn field_cell(name: &str, value: Option<&Value>) -> String {
    if EPOCH_MILLIS_FIELDS.contains(&name) {
        epoch_millis_cell(value)
    } else {
        cell(value)
    }
}

/// Formats epoch milliseconds as an RFC 3339 UTC time, or the value as it is.
fn epoch_millis_cell(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_i64)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| cell(value))
}

/// Formats an object as aligned `key: value` lines sorted by key. Nested objects become
/// dotted keys, arrays of scalars are joined with `, ` and other arrays are shown as JSON.
fn format_key_values(value: &Value) -> String {
    let mut entries = Vec::new();
    flatten_into(&mut entries, "", value);
    entries.sort();
    format_entries(&entries)
}

/// Formats (key, text) pairs as `key: text` lines with the texts aligned.
fn format_entries(entries: &[(String, String)]) -> String {
    let width = entries.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    entries
        .iter()
        .map(|(key, text)| format!("{:<width$} {text}\n", format!("{key}:"), width = width + 1))
        .collect()
}

fn flatten_into(entries: &mut Vec<(String, String)>, prefix: &str, value: &Value) {
    match value {
        Value::Object(object) if !object.is_empty() => {
            for (key, child) in object {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(entries, &name, child);
            }
        }
        Value::Array(items) if !items.iter().any(|item| item.is_object() || item.is_array()) => {
            let joined: Vec<String> = items.iter().map(|item| cell(Some(item))).collect();
            entries.push((prefix.to_owned(), joined.join(", ")));
        }
        other => {
            let name = prefix.rsplit('.').next().unwrap_or(prefix);
            entries.push((prefix.to_owned(), field_cell(name, Some(other))));
        }
    }
}

/// Formats rows as columns separated by two spaces, with a header line.
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }

    let format_line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };

    let mut text = format_line(&mut headers.iter().copied());
    for row in rows {
        text.push_str(&format_line(&mut row.iter().map(String::as_str)));
    }
    text
}

fn array_field<'a>(response: &'a Value, key: &str) -> &'a [Value] {
    response
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn format_instance_table(response: &Value) -> String {
    let rows: Vec<Vec<String>> = array_field(response, "instances")
        .iter()
        .map(|instance| {
            vec![
                cell(instance.get("instance_id")),
                cell(instance.get("name")),
                cell(instance.get("status")),
                cell(instance.get("specification")),
                cell(instance.get("connector_enable")),
                cell(instance.get("connector_node_num")),
            ]
        })
        .collect();
    let headers = [
        "INSTANCE_ID",
        "NAME",
        "STATUS",
        "SPECIFICATION",
        "CONNECTOR",
        "NODES",
    ];
    let mut text = format_table(&headers, &rows);
    text.push_str(&format!("total: {}\n", cell(response.get("instance_num"))));
    text
}

fn format_connector(instance: &Value) -> String {
    let entries: Vec<(String, String)> = CONNECTOR_SUMMARY_FIELDS
        .iter()
        .map(|key| ((*key).to_owned(), cell(instance.get(*key))))
        .collect();
    let mut text = format_entries(&entries);

    if let Some(nodes) = instance.get("connector_nodes").and_then(Value::as_array) {
        text.push_str("\nconnector_nodes:\n");
        text.push_str(&format_object_table(nodes));
    }
    text
}

/// Formats an array of objects as a table whose columns are the keys in order of first
/// appearance.
fn format_object_table(items: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for item in items {
        for key in item.as_object().into_iter().flat_map(Map::keys) {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }

    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| match item {
            Value::Object(_) => columns
                .iter()
                .map(|key| field_cell(key, item.get(*key)))
                .collect(),
            other => vec![cell(Some(other))],
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|key| key.to_uppercase()).collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    format_table(&header_refs, &rows)
}

fn format_task_table(response: &Value) -> String {
    let rows: Vec<Vec<String>> = array_field(response, "tasks")
        .iter()
        .map(|task| {
            let sink_type = task.get("sink_type").and_then(Value::as_str);
            let kind = match sink_type {
                Some(sink) if sink != "NONE" => task.get("sink_type"),
                _ => task.get("source_type"),
            };
            let topics = match task.get("topics").and_then(Value::as_str) {
                Some(topics) if !topics.is_empty() => topics.to_owned(),
                _ => match task.get("topics_regex").and_then(Value::as_str) {
                    Some(regex) => format!("regex:{regex}"),
                    None => "-".to_owned(),
                },
            };
            vec![
                cell(task.get("id")),
                cell(task.get("task_name")),
                cell(task.get("status")),
                cell(kind),
                topics,
                epoch_millis_cell(task.get("create_time")),
            ]
        })
        .collect();
    let headers = ["ID", "NAME", "STATUS", "TYPE", "TOPICS", "CREATED"];
    let mut text = format_table(&headers, &rows);
    text.push_str(&format!(
        "total: {}, quota: {}\n",
        cell(response.get("total_number")),
        cell(response.get("quota_tasks"))
    ));
    text
}

fn format_job_table(response: &Value) -> String {
    let rows: Vec<Vec<String>> = array_field(response, "tasks")
        .iter()
        .map(|job| {
            vec![
                cell(job.get("id")),
                cell(job.get("name")),
                cell(job.get("status")),
                cell(job.get("created_at")),
                cell(job.get("updated_at")),
            ]
        })
        .collect();
    let headers = ["ID", "NAME", "STATUS", "CREATED_AT", "UPDATED_AT"];
    let mut text = format_table(&headers, &rows);
    text.push_str(&format!("total: {}\n", cell(response.get("task_count"))));
    text
}

fn format_progress(response: &Value) -> String {
    let entries: Vec<(String, String)> = ["progress_percentage", "remain_time"]
        .iter()
        .map(|key| ((*key).to_owned(), cell(response.get(*key))))
        .collect();
    let mut text = format_entries(&entries);
    let rows: Vec<Vec<String>> = array_field(response, "step_list")
        .iter()
        .map(|step| {
            vec![
                cell(step.get("name")),
                // `statue` is the real field name of the API.
                cell(step.get("statue")),
                cell(step.get("start_time")),
                cell(step.get("end_time")),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&format_table(
            &["STEP", "STATUS", "START_TIME", "END_TIME"],
            &rows,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{SecretAndProject, verify};
    use axum::body::Bytes;
    use axum::http::Uri;
    use axum::response::{IntoResponse, Response};
    use clap::{CommandFactory, Parser, error::ErrorKind};

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        options: ClientOptions,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse_words(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("weir").chain(args.iter().copied()))
    }

    /// Parses a command line whose arguments are separated by spaces.
    fn parse_ok(line: &str) -> TestCli {
        let args: Vec<&str> = line.split_whitespace().collect();
        parse_words(&args).unwrap_or_else(|error| panic!("{line:?} failed to parse: {error}"))
    }

    fn parse_error_kind(line: &str) -> ErrorKind {
        let args: Vec<&str> = line.split_whitespace().collect();
        match parse_words(&args) {
            Ok(cli) => panic!("{line:?} parsed as {:?}", cli.command),
            Err(error) => error.kind(),
        }
    }

    fn plan_words(args: &[&str]) -> ApiCall {
        let cli = parse_words(args).unwrap_or_else(|error| panic!("{args:?}: {error}"));
        plan(cli.command, Some(PROJECT)).unwrap_or_else(|error| panic!("{args:?}: {error:#}"))
    }

    fn plan_args(line: &str) -> ApiCall {
        let args: Vec<&str> = line.split_whitespace().collect();
        plan_words(&args)
    }

    fn body_json(call: &ApiCall) -> Value {
        let body = call.body.as_deref().expect("request has a body");
        serde_json::from_slice(body).expect("body is JSON")
    }

    #[test]
    fn cli_definition_is_valid() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn parse_global_flags_after_subcommand() {
        let cli = parse_ok(
            "task list --instance i-1 --project p-1 --ak AK --sk SK --output json --endpoint http://127.0.0.1:9000",
        );

        assert_eq!(cli.options.project.as_deref(), Some("p-1"));
        assert_eq!(cli.options.ak.as_deref(), Some("AK"));
        assert_eq!(cli.options.sk.as_deref(), Some("SK"));
        assert_eq!(cli.options.output, OutputFormat::Json);
        assert_eq!(cli.options.endpoint, "http://127.0.0.1:9000");
        let ClientCommand::Task(TaskCommand::List(args)) = cli.command else {
            panic!("expected task list, got {:?}", cli.command);
        };
        assert_eq!(args.instance, "i-1");
        assert_eq!(args.offset, 0);
        assert_eq!(args.limit, 10);
    }

    #[test]
    fn parse_default_endpoint_and_output() {
        let cli = parse_ok("instance list");

        if std::env::var_os("WEIR_ENDPOINT").is_none() {
            assert_eq!(cli.options.endpoint, DEFAULT_ENDPOINT);
        }
        assert_eq!(cli.options.output, OutputFormat::Text);
    }

    #[test]
    fn parse_instance_add() {
        let cli = parse_ok(&format!(
            "instance add --project {PROJECT} --name kafka-1 --bootstrap-servers 127.0.0.1:9092 \
             --specification 100MB --broker-num 3"
        ));

        let ClientCommand::Instance(InstanceCommand::Add(args)) = cli.command else {
            panic!("expected instance add, got {:?}", cli.command);
        };
        assert_eq!(args.name, "kafka-1");
        assert_eq!(args.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(args.specification.as_deref(), Some("100MB"));
        assert_eq!(args.broker_num, Some(3));
        assert_eq!(cli.options.project.as_deref(), Some(PROJECT));
    }

    #[test]
    fn parse_task_create_rules() {
        let with = |flags: &str| format!("task create --instance i-1 {flags}");

        parse_ok(&with("--name dump-1 --topics a,b --bucket b1"));
        parse_ok(&with("--name dump-1 --topics-regex t.* --bucket b1"));
        parse_ok(&with("--file task.json"));

        let cases = [
            (
                "--file task.json --name dump-1",
                ErrorKind::ArgumentConflict,
            ),
            ("--file task.json --store-keys", ErrorKind::ArgumentConflict),
            (
                "--name dump-1 --bucket b1",
                ErrorKind::MissingRequiredArgument,
            ),
            (
                "--name dump-1 --topics a",
                ErrorKind::MissingRequiredArgument,
            ),
            (
                "--name d --topics a --topics-regex a.* --bucket b",
                ErrorKind::ArgumentConflict,
            ),
            (
                "--name d --topics a --bucket b --deliver-time-interval 10",
                ErrorKind::ValueValidation,
            ),
        ];
        for (flags, kind) in cases {
            assert_eq!(parse_error_kind(&with(flags)), kind, "flags {flags:?}");
        }
    }

    #[test]
    fn parse_job_list_paging() {
        let cli = parse_ok("job list --instance i-1");
        let ClientCommand::Job(JobCommand::List(args)) = cli.command else {
            panic!("expected job list, got {:?}", cli.command);
        };
        assert_eq!(args.start, 1);
        assert_eq!(args.limit, 10);

        let zero_start = parse_error_kind("job list --instance i --start 0");
        let large_limit = parse_error_kind("job list --instance i --limit 101");
        assert_eq!(zero_start, ErrorKind::ValueValidation);
        assert_eq!(large_limit, ErrorKind::ValueValidation);
    }

    #[test]
    fn parse_rejects_unknown_output() {
        let kind = parse_error_kind("instance list --output yaml");
        assert_eq!(kind, ErrorKind::InvalidValue);
    }

    #[test]
    fn plan_paths_of_every_verb() {
        let p = PROJECT;
        let tasks = format!("/v2/{p}/instances/i-1/connector/tasks");
        let jobs = format!("/v2/{p}/instances/i-1/tasks");
        let cases = [
            (
                "instance list",
                Method::GET,
                format!("/v2/{p}/instances"),
                "engine=kafka",
            ),
            (
                "instance list --name kafka --offset 5 --limit 20",
                Method::GET,
                format!("/v2/{p}/instances"),
                "engine=kafka&limit=20&name=kafka&offset=5",
            ),
            (
                "instance show i-1",
                Method::GET,
                format!("/v2/{p}/instances/i-1"),
                "",
            ),
            (
                "connector create --instance i-1",
                Method::POST,
                format!("/v2/{p}/instances/i-1/connector"),
                "",
            ),
            (
                "connector show --instance i-1",
                Method::GET,
                format!("/v2/{p}/instances/i-1"),
                "",
            ),
            (
                "connector delete --instance i-1",
                Method::POST,
                format!("/v2/{p}/kafka/instances/i-1/delete-connector"),
                "",
            ),
            (
                "connector token --instance i-1",
                Method::GET,
                "/admin/v1/instances/i-1/connector/node-token".to_owned(),
                "",
            ),
            (
                "task list --instance i-1 --offset 10 --limit 5",
                Method::GET,
                tasks.clone(),
                "limit=5&offset=10",
            ),
            (
                "task show --instance i-1 t-1",
                Method::GET,
                format!("{tasks}/t-1"),
                "",
            ),
            (
                "task pause --instance i-1 t-1",
                Method::PUT,
                format!("{tasks}/t-1/pause"),
                "",
            ),
            (
                "task resume --instance i-1 t-1",
                Method::PUT,
                format!("{tasks}/t-1/resume"),
                "",
            ),
            (
                "task restart --instance i-1 t-1",
                Method::PUT,
                format!("/v2/{p}/kafka/instances/i-1/connector/tasks/t-1/restart"),
                "",
            ),
            (
                "task delete --instance i-1 t-1",
                Method::DELETE,
                format!("{tasks}/t-1"),
                "",
            ),
            (
                "job list --instance i-1 --start 11 --limit 100",
                Method::GET,
                jobs.clone(),
                "limit=100&start=11",
            ),
            (
                "job show --instance i-1 j-1",
                Method::GET,
                format!("{jobs}/j-1"),
                "",
            ),
            (
                "job progress --instance i-1 j-1",
                Method::GET,
                format!("{jobs}/j-1/progress"),
                "",
            ),
            (
                "job delete --instance i-1 j-1",
                Method::DELETE,
                format!("{jobs}/j-1"),
                "",
            ),
        ];

        for (args, method, path, query) in cases {
            let call = plan_args(args);
            assert_eq!(call.method, method, "method of {args:?}");
            assert_eq!(call.path, path, "path of {args:?}");
            assert_eq!(canonical_query(&call.query), query, "query of {args:?}");
        }
    }

    #[test]
    fn plan_encodes_path_parameters() {
        let call = plan_words(&["task", "show", "--instance", "a/b", "t 1"]);
        assert_eq!(
            call.path,
            format!("/v2/{PROJECT}/instances/a%2Fb/connector/tasks/t%201")
        );
    }

    #[test]
    fn plan_requires_project() {
        let cli = parse_ok("task list --instance i-1");
        let error = plan(cli.command, None).expect_err("project is required");
        assert_eq!(
            error.to_string(),
            "missing project ID: pass --project or set WEIR_PROJECT_ID"
        );
    }

    #[test]
    fn plan_instance_add_body() {
        let call = plan_args(
            "instance add --name kafka-1 --bootstrap-servers h1:9092,h2:9092 --broker-num 3",
        );

        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/admin/v1/instances");
        assert_eq!(call.view, View::InstanceId);
        assert_eq!(
            body_json(&call),
            json!({
                "project_id": PROJECT,
                "name": "kafka-1",
                "bootstrap_servers": "h1:9092,h2:9092",
                "broker_num": 3,
            })
        );
    }

    #[test]
    fn plan_connector_create_body() {
        let call = plan_args("connector create --instance i-1 --node-cnt 2");
        assert_eq!(body_json(&call), json!({ "node_cnt": 2 }));

        let empty = plan_args("connector create --instance i-1");
        assert_eq!(body_json(&empty), json!({}));
    }

    #[test]
    fn plan_task_create_from_flags() {
        let call = plan_args(
            "task create --instance i-1 --name dump-1 --topics a,b --bucket b1 --path out/x \
             --partition-format yyyy/MM/dd --delimiter \\n --store-keys \
             --deliver-time-interval 30 --consumer-strategy earliest --start-later \
             --obs-endpoint http://127.0.0.1:9000 --obs-region us-east-1 --obs-path-style \
             --obs-access-key OAK --obs-secret-key OSK",
        );

        assert_eq!(call.method, Method::POST);
        assert_eq!(
            call.path,
            format!("/v2/{PROJECT}/instances/i-1/connector/tasks")
        );
        assert_eq!(
            body_json(&call),
            json!({
                "task_name": "dump-1",
                "start_later": true,
                "topics": "a,b",
                "source_type": "NONE",
                "sink_type": "OBS_SINK",
                "sink_task": {
                    "consumer_strategy": "earliest",
                    "destination_file_type": "TEXT",
                    "deliver_time_interval": 30,
                    "access_key": "OAK",
                    "secret_key": "OSK",
                    "obs_bucket_name": "b1",
                    "obs_path": "out/x",
                    "partition_format": "yyyy/MM/dd",
                    "record_delimiter": "\\n",
                    "store_keys": true,
                    "obs_endpoint": "http://127.0.0.1:9000",
                    "obs_region": "us-east-1",
                    "obs_path_style": true,
                },
            })
        );
    }

    #[test]
    fn plan_task_create_minimal_flags() {
        let call = plan_args(
            "task create --instance i-1 --name dump-1 --topics-regex topic-.* --bucket b1",
        );

        assert_eq!(
            body_json(&call),
            json!({
                "task_name": "dump-1",
                "topics_regex": "topic-.*",
                "source_type": "NONE",
                "sink_type": "OBS_SINK",
                "sink_task": {
                    "destination_file_type": "TEXT",
                    "obs_bucket_name": "b1",
                    "store_keys": false,
                },
            })
        );
    }

    #[test]
    fn plan_task_create_from_file_sends_bytes_unchanged() {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        let content = b"{\"task_name\": \"dump-1\", \"topics\": \"a\"}\n";
        std::io::Write::write_all(&mut file, content).expect("write temporary file");
        let path = file.path().to_str().expect("UTF-8 path").to_owned();

        let call = plan_args(&format!("task create --instance i-1 --file {path}"));
        let modify = plan_args(&format!("task modify --instance i-1 t-1 --file {path}"));

        assert_eq!(call.body.as_deref(), Some(&content[..]));
        assert_eq!(modify.method, Method::PUT);
        assert_eq!(
            modify.path,
            format!("/v2/{PROJECT}/instances/i-1/connector/tasks/t-1")
        );
        assert_eq!(modify.body.as_deref(), Some(&content[..]));
    }

    /// Writes `content` to a temporary file and returns the file, which deletes itself when
    /// dropped, and its path.
    fn temp_file(content: &[u8]) -> (tempfile::NamedTempFile, String) {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        std::io::Write::write_all(&mut file, content).expect("write temporary file");
        let path = file.path().to_str().expect("UTF-8 path").to_owned();
        (file, path)
    }

    #[test]
    fn plan_key_list_scope() {
        let of_project = plan_args("key list");
        let of_all = plan_args("key list --all");

        assert_eq!(of_project.path, "/admin/v1/keys");
        assert_eq!(
            canonical_query(&of_project.query),
            format!("project_id={PROJECT}")
        );
        assert_eq!(of_all.path, "/admin/v1/keys");
        assert_eq!(canonical_query(&of_all.query), "");
    }

    #[test]
    fn plan_connector_validate_from_task_file() {
        let task = json!({
            "task_name": "copy-1",
            "source_type": "KAFKA_REPLICATOR_SOURCE",
            "sink_type": "NONE",
            "source_task": {"bootstrap_servers": "127.0.0.1:9092", "direction": "pull"},
        });
        let (_file, path) = temp_file(task.to_string().as_bytes());

        let call = plan_args(&format!("connector validate --instance i-1 --file {path}"));

        assert_eq!(call.method, Method::POST);
        assert_eq!(
            call.path,
            format!("/v2/{PROJECT}/instances/i-1/connector/validate")
        );
        assert_eq!(
            body_json(&call),
            json!({
                "type": "KAFKA_REPLICATOR_SOURCE",
                "task": {"bootstrap_servers": "127.0.0.1:9092", "direction": "pull"},
            })
        );
    }

    #[test]
    fn plan_connector_validate_keeps_validate_body() {
        let body = json!({"type": "KAFKA_REPLICATOR_SOURCE", "task": {"user_name": "u"}});
        let (_file, path) = temp_file(body.to_string().as_bytes());

        let call = plan_args(&format!("connector validate --instance i-1 --file {path}"));

        assert_eq!(body_json(&call), body);
    }

    #[test]
    fn plan_connector_validate_rejects_other_bodies() {
        let (_file, path) = temp_file(b"{\"topics\": \"a\"}");
        let cli = parse_ok(&format!("connector validate --instance i-1 --file {path}"));

        let error = plan(cli.command, Some(PROJECT)).expect_err("a body without type is rejected");

        assert!(
            error
                .to_string()
                .contains("neither `type` nor `source_type`"),
            "{error}"
        );
    }

    #[test]
    fn plan_task_create_rejects_invalid_file() {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        std::io::Write::write_all(&mut file, b"{not json").expect("write temporary file");
        let path = file.path().to_str().expect("UTF-8 path").to_owned();
        let cli = parse_ok(&format!("task create --instance i-1 --file {path}"));

        let error = plan(cli.command, Some(PROJECT)).expect_err("invalid JSON is rejected");

        assert_eq!(
            error.to_string(),
            format!("{path} does not contain valid JSON")
        );
    }

    #[test]
    fn client_requires_keys() {
        let mut options = ClientOptions {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            project: Some(PROJECT.to_owned()),
            ak: None,
            sk: Some("SK".to_owned()),
            output: OutputFormat::Text,
        };
        let missing_ak = ApiClient::new(&options)
            .err()
            .map(|error| error.to_string());
        options.ak = Some("AK".to_owned());
        options.sk = Some(String::new());
        let missing_sk = ApiClient::new(&options)
            .err()
            .map(|error| error.to_string());
        options.sk = Some("SK".to_owned());
        options.endpoint = "127.0.0.1:8780".to_owned();
        let bad_endpoint = ApiClient::new(&options)
            .err()
            .map(|error| error.to_string());

        assert!(
            missing_ak
                .as_deref()
                .is_some_and(|m| m.contains("pass --ak or set WEIR_ACCESS_KEY")),
            "{missing_ak:?}"
        );
        assert!(
            missing_sk
                .as_deref()
                .is_some_and(|m| m.contains("pass --sk or set WEIR_SECRET_KEY")),
            "{missing_sk:?}"
        );
        assert!(
            bad_endpoint
                .as_deref()
                .is_some_and(|m| m.starts_with("invalid --endpoint")),
            "{bad_endpoint:?}"
        );
    }

    #[test]
    fn url_keeps_endpoint_prefix_and_host_port() {
        let options = ClientOptions {
            endpoint: "http://127.0.0.1:8780/weir/".to_owned(),
            project: None,
            ak: Some("AK".to_owned()),
            sk: Some("SK".to_owned()),
            output: OutputFormat::Text,
        };
        let client = ApiClient::new(&options).expect("valid options");
        let call = ApiCall::new(Method::GET, "/v2/p/instances".to_owned(), View::KeyValues)
            .with_query(vec![("name".to_owned(), "a b".to_owned())]);

        let url = client.url_for(&call);

        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8780/weir/v2/p/instances?name=a%20b"
        );
        let host = host_header(&url).expect("host header");
        assert_eq!(host, "127.0.0.1:8780");
    }

    fn sample_task_list() -> Value {
        json!({
            "tasks": [
                {
                    "id": "3c0ac4d1-0000-0000-0000-000000000001",
                    "task_name": "smart-connect-1",
                    "topics_regex": "topic-obs*",
                    "source_type": "NONE",
                    "source_task": {},
                    "sink_type": "OBS_SINK",
                    "sink_task": {"obs_bucket_name": "abcabc", "record_delimiter": "\n"},
                    "status": "RUNNING",
                    "create_time": 1708565483911_i64,
                },
                {
                    "id": "3c0ac4d1-0000-0000-0000-000000000002",
                    "task_name": "replicator",
                    "topics": "a,b",
                    "source_type": "KAFKA_REPLICATOR_SOURCE",
                    "sink_type": "NONE",
                    "status": "PAUSED",
                    "create_time": 1708565483000_i64,
                },
            ],
            "total_number": 2,
            "max_tasks": 18,
            "quota_tasks": 18,
        })
    }

    fn render_value(view: View, value: &Value, format: OutputFormat) -> String {
        render(&view, value.to_string().as_bytes(), format).expect("rendering succeeds")
    }

    #[test]
    fn render_task_table() {
        let text = render_value(View::TaskTable, &sample_task_list(), OutputFormat::Text);

        let expected = "\
ID                                    NAME             STATUS   TYPE                     TOPICS            CREATED
3c0ac4d1-0000-0000-0000-000000000001  smart-connect-1  RUNNING  OBS_SINK                 regex:topic-obs*  2024-02-22T01:31:23Z
3c0ac4d1-0000-0000-0000-000000000002  replicator       PAUSED   KAFKA_REPLICATOR_SOURCE  a,b               2024-02-22T01:31:23Z
total: 2, quota: 18
";
        assert_eq!(text, expected);
    }

    #[test]
    fn render_task_key_values() {
        let task = &sample_task_list()["tasks"][0];

        let text = render_value(View::KeyValues, task, OutputFormat::Text);

        let expected = "\
create_time:                2024-02-22T01:31:23Z
id:                         3c0ac4d1-0000-0000-0000-000000000001
sink_task.obs_bucket_name:  abcabc
sink_task.record_delimiter: \"\\n\"
sink_type:                  OBS_SINK
source_task:                {}
source_type:                NONE
status:                     RUNNING
task_name:                  smart-connect-1
topics_regex:               topic-obs*
";
        assert_eq!(text, expected);
    }

    #[test]
    fn render_json_is_raw_body() {
        let body = b"{\"total_number\": 0, \"tasks\": []}";

        let text = render(&View::TaskTable, body, OutputFormat::Json).expect("rendering");
        let empty = render(&View::Done("done".into()), b"", OutputFormat::Json).expect("rendering");

        assert_eq!(text, "{\"total_number\": 0, \"tasks\": []}\n");
        assert_eq!(empty, "");
    }

    #[test]
    fn render_instance_id() {
        let response = json!({"instance_id": "inst-1", "extra": true});

        let text = render_value(View::InstanceId, &response, OutputFormat::Text);
        let json_text = render_value(View::InstanceId, &response, OutputFormat::Json);

        assert_eq!(text, "inst-1\n");
        assert_eq!(json_text, "{\"instance_id\":\"inst-1\"}\n");
    }

    #[test]
    fn render_connector_with_nodes() {
        let instance = json!({
            "instance_id": "inst-1",
            "name": "kafka-1",
            "status": "RUNNING",
            "connector_enable": true,
            "connector_id": "conn-1",
            "connector_node_num": 2,
            "connector_nodes": [
                {"node_id": "n1", "status": "ALIVE", "pid": 4242, "last_heartbeat": 1708565483911_i64},
                {"node_id": "n2", "status": "DEAD"},
            ],
        });

        let text = render_value(View::Connector, &instance, OutputFormat::Text);
        let json_text = render_value(View::Connector, &instance, OutputFormat::Json);

        let expected = "\
instance_id:        inst-1
connector_enable:   true
connector_id:       conn-1
connector_node_num: 2
status:             RUNNING

connector_nodes:
LAST_HEARTBEAT        NODE_ID  PID   STATUS
2024-02-22T01:31:23Z  n1       4242  ALIVE
-                     n2       -     DEAD
";
        assert_eq!(text, expected);
        let fields: Value = serde_json::from_str(&json_text).expect("JSON output");
        assert_eq!(fields.get("name"), None);
        assert_eq!(fields["connector_id"], "conn-1");
        assert_eq!(fields["connector_nodes"][1]["node_id"], "n2");
    }

    #[test]
    fn render_connector_disabled() {
        let instance = json!({"instance_id": "inst-1", "status": "RUNNING",
                              "connector_enable": false, "connector_node_num": 0});

        let text = render_value(View::Connector, &instance, OutputFormat::Text);

        let expected = "\
instance_id:        inst-1
connector_enable:   false
connector_id:       -
connector_node_num: 0
status:             RUNNING
";
        assert_eq!(text, expected);
    }

    #[test]
    fn render_job_views() {
        let jobs = json!({
            "task_count": "1",
            "tasks": [{
                "id": "8abfa7b272adc5b40172b73130065ae7",
                "name": "enableSmartConnect",
                "status": "SUCCESS",
                "params": "{\"node_cnt\":2}",
                "created_at": "2020-06-15T08:55:53.606Z",
                "updated_at": "2020-06-15T08:56:10.000Z",
            }],
        });
        let progress = json!({
            "progress_percentage": 50,
            "remain_time": 10,
            "step_list": [{"name": "start nodes", "statue": "IN_PROGRESS",
                           "start_time": 1, "end_time": 2}],
        });

        let table = render_value(View::JobTable, &jobs, OutputFormat::Text);
        let show = render_value(View::FirstJob, &jobs, OutputFormat::Text);
        let steps = render_value(View::Progress, &progress, OutputFormat::Text);

        assert_eq!(
            table,
            "\
ID                                NAME                STATUS   CREATED_AT                UPDATED_AT
8abfa7b272adc5b40172b73130065ae7  enableSmartConnect  SUCCESS  2020-06-15T08:55:53.606Z  2020-06-15T08:56:10.000Z
total: 1
"
        );
        assert!(show.contains("params:     {\"node_cnt\":2}\n"), "{show}");
        assert!(show.contains("status:     SUCCESS\n"), "{show}");
        assert_eq!(
            steps,
            "\
progress_percentage: 50
remain_time:         10

STEP         STATUS       START_TIME  END_TIME
start nodes  IN_PROGRESS  1           2
"
        );
    }

    #[test]
    fn render_text_rejects_empty_body() {
        let error = render(&View::KeyValues, b"", OutputFormat::Text).expect_err("no body");
        assert!(error.to_string().contains("empty response"), "{error}");
    }

    #[test]
    fn api_error_display() {
        let plain = br#"{"error_code":"DMS.00404022","error_msg":"This instance does not exist."}"#;
        let nested = br#"{"error":{"code":"APIGW.0301","message":"verify aksk signature fail"}}"#;
        let cases: [(&[u8], Option<&str>, &str); 4] = [
            (
                plain,
                Some("req-1"),
                "404 Not Found DMS.00404022: This instance does not exist. (request id: req-1)",
            ),
            (
                nested,
                None,
                "404 Not Found APIGW.0301: verify aksk signature fail",
            ),
            (b"upstream down", None, "404 Not Found: upstream down"),
            (b"", None, "404 Not Found"),
        ];

        for (body, request_id, expected) in cases {
            let error =
                ApiError::from_response(StatusCode::NOT_FOUND, request_id.map(str::to_owned), body);
            assert_eq!(error.to_string(), expected);
        }
    }

    /// Verifies the signature like the real server, then returns a response chosen by the
    /// path.
    async fn test_handler(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let lookup = |access_key: &str| {
            (access_key == "AK").then(|| SecretAndProject {
                secret_key: "SK".to_owned(),
                project_id: PROJECT.to_owned(),
            })
        };
        if let Err(error) = verify(&method, &uri, &headers, &body, chrono::Utc::now(), lookup) {
            let body = json!({"error_code": error.error_code(), "error_msg": error.to_string()});
            return (
                error.status(),
                [("x-request-id", "req-auth")],
                axum::Json(body),
            )
                .into_response();
        }

        let path = uri.path();
        if path.ends_with("/pause") {
            return StatusCode::NO_CONTENT.into_response();
        }
        if path == "/admin/v1/instances" {
            return axum::Json(json!({"instance_id": "inst-new"})).into_response();
        }
        if path.contains("missing") {
            let body = json!({"error_code": "DMS.00404022",
                              "error_msg": "This instance does not exist."});
            return (
                StatusCode::NOT_FOUND,
                [("x-request-id", "req-404")],
                axum::Json(body),
            )
                .into_response();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        axum::Json(json!({
            "method": method.as_str(),
            "path": path,
            "query": uri.query(),
            "host": header("host"),
            "x_project_id": header("x-project-id"),
            "body": String::from_utf8_lossy(&body),
        }))
        .into_response()
    }

    async fn start_test_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let address = listener.local_addr().expect("local address");
        let app = axum::Router::new().fallback(test_handler);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("test server failed: {error}");
            }
        });
        format!("http://{address}")
    }

    fn options_for(endpoint: &str, output: OutputFormat) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.to_owned(),
            project: Some(PROJECT.to_owned()),
            ak: Some("AK".to_owned()),
            sk: Some("SK".to_owned()),
            output,
        }
    }

    fn command(line: &str) -> ClientCommand {
        parse_ok(line).command
    }

    fn command_words(args: &[&str]) -> ClientCommand {
        parse_words(args).expect("valid arguments").command
    }

    #[tokio::test]
    async fn execute_signed_requests_against_server() {
        let endpoint = start_test_server().await;
        let text = options_for(&endpoint, OutputFormat::Text);
        let json_output = options_for(&endpoint, OutputFormat::Json);
        let host = endpoint.trim_start_matches("http://").to_owned();

        let added = execute(
            &json_output,
            command("instance add --name k --bootstrap-servers h:9092"),
        )
        .await
        .expect("instance add succeeds");
        let paused = execute(&text, command("task pause --instance i-1 t-1"))
            .await
            .expect("task pause succeeds");
        let listed = execute(
            &json_output,
            command_words(&["instance", "list", "--name", "a b/c*"]),
        )
        .await
        .expect("instance list succeeds");
        let created = execute(
            &json_output,
            command("connector create --instance i-1 --node-cnt 2"),
        )
        .await
        .expect("connector create succeeds");

        assert_eq!(added, "{\"instance_id\":\"inst-new\"}\n");
        assert_eq!(paused, "Pause of task t-1 accepted.\n");
        let listed: Value = serde_json::from_str(&listed).expect("JSON output");
        assert_eq!(listed["method"], "GET");
        assert_eq!(listed["path"], format!("/v2/{PROJECT}/instances"));
        assert_eq!(listed["query"], "engine=kafka&name=a%20b%2Fc%2A");
        assert_eq!(listed["host"], host.as_str());
        assert_eq!(listed["x_project_id"], PROJECT);
        let created: Value = serde_json::from_str(&created).expect("JSON output");
        assert_eq!(created["method"], "POST");
        assert_eq!(created["body"], "{\"node_cnt\":2}");
    }

    #[tokio::test]
    async fn execute_reports_api_errors() {
        let endpoint = start_test_server().await;
        let options = options_for(&endpoint, OutputFormat::Text);
        let mut wrong_secret = options.clone();
        wrong_secret.sk = Some("WRONG".to_owned());

        let missing = execute(&options, command("instance show missing-1"))
            .await
            .expect_err("unknown instance fails");
        let unsigned = execute(&wrong_secret, command("instance show i-1"))
            .await
            .expect_err("wrong secret fails");

        assert_eq!(
            format!("{missing:#}"),
            "404 Not Found DMS.00404022: This instance does not exist. (request id: req-404)"
        );
        assert_eq!(
            format!("{unsigned:#}"),
            "401 Unauthorized APIGW.0301: Incorrect IAM authentication information: \
             verify aksk signature fail (request id: req-auth)"
        );
    }

    #[tokio::test]
    async fn execute_reports_unreachable_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("local address");
        drop(listener);
        let endpoint = format!("http://{address}");
        let options = options_for(&endpoint, OutputFormat::Text);

        let error = execute(&options, command("instance list"))
            .await
            .expect_err("closed port fails");

        let message = format!("{error:#}");
        assert!(
            message.starts_with(&format!(
                "could not connect to the Weir server at {endpoint}:"
            )),
            "{message}"
        );
        assert!(
            message.contains("Check --endpoint (or WEIR_ENDPOINT)"),
            "{message}"
        );
    }
}
