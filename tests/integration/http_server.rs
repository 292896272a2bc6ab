//! A loopback HTTP/1.1 server for the download tests, written by hand so
//! that it can misbehave on purpose (cut a transfer, ignore `Range`, stall,
//! answer 404) and count every body byte it sends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does for one path.
#[derive(Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    /// Answer `302 Found` to this path instead.
    pub redirect: Option<String>,
    /// Close the connection once this many body bytes (file offset) went
    /// out, for this many requests.
    pub cut_at: Option<u64>,
    pub cuts: u32,
    /// Send the whole file with 200 even when asked for a range.
    pub ignore_range: bool,
    /// Pause between 64 KiB chunks (to make transfers overlap).
    pub chunk_delay: Option<Duration>,
    /// Accept the request and never answer (read-timeout tests).
    pub stall: bool,
    /// Close every reply after this many body bytes.
    pub reply_limit: Option<u64>,
    /// Answer `Range: bytes=N-` from N minus this (saying so in
    /// Content-Range): a range from the wrong start.
    pub range_skew: u64,
    /// Add this to the total size in Content-Range.
    pub total_skew: u64,
    /// Body chunk size [default: 64 KiB] (with `chunk_delay`: a drip).
    pub chunk_size: Option<u64>,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    pub body_bytes: u64,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    hits: Vec<Hit>,
}

pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { base, state }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), route);
    }

    pub fn file(&self, path: &str, body: Vec<u8>) {
        self.route(
            path,
            Route {
                body,
                ..Route::default()
            },
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        let s = self.state.lock().unwrap();
        s.hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Body bytes sent for `path`, over all requests.
    pub fn served(&self, path: &str) -> u64 {
        self.hits(path).iter().map(|h| h.body_bytes).sum()
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let Some((path, range)) = read_request(&stream) else {
        return;
    };
    // The hit is recorded, and its bytes counted, before the client can see
    // them: a test may look as soon as the client exits.
    let (route, idx) = {
        let mut s = state.lock().unwrap();
        let route = s.routes.get(&path).cloned();
        if let Some(r) = s.routes.get_mut(&path)
            && r.cuts > 0
        {
            r.cuts -= 1;
        }
        s.hits.push(Hit {
            path: path.clone(),
            range: range.clone(),
            status: 0,
            body_bytes: 0,
        });
        (route, s.hits.len() - 1)
    };
    let update = |f: &dyn Fn(&mut Hit)| f(&mut state.lock().unwrap().hits[idx]);
    match route {
        None => {
            update(&|h| h.status = 404);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            );
        }
        Some(r) if r.stall => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Some(Route {
            redirect: Some(to), ..
        }) => {
            update(&|h| h.status = 302);
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Some(r) => {
            let len = r.body.len() as u64;
            let start = range
                .as_deref()
                .filter(|_| !r.ignore_range)
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.strip_suffix('-'))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|s| s.saturating_sub(r.range_skew));
            let head = match start {
                Some(s) if s >= len => {
                    update(&|h| h.status = 416);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                Some(s) => {
                    update(&|h| h.status = 206);
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        len - 1,
                        len + r.total_skew,
                        len - s
                    )
                }
                None => {
                    update(&|h| h.status = 200);
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                }
            };
            let from = start.unwrap_or(0);
            let to = match r.cut_at {
                Some(c) if r.cuts > 0 && c > from => c.min(len),
                _ => len,
            };
            let to = r.reply_limit.map_or(to, |l| to.min(from + l));
            let chunk = r.chunk_size.unwrap_or(65536);
            if stream.write_all(head.as_bytes()).is_ok() {
                let mut at = from;
                while at < to {
                    let end = (at + chunk).min(to);
                    let n = end - at;
                    update(&|h| h.body_bytes += n);
                    if stream
                        .write_all(&r.body[at as usize..end as usize])
                        .is_err()
                    {
                        update(&|h| h.body_bytes -= n);
                        break;
                    }
                    at = end;
                    if let Some(d) = r.chunk_delay {
                        std::thread::sleep(d);
                    }
                }
            }
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// The request path and its `Range` header.
fn read_request(stream: &TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    Some((path, range))
}
