//! Just enough HTTP/1.1 to POST JSON to etcd's gateway over one
//! keep-alive connection, one request at a time, on the caller's thread
//! (like the 9P side's `Conn`, so neither side pays for a client runtime
//! the other does not).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, bail};

/// Largest response body accepted: etcd's answers here are a few hundred
/// bytes, so anything near this is not one of them.
const MAX_BODY: usize = 1 << 20;

/// One keep-alive HTTP/1.1 connection.
pub struct Http {
    reader: BufReader<TcpStream>,
    host: String,
    request: Vec<u8>,
}

impl Http {
    /// Connect to `addr` (HOST:PORT).
    pub fn connect(addr: &str) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            reader: BufReader::new(stream),
            host: addr.to_string(),
            request: Vec::with_capacity(512),
        })
    }

    /// POST `body` as JSON to `path`; the response body of a 200, else an
    /// error carrying the status line and body.
    pub fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.request.extend_from_slice(body);
        self.reader.get_mut().write_all(&self.request)?;
        self.response()
    }

    fn response(&mut self) -> anyhow::Result<Vec<u8>> {
        let status = self.line()?;
        let code = status
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse::<u16>().ok())
            .with_context(|| format!("not an HTTP/1.x status line: {status:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                bail!("bad header line {line:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let body = if chunked {
            self.chunked_body()?
        } else {
            // Without a length this client cannot tell where the body
            // ends on a kept-alive connection.
            let n = length.context("response has neither Content-Length nor chunks")?;
            self.exact(n)?
        };
        if code != 200 {
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    fn chunked_body(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size = self.line()?;
            let size = size.split(';').next().unwrap_or("").trim();
            let n = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size {size:?}"))?;
            if n == 0 {
                // Trailers, if any, end with an empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.exact(n)?);
            anyhow::ensure!(self.line()?.is_empty(), "chunk not followed by CRLF");
        }
    }

    fn exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(n <= MAX_BODY, "a body of {n} bytes is not etcd's");
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// One header line without its CRLF.
    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// The string value of `"key":"…"` in flat JSON such as etcd's answers
/// (its numbers, 64-bit, come quoted); enough to read a member id without
/// a JSON parser.
pub fn json_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &json[at..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that reads one request per canned answer and sends it.
    fn serve(answers: Vec<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s);
            for a in answers {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                r.get_mut().write_all(a.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn lengths_chunks_and_errors_on_one_connection() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
        ]);
        let mut h = Http::connect(&addr).unwrap();
        assert_eq!(h.post("/x", b"{}").unwrap(), b"{}");
        assert_eq!(h.post("/x", b"{}").unwrap(), b"{\"a\":1}");
        let e = h.post("/x", b"{}").unwrap_err().to_string();
        assert!(e.contains("503") && e.contains("busy"), "{e}");
    }

    #[test]
    fn json_strings_are_found_by_key() {
        let j = r#"{"header":{"member_id":"42","raft_term":"2"},"leader":"7"}"#;
        assert_eq!(json_str(j, "member_id"), Some("42"));
        assert_eq!(json_str(j, "leader"), Some("7"));
        assert_eq!(json_str(j, "term"), None);
    }
}
