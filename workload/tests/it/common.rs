//! `spawn_app`: a fresh database with the embedded migrations, filesystem storage in a temp dir,
//! Basic auth with a known user, and the real router driven with `oneshot`.

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use workload::config::Config;
use workload::http::AppState;

pub(crate) const ADMIN_USER: &str = "admin";
pub(crate) const ADMIN_PASSWORD: &str = "correct-horse-battery";

pub(crate) struct TestApp {
    pub(crate) db: testkit::TestDb,
    pub(crate) state: AppState,
    pub(crate) router: Router,
    pub(crate) patches: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Migrates a database through the library (what the schema tool does).
pub(crate) async fn migrate(dsn: &str) {
    let mut client = workload::db::Dsn::parse(dsn)
        .unwrap()
        .connect()
        .await
        .unwrap();
    workload::migrations::upgrade(&mut client).await.unwrap();
}

pub(crate) fn basic_users_value() -> String {
    format!("{ADMIN_USER}:{}", bcrypt::hash(ADMIN_PASSWORD, 4).unwrap())
}

pub(crate) async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    let db = testkit::test_database();
    migrate(&db.dsn()).await;
    let patches = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("LP_DATABASE_CONNECTION_STRING".into(), db.dsn()),
        (
            "LP_PATCH_STORAGE_FILESYSTEM_PATH".into(),
            patches.path().display().to_string(),
        ),
        ("LP_AUTH_BASIC_ENABLED".into(), "true".into()),
        ("LP_AUTH_BASIC_USERS".into(), basic_users_value()),
        ("LP_DATABASE_CONNECTION_POOL_MAX".into(), "4".into()),
    ];
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k.to_string(), v.to_string()));
    }
    let (config, _) = Config::from_sources(None, env).unwrap();
    let state = workload::server::build_state(config).await.unwrap();
    let router = workload::http::app(state.clone());
    TestApp {
        db,
        state,
        router,
        patches,
    }
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl TestApp {
    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    /// Logs in and returns `Macaroon <token>`.
    pub(crate) async fn admin(&self) -> String {
        let r = self
            .call(
                Method::POST,
                "/v1/admin/login",
                Some(&basic(ADMIN_USER, ADMIN_PASSWORD)),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        format!("Macaroon {}", r.json()["token"].as_str().unwrap())
    }

    pub(crate) async fn upload(&self, admin: &str, filename: &str, content: &[u8]) -> Reply {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/admin/patches")
            .header("authorization", admin)
            .header("content-type", "application/x-bzip2")
            .header("x-patch-filename", filename)
            .body(Body::from(content.to_vec()))
            .unwrap();
        self.send(req).await
    }

    pub(crate) async fn auth_token(&self, admin: &str, id: &str, tier: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/v1/admin/auth-token",
                Some(admin),
                Some(serde_json::json!({"id": id, "tier": tier})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Enrols `machine` with a fresh auth token for `tier`; returns its machine token.
    pub(crate) async fn enroll(&self, admin: &str, machine: &str, tier: &str) -> String {
        let token = self
            .auth_token(admin, &format!("tok-{machine}"), tier)
            .await;
        let r = self
            .call(
                Method::PUT,
                &format!("/v1/client/{machine}"),
                Some(&format!("Bearer {token}")),
                Some(serde_json::json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic"})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.json()["machine-token"].as_str().unwrap().to_string()
    }

    pub(crate) async fn check_in(&self, machine: &str, token: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/client/{machine}/updates"),
            Some(&format!("Bearer {token}")),
            Some(body),
        )
        .await
    }

    pub(crate) fn sql(&self, q: &str) -> String {
        self.db.psql(q).unwrap().trim().to_string()
    }
}

pub(crate) fn patch_name(kernel: &str, flavour: &str, version: &str, arch: &str) -> String {
    format!("livepatch-{kernel}-{flavour}-{version}-{arch}.tar.bz2")
}
