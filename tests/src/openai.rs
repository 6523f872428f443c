//! An OpenAI-compatible stand-in on loopback: `POST /v1/chat/completions` answered from
//! a queue of canned replies (then a default one), every request body recorded, so tests
//! can check what the engine's generator sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Canned {
    /// A 200 whose message content is `content`, with `usage` when given.
    pub fn content(content: &str, usage: Option<(u32, u32)>) -> Canned {
        let mut body = json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "model": "standin-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        });
        if let Some((p, c)) = usage {
            body["usage"] =
                json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
        }
        Canned::json(200, body)
    }

    /// A 200 whose content is the JSON object `{script, explanation}`.
    pub fn script(script: &str) -> Canned {
        Canned::content(
            &json!({"script": script, "explanation": "what it does"}).to_string(),
            Some((100, 20)),
        )
    }

    pub fn json(status: u16, body: Value) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// The stand-in; it stops when the test process ends.
#[derive(Clone)]
pub struct OpenAiStandIn {
    pub addr: SocketAddr,
    queue: Arc<Mutex<Vec<Canned>>>,
    fallback: Arc<Mutex<Canned>>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl OpenAiStandIn {
    pub fn start() -> OpenAiStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = OpenAiStandIn {
            addr: listener.local_addr().expect("addr"),
            queue: Arc::default(),
            fallback: Arc::new(Mutex::new(Canned::script(":log info \"generated\"\n"))),
            received: Arc::default(),
        };
        let server = s.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(stream));
            }
        });
        s
    }

    /// `base_url` for the plugin's configuration.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The engine configuration that points the bundled `openai` plugin here.
    pub fn config(&self, timeout_ms: u64) -> String {
        format!(
            "[plugins.openai]\nallow = [\"{}\"]\n[plugins.openai.config]\nbase_url = \"{}\"\nmodel = \"standin-model\"\napi_key = \"sk-test\"\ntimeout = \"{timeout_ms}\"\n",
            self.addr,
            self.base_url()
        )
    }

    /// Answers the next requests with these, in order.
    pub fn push(&self, canned: Canned) {
        self.queue.lock().expect("lock").push(canned);
    }

    /// The request bodies received so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }

    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.received.lock().expect("lock").push(request);
        let canned = {
            let mut q = self.queue.lock().expect("lock");
            if q.is_empty() {
                self.fallback.lock().expect("lock").clone()
            } else {
                q.remove(0)
            }
        };
        if !line.contains("/v1/chat/completions") {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        }
        std::thread::sleep(canned.delay);
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
            canned.status,
            canned.body.len()
        );
        for (k, v) in &canned.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(canned.body.as_bytes());
    }
}
