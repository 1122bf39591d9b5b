//! The event loop: non-blocking sockets (WasmEdge's socket API) waited on with `poll`,
//! requests read and handed to the app, responses written as far as each socket takes them,
//! and between two polls every running job advances by one step. Nothing here blocks on one
//! client; a model call blocks for one token at most.

use server_api::http::{self, Parsed, Request};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant, SystemTime};
use wasmedge_wasi_socket::poll::{self, EventType, Subscription};
use wasmedge_wasi_socket::{TcpListener, TcpStream};

pub type ConnId = u64;

/// What the app answers to a request.
pub enum Reply {
    /// The whole response, and whether the connection stays open after it.
    Whole(Vec<u8>, bool),
    /// A job now owns the response: its bytes come through [`App::step`].
    Started,
}

/// Bytes for a connection from a job's step.
pub struct Out {
    pub conn: ConnId,
    pub bytes: Vec<u8>,
    /// The response is complete: Some(keep the connection open).
    pub end: Option<bool>,
}

pub trait App {
    fn request(&mut self, conn: ConnId, request: Request) -> Reply;
    /// Advance every running job that can go on by one step (one token at most); whether any
    /// did (jobs whose prompt is still being evaluated wait without holding the others up).
    fn step(&mut self, out: &mut Vec<Out>) -> bool;
    /// Whether any job is running (then the loop polls without waiting).
    fn busy(&self) -> bool;
    /// The connection is gone: drop its job and free what it held.
    fn cancel(&mut self, conn: ConnId);
}

pub struct Limits {
    pub max_connections: usize,
    pub max_body: usize,
    /// A request must arrive whole within this from its first byte.
    pub request_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// A client that takes nothing of its pending response for this long is dropped.
    pub write_timeout: Duration,
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// A job owns the response in progress.
    busy: bool,
    /// Close once the output is written.
    closing: bool,
    /// The client's body waits for our `100 Continue`, which was sent.
    continued: bool,
    /// When the request now arriving started; when the connection was last idle-reset;
    /// when output was last taken.
    request_started: Option<Instant>,
    idle_since: Instant,
    last_written: Instant,
}

const LISTENER: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;
/// How long the loop sleeps in `poll` when every running job waits for its prompt.
const PROMPT_POLL: Duration = Duration::from_millis(2);
/// Bytes read per call.
const READ_CHUNK: usize = 64 * 1024;

pub fn serve(listener: TcpListener, limits: Limits, app: &mut dyn App) -> std::io::Result<()> {
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
    let mut next_id: ConnId = 0;
    let mut outs = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut advanced = false;
    loop {
        // Wait for sockets: not at all while jobs advance (they are stepped below), briefly
        // while the running ones wait for their prompts, else until the next timeout could fire.
        let wait = match (app.busy(), advanced) {
            (true, true) => Duration::ZERO,
            (true, false) => PROMPT_POLL,
            (false, _) => Duration::from_millis(500),
        };
        let mut subs = Vec::with_capacity(conns.len() + 2);
        subs.push(Subscription::io(LISTENER, &listener, true, false, None));
        for (&id, c) in &conns {
            // Read while idle or waiting for a request; while a job runs, only to notice a
            // hang-up (a pipelined request waits in the buffer).
            let read = c.input.len() < limits.max_body + 64 * 1024;
            let write = c.written < c.output.len();
            if read || write {
                subs.push(Subscription::io(id, &c.stream, read, write, None));
            }
        }
        subs.push(Subscription::timeout(TIMER, SystemTime::now() + wait));
        let events = poll::poll(&subs)?;
        for event in events {
            match (event.userdata, event.event_type) {
                (TIMER, _) => {}
                (LISTENER, _) => accept(&listener, &mut conns, &mut next_id, &limits),
                (id, EventType::Read) => {
                    let Some(c) = conns.get_mut(&id) else { continue };
                    if !read_into(c, &mut chunk) {
                        drop_conn(&mut conns, id, app);
                        continue;
                    }
                    handle_input(id, c, &limits, app);
                    if !flush(c) {
                        drop_conn(&mut conns, id, app);
                    }
                }
                (id, EventType::Write) => {
                    if let Some(c) = conns.get_mut(&id) {
                        if !flush(c) {
                            drop_conn(&mut conns, id, app);
                        }
                    }
                }
                (id, EventType::Error(_)) => drop_conn(&mut conns, id, app),
                (_, EventType::Timeout) => {}
            }
        }

        // One step of every job.
        advanced = false;
        if app.busy() {
            advanced = app.step(&mut outs);
            for out in outs.drain(..) {
                let Some(c) = conns.get_mut(&out.conn) else {
                    app.cancel(out.conn);
                    continue;
                };
                queue(c, &out.bytes);
                if let Some(keep) = out.end {
                    c.busy = false;
                    c.closing |= !keep;
                    c.idle_since = Instant::now();
                }
                let mut alive = flush(c);
                if alive && !c.busy && !c.closing {
                    // A request that arrived during the job.
                    handle_input(out.conn, c, &limits, app);
                    alive = flush(c);
                }
                if !alive {
                    drop_conn(&mut conns, out.conn, app);
                }
            }
        }

        // Timeouts, and connections done.
        let now = Instant::now();
        let expired: Vec<ConnId> = conns
            .iter()
            .filter(|(_, c)| {
                let pending = c.written < c.output.len();
                (c.closing && !pending)
                    || (pending && now - c.last_written > limits.write_timeout)
                    || (!c.busy && c.request_started.is_some_and(|t| now - t > limits.request_timeout))
                    || (!c.busy && !pending && c.input.is_empty() && now - c.idle_since > limits.idle_timeout)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(c) = conns.get_mut(&id) {
                if !c.closing && !c.busy && c.request_started.is_some_and(|t| now - t > limits.request_timeout) {
                    // Say why, if the client still listens.
                    let e = server_api::ApiError::new(408, "the request did not arrive in time", "invalid_request_error");
                    let bytes = e.response(false);
                    let _ = c.stream.write(&bytes);
                }
            }
            drop_conn(&mut conns, id, app);
        }
    }
}

fn accept(listener: &TcpListener, conns: &mut HashMap<ConnId, Conn>, next_id: &mut ConnId, limits: &Limits) {
    loop {
        match listener.accept(true) {
            Ok((mut stream, _)) => {
                if conns.len() >= limits.max_connections {
                    // Over the cap: say so and close (best effort: one non-blocking write).
                    let e = server_api::ApiError::busy(format!(
                        "this server has {} connections open, its cap (--max-connections)",
                        limits.max_connections
                    ));
                    let _ = stream.write(&e.response(false));
                    continue;
                }
                let now = Instant::now();
                *next_id += 1;
                conns.insert(
                    *next_id,
                    Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        written: 0,
                        busy: false,
                        closing: false,
                        continued: false,
                        request_started: None,
                        idle_since: now,
                        last_written: now,
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // A client that reset before it was accepted; keep serving.
            Err(_) => return,
        }
    }
}

/// Read what the socket has; false when the client has gone.
fn read_into(c: &mut Conn, chunk: &mut [u8]) -> bool {
    loop {
        match c.stream.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                if c.input.is_empty() && !c.busy {
                    c.request_started = Some(Instant::now());
                }
                c.input.extend_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Parse and answer the request at the head of the input, if it is whole.
fn handle_input(id: ConnId, c: &mut Conn, limits: &Limits, app: &mut dyn App) {
    while !c.busy && !c.closing && !c.input.is_empty() {
        match http::parse(&c.input, limits.max_body) {
            Ok(Parsed::Partial { continue_wanted }) => {
                if continue_wanted && !c.continued {
                    queue(c, http::CONTINUE);
                    c.continued = true;
                }
                return;
            }
            Ok(Parsed::Complete(request, used)) => {
                c.input.drain(..used);
                c.continued = false;
                c.request_started = if c.input.is_empty() { None } else { Some(Instant::now()) };
                match app.request(id, request) {
                    Reply::Whole(bytes, keep) => {
                        queue(c, &bytes);
                        c.closing |= !keep;
                        c.idle_since = Instant::now();
                    }
                    Reply::Started => c.busy = true,
                }
            }
            Err(e) => {
                queue(c, &e.response(false));
                c.input.clear();
                c.closing = true;
            }
        }
    }
}

/// Add to the connection's output (the write timeout counts from when output is pending).
fn queue(c: &mut Conn, bytes: &[u8]) {
    if c.written == c.output.len() {
        c.last_written = Instant::now();
    }
    c.output.extend_from_slice(bytes);
}

/// Write what the socket takes; false when the client has gone.
fn flush(c: &mut Conn) -> bool {
    while c.written < c.output.len() {
        match c.stream.write(&c.output[c.written..]) {
            Ok(0) => return false,
            Ok(n) => {
                c.written += n;
                c.last_written = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if c.written == c.output.len() {
        c.output.clear();
        c.written = 0;
    } else if c.written > 1 << 20 {
        c.output.drain(..c.written);
        c.written = 0;
    }
    true
}

fn drop_conn(conns: &mut HashMap<ConnId, Conn>, id: ConnId, app: &mut dyn App) {
    if let Some(c) = conns.remove(&id) {
        if c.busy {
            app.cancel(id);
        }
    }
}
