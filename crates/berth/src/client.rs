//! The HTTP client of berthd's API: one HTTP/1 connection over the unix socket per request, JSON
//! in and out, and the mapping of failures to messages a user can act on (the daemon's
//! `{"message": ...}`, or how to start the daemon when the socket cannot be reached). It knows
//! routes only as paths; it does not interpret the answers.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use berth_types::{ErrorBody, API_PREFIX};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::UnixStream;

/// Where a rootful berthd listens unless `--socket` or `BERTH_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// The socket of the berthd the user running the CLI would talk to by default: root's is
/// [`DEFAULT_SOCKET`], another user's is their rootless berthd's, `$XDG_RUNTIME_DIR/berth/berth.sock`
/// (`/run/user/UID/...` when the variable is unset).
pub fn default_socket(uid: u32, xdg_runtime_dir: Option<&std::ffi::OsStr>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from(DEFAULT_SOCKET);
    }
    let runtime = match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(format!("/run/user/{uid}")),
    };
    runtime.join("berth/berth.sock")
}

/// Why a request to berthd failed.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be connected.
    Unreachable { socket: PathBuf, error: io::Error },
    /// The connection broke during the exchange.
    Connection { socket: PathBuf, error: hyper::Error },
    /// berthd answered with an error status.
    Daemon { status: StatusCode, message: String },
    /// berthd's answer is not the JSON expected.
    InvalidAnswer { error: serde_json::Error },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Daemon { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { socket, error } => {
                let socket = socket.display();
                let reason = describe(error).to_lowercase();
                match error.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => write!(
                        f,
                        "cannot reach berthd at {socket} ({reason}): is the daemon running? \
                         start it with: berthd --socket {socket}"
                    ),
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        "cannot reach berthd at {socket} ({reason}): run berth as a user who may \
                         open the socket, such as root"
                    ),
                    _ => write!(f, "cannot reach berthd at {socket} ({reason})"),
                }
            }
            ClientError::Connection { socket, error } => {
                write!(f, "connection to berthd at {} failed: {error}", socket.display())
            }
            ClientError::Daemon { message, .. } => f.write_str(message),
            ClientError::InvalidAnswer { error } => {
                write!(f, "berthd answered with unexpected JSON: {error}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// The text of an I/O error without Rust's "(os error N)" suffix.
fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

/// The path of an API route: `/v1/` and the segments, each percent-encoded so a name can never
/// reach another route.
pub fn route(segments: &[&str]) -> String {
    let mut path = String::from(API_PREFIX);
    for segment in segments {
        path.push('/');
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                path.push(char::from(byte));
            } else {
                path.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    path
}

/// Turns an API answer into the type the command renders.
pub fn decode<T: DeserializeOwned>(answer: Value) -> Result<T, ClientError> {
    serde_json::from_value(answer).map_err(|error| ClientError::InvalidAnswer { error })
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self { socket: socket.to_owned() }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(body).expect("request bodies are plain structs and maps");
        self.request(Method::POST, path, Some(body)).await
    }

    /// A POST whose meaning is all in its path (`/stop`, `/prune`).
    pub async fn post_empty(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::POST, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.request(Method::DELETE, path, None).await.map(drop)
    }

    /// Sends one request on a fresh connection; an empty answer (204) is `Value::Null`.
    async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|error| ClientError::Unreachable { socket: self.socket.clone(), error })?;
        let broken = |error| ClientError::Connection { socket: self.socket.clone(), error };
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(broken)?;
        // Drives the connection; it ends when `sender` is dropped with this function.
        tokio::spawn(connection);

        let mut request = Request::builder().method(method).uri(path).header(HOST, "berthd");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a path from route() and fixed headers make a valid request");
        let response = sender.send_request(request).await.map_err(broken)?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(broken)?.to_bytes();

        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(error) => error.message,
                Err(_) => format!("berthd answered {status} without an error message"),
            };
            return Err(ClientError::Daemon { status, message });
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|error| ClientError::InvalidAnswer { error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_talks_to_the_system_daemon_and_users_to_their_rootless_one() {
        use std::ffi::OsStr;
        assert_eq!(default_socket(0, Some(OsStr::new("/run/user/0"))), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            default_socket(1001, Some(OsStr::new("/run/user/1001"))),
            PathBuf::from("/run/user/1001/berth/berth.sock")
        );
        assert_eq!(default_socket(1001, None), PathBuf::from("/run/user/1001/berth/berth.sock"));
        assert_eq!(default_socket(1001, Some(OsStr::new(""))), PathBuf::from("/run/user/1001/berth/berth.sock"));
    }

    #[test]
    fn routes_encode_every_segment() {
        assert_eq!(route(&["networks"]), "/v1/networks");
        assert_eq!(route(&["networks", "n1", "connect"]), "/v1/networks/n1/connect");
        assert_eq!(route(&["sandboxes", "a/b?c d"]), "/v1/sandboxes/a%2Fb%3Fc%20d");
    }

    #[test]
    fn an_unreachable_daemon_says_how_to_start_it() {
        let error = ClientError::Unreachable {
            socket: PathBuf::from("/run/berth/berth.sock"),
            error: io::Error::from_raw_os_error(nix::libc::ECONNREFUSED),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach berthd at /run/berth/berth.sock (connection refused): is the daemon \
             running? start it with: berthd --socket /run/berth/berth.sock"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_reported_as_unreachable() {
        let client = Client::new(Path::new("/nonexistent/berth.sock"));
        let error = client.get(&route(&["version"])).await.unwrap_err();
        assert!(
            error.to_string().starts_with("cannot reach berthd at /nonexistent/berth.sock (no such file or directory)"),
            "{error}"
        );
    }

    /// A one-request HTTP server on a socket in a temporary directory answers with an error.
    #[tokio::test]
    async fn a_daemon_error_is_its_message() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = std::env::temp_dir().join(format!("berth-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("berth.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let read = stream.read(&mut request).await.unwrap();
            let body = r#"{"message":"network n1 not found"}"#;
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        let error = Client::new(&socket).get(&route(&["networks", "n1"])).await.unwrap_err();
        let request = server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(request.starts_with("GET /v1/networks/n1 HTTP/1.1\r\n"), "{request}");
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), "network n1 not found");
    }
}
