//! The one HTTP/1.1 request reader the doubles share, and the serving loop of the
//! doubles that answer with a [`Reply`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

/// One request: its method, path (with the query), headers (names lowercased) and body.
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads one request; `None` when the peer sent something that is not one.
    pub fn read(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("GET").to_string();
        let path = words.next().unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        Some(Request { method, path, headers, body })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `Credential=AKID/DATE/REGION/SERVICE/aws4_request` of a SigV4 `Authorization` header.
    fn credential(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        auth.split("Credential=").nth(1)?.split([',', ' ']).next()
    }

    /// The region a SigV4 `Authorization` header signs for.
    pub fn signed_region(&self) -> Option<String> {
        self.credential()?.split('/').nth(2).map(str::to_string)
    }

    /// The access key a SigV4 `Authorization` header signs with.
    pub fn signed_access_key(&self) -> Option<String> {
        self.credential()?.split('/').next().map(str::to_string)
    }

    /// The fields of a form body (`application/x-www-form-urlencoded`, as awsQuery sends).
    pub fn form(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
            })
            .collect()
    }
}

/// An answer: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: vec![("content-type".into(), content_type.into())], body: body.into() }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::new(status, "application/json", body.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn write_to(&self, stream: &mut TcpStream) {
        let mut head = format!("HTTP/1.1 {} X\r\n", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", self.body.len()));
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&self.body);
    }
}

/// Serves on `127.0.0.1:0`, a thread per connection (so a slow answer does not hold the
/// others up), answering each request with `answer`. Returns the URL and the shared script.
pub fn serve<S: Send + 'static>(script: S, answer: fn(&Mutex<S>, &Request) -> Reply) -> (String, Arc<Mutex<S>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let script = Arc::new(Mutex::new(script));
    let shared = script.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let script = shared.clone();
            std::thread::spawn(move || {
                if let Some(req) = Request::read(&stream) {
                    answer(&script, &req).write_to(&mut stream);
                }
            });
        }
    });
    (url, script)
}

/// Decodes `%XX` escapes (a path segment or a form field).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(byte) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("xx"), 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escapes text for an XML element (awsQuery answers).
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_percent_decoding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar!"), "Zm9vYmFyIQ==");
        assert_eq!(super::percent_decode("arn%3Aaws%3Alambda%3Ax"), "arn:aws:lambda:x");
        assert_eq!(super::percent_decode("100%"), "100%");
    }
}
