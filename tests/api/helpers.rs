//! Starting a server for a test and talking to it.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use opsflow::clock::{Clock, ManualClock, SystemClock};
use opsflow::server::Server;
use opsflow::settings::{LogFormat, Secret, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Tokens every test server accepts: token → actor and roles.
pub const TOKENS: &str = "desk=dana:service_desk;req=rui:requester;l2=lee:l2_engineer;\
l3=vic:l3_vendor;lead=lin:l1_lead;boss=max:duty_manager;nobody=nora:auditor;\
cm=carla:change_manager;cab1=ann:cab_member;cab2=ben:cab_member;cab3=cai:cab_member;\
ecab=eve:ecab_member;impl=ivan:implementer;pm=paul:problem_manager;an=anna:analyst;\
rm=rita:release_manager;be=bo:build_engineer;qa=quinn:tester;ra1=ray:release_approver;\
ra2=rose:release_approver;dep=dev:deployer;so=sol:service_owner;\
slm=sam:service_level_manager;cr=cora:customer_representative;ps=pat:provider_signatory;\
cs=cy:customer_signatory;ro=ron:report_owner;dm=dora:department_manager;exec=lea:leadership;\
adm=ada:admin";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A copy of the shipped `processes/` folder in which `file` is edited by `edit`; returns
/// the temporary folder (keep it alive) and the copied processes folder.
pub fn processes_copy(file: &str, edit: impl Fn(String) -> String) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let processes = dir.path().join("processes");
    std::fs::create_dir(&processes).unwrap();
    for entry in std::fs::read_dir(repo_path("processes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if name == file { edit(text) } else { text };
        std::fs::write(processes.join(name), text).unwrap();
    }
    (dir, processes)
}

/// A running server with its own database file.
pub struct TestApp {
    pub base: String,
    /// The server's engine, for background steps a test runs itself.
    pub engine: Arc<opsflow::engine::Engine>,
    pub client: reqwest::Client,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An answer: status, headers and body (JSON when it parses, else a string).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem document of the given status and type slug.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(
            self.body["type"],
            format!("urn:opsflow:problem:{slug}"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(self.body["title"].as_str().is_some());
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&repo_path("processes"), &repo_path("rules"), None).await
}

/// Starts a server on `processes` and `rules`, on a fresh database or on `reuse`'s.
/// The database of one test: a SQLite file in a temporary folder, or, when
/// `OPSFLOW_TEST_POSTGRES_URL` is set, a PostgreSQL database of its own on that server
/// (dropped when the test ends).
pub struct TestDb {
    pub url: String,
    _dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("OPSFLOW_TEST_POSTGRES_URL") {
            Ok(admin) if !admin.is_empty() => {
                let name = format!("opsflow_t_{}", uuid::Uuid::now_v7().simple());
                let url = opsflow::store::create_database(&admin, &name)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "OPSFLOW_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}"
                        )
                    });
                TestDb {
                    url,
                    _dir: dir,
                    postgres: Some((admin, name)),
                }
            }
            _ => TestDb {
                url: format!("sqlite://{}", dir.path().join("opsflow.db").display()),
                _dir: dir,
                postgres: None,
            },
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime; use a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _ = opsflow::store::drop_database(&admin, &name).await;
                });
            })
            .join();
        }
    }
}

pub async fn spawn_app_with(processes: &Path, rules: &Path, reuse: Option<TestDb>) -> TestApp {
    spawn_app_on_clock(processes, rules, reuse, Arc::new(SystemClock)).await
}

/// A server whose engine reads time from `clock`.
pub async fn spawn_app_on_clock(
    processes: &Path,
    rules: &Path,
    reuse: Option<TestDb>,
    clock: Arc<dyn Clock>,
) -> TestApp {
    spawn_app_configured(processes, rules, reuse, clock, |_| {}).await
}

/// A server on the shipped processes whose clock starts at `start` (RFC 3339) and moves
/// only when the test moves it, with its timer loop off (the test fires what falls due) and
/// its settings changed by `configure`.
pub async fn spawn_app_at(
    start: &str,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, Arc<ManualClock>) {
    let at = opsflow::clock::parse_ms(start).expect("an RFC 3339 time");
    let clock = ManualClock::at(at);
    let app = spawn_app_configured(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        clock.clone(),
        |s| {
            s.timer_interval_ms = 0;
            configure(s);
        },
    )
    .await;
    (app, clock)
}

/// A server whose engine reads time from `clock`, with settings changed by `configure`.
pub async fn spawn_app_configured(
    processes: &Path,
    rules: &Path,
    reuse: Option<TestDb>,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let db = match reuse {
        Some(db) => db,
        None => TestDb::new().await,
    };
    let mut settings = Settings {
        db: db.url.clone(),
        processes: processes.to_path_buf(),
        rules: rules.to_path_buf(),
        calendars: repo_path("calendars"),
        kpis: repo_path("kpis"),
        listen: "127.0.0.1:0".parse().unwrap(),
        idempotency_ttl: 3600,
        reload_poll_ms: 0,
        reload_min_interval_ms: 0,
        log_format: LogFormat::Text,
        tokens: Secret::new(TOKENS),
        ..Settings::defaults().expect("default settings")
    };
    configure(&mut settings);
    let server = if settings.simulate {
        Server::build(&settings).await
    } else {
        Server::build_with_clock(&settings, clock).await
    }
    .expect("server starts");
    let base = format!("http://{}", server.addr());
    let engine = server.engine().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        engine,
        client: reqwest::Client::new(),
        db,
        stop: Some(stop),
        serving: Some(serving),
    }
}

impl TestApp {
    /// Asserts that `value` fits the schema `name` of the server's OpenAPI document.
    #[track_caller]
    pub fn assert_documented_sync(doc: &Value, name: &str, value: &Value) {
        let schema = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"],
        });
        let v = jsonschema::validator_for(&schema).expect("the document's schemas compile");
        let problems: Vec<String> = v
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{name}: {problems:?}");
    }

    /// This server's `/openapi.json`.
    pub async fn openapi(&self) -> Value {
        let a = self
            .raw(self.client.get(format!("{}/openapi.json", self.base)))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert!(a.content_type().starts_with("application/json"));
        a.body
    }

    /// Asserts that `value` fits the schema `name` of this server's `/openapi.json`.
    pub async fn assert_documented(&self, name: &str, value: &Value) {
        let doc = self.openapi().await;
        Self::assert_documented_sync(&doc, name, value);
    }

    /// Tells the server to stop (it finishes the requests in flight) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Stops the server and hands back its database for a restart.
    pub async fn shut_down(self) -> TestDb {
        let TestApp {
            db, stop, serving, ..
        } = self;
        if let Some(s) = stop {
            let _ = s.send(());
        }
        if let Some(h) = serving {
            h.await.expect("server task").expect("server stops cleanly");
        }
        db
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        finish(req).await
    }

    /// A POST with a body sent as is, under the given content type.
    pub async fn post_text(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: &str,
    ) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_owned());
        finish(req).await
    }

    /// A POST with an `Idempotency-Key` header.
    pub async fn post_with_key(&self, path: &str, token: &str, key: &str, body: Value) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body);
        finish(req).await
    }

    /// Fires with an `If-Match` header.
    pub async fn fire_if_match(
        &self,
        id: &str,
        transition: &str,
        token: &str,
        if_match: &str,
        data: Value,
    ) -> Answer {
        let req = self
            .client
            .post(format!(
                "{}/api/v1/instances/{id}/transitions/{transition}",
                self.base
            ))
            .bearer_auth(token)
            .header("if-match", if_match)
            .json(&json!({ "data": data }));
        finish(req).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Answer {
        finish(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    /// Creates an event as the requester; returns its id.
    pub async fn new_event(&self) -> String {
        let a = self
            .post(
                "/api/v1/instances",
                "req",
                json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "VPN down"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn fire(&self, id: &str, transition: &str, token: &str, data: Value) -> Answer {
        self.post(
            &format!("/api/v1/instances/{id}/transitions/{transition}"),
            token,
            json!({ "data": data }),
        )
        .await
    }

    /// Fires and asserts success; returns the instance.
    pub async fn fire_ok(&self, id: &str, transition: &str, token: &str, data: Value) -> Value {
        let a = self.fire(id, transition, token, data).await;
        assert_eq!(a.status, StatusCode::OK, "{transition}: {}", a.text);
        a.body
    }

    /// A classified first-line event.
    pub async fn event_at_l1(&self) -> String {
        let id = self.new_event().await;
        let v = self
            .fire_ok(
                &id,
                "classify",
                "desk",
                json!({"category": "order_consultation", "impact": "low", "urgency": "medium"}),
            )
            .await;
        assert_eq!(v["state"], "l1");
        id
    }

    /// Creates an instance of `process` as `token`; returns it.
    pub async fn create(&self, process: &str, token: &str, data: Value) -> Value {
        let a = self
            .post(
                "/api/v1/instances",
                token,
                json!({"process": process, "data": data}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.body
    }

    /// Creates an instance of `process` as `token`; returns its id.
    pub async fn create_id(&self, process: &str, token: &str, data: Value) -> String {
        self.create(process, token, data).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Casts a vote on an approval transition.
    pub async fn vote(&self, id: &str, transition: &str, token: &str, decision: &str) -> Answer {
        self.post(
            &format!("/api/v1/instances/{id}/transitions/{transition}"),
            token,
            json!({ "vote": decision, "comment": format!("{token} votes {decision}") }),
        )
        .await
    }

    /// The kinds and transitions of an instance's trace, `kind:transition>to` each.
    pub async fn steps(&self, id: &str) -> Vec<String> {
        self.trace(id)
            .await
            .iter()
            .map(|r| {
                format!(
                    "{}:{}>{}",
                    r["kind"].as_str().unwrap(),
                    r["transition"].as_str().unwrap_or("-"),
                    r["to"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// Asserts the trace tells the instance's whole story: numbered 1..n without gaps,
    /// each step starting where the one before ended, ending in the current state at the
    /// current version.
    pub async fn assert_trace_consistent(&self, id: &str) {
        let trace = self.trace(id).await;
        let current = self
            .get(&format!("/api/v1/instances/{id}"), "desk")
            .await
            .body;
        assert!(!trace.is_empty());
        assert_eq!(trace[0]["kind"], "created");
        for (i, r) in trace.iter().enumerate() {
            assert_eq!(r["seq"], i as i64 + 1, "gapless sequence");
            if i > 0 {
                assert_eq!(
                    r["from"],
                    trace[i - 1]["to"],
                    "step {} starts where {} ended",
                    i + 1,
                    i
                );
                assert_eq!(
                    r["prev_hash"],
                    trace[i - 1]["hash"],
                    "record {} is chained",
                    i + 1
                );
            }
        }
        assert_eq!(trace.last().unwrap()["to"], current["state"]);
        assert_eq!(current["version"], trace.len() as i64);
    }

    pub async fn trace(&self, id: &str) -> Vec<Value> {
        let a = self
            .get(&format!("/api/v1/instances/{id}/trace"), "desk")
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.body["records"].as_array().unwrap().clone()
    }

    /// The trace without its SLA records: the steps callers and timers took.
    pub async fn trace_steps(&self, id: &str) -> Vec<Value> {
        let mut trace = self.trace(id).await;
        trace.retain(|r| r["kind"] != "sla");
        trace
    }
}

async fn finish(req: reqwest::RequestBuilder) -> Answer {
    let response = req.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Answer {
        status,
        headers,
        body,
        text,
    }
}
