//! The typed blocking client of a message relay (the original One Time Chat
//! relay API, see `otc_proto::relay`): [`RelayClient::check`],
//! [`RelayClient::send`], [`RelayClient::get_messages`] (with our relay's
//! `wait=` long poll) and [`RelayClient::next_ref`].
//!
//! The relay is untrusted (report section 4): anything it says is checked
//! before the chat client acts on it, and nothing it can send makes this
//! client panic, hang or grow without bound:
//! - every request is bounded in time (connect, write, and the whole reply
//!   within the timeout, plus the long poll's `wait`);
//! - a reply is read to at most [`MAX_RELAY_REPLY`] bytes (settable lower);
//! - a `/getmessages` reply goes through [`parse_get_messages`], a pure
//!   function (fuzzed: `fuzz/fuzz_targets/relay_reply.rs`) that refuses
//!   garbage JSON, a `count` that is not the number of messages, more
//!   messages than asked for, refs below `start_ref` or not strictly
//!   increasing, a message for someone else, a sender name no relay would
//!   accept, and "incomplete" with nothing in it (which would make a client
//!   loop forever);
//! - a `/send` reply must say `received: true` and echo a tail of what was
//!   sent.
//!
//! Each refusal is a [`RelayClientError::Untrusted`] saying what was wrong.
//! Requests are HTTP/1.1, one per connection, `Connection: close`; `/send`
//! is form-encoded, as the original client sends it, so that the original
//! relay accepts it too.
//!
//! ## TLS
//! `https://` relays are spoken to over TLS 1.2/1.3 (rustls, ring). The
//! certificate is checked against the system's roots, or, when
//! [`RelayOptions::ca_file`] is set, against the certificates in that PEM
//! file only: a CA, or the relay's own (self-signed) certificate pinned.
//!
//! Decision: the system's roots come from `rustls-native-certs` (the
//! operating system's store: Debian's ca-certificates and any CA the
//! owner added), not `webpki-roots` (Mozilla's list frozen into the
//! binary): a distrusted CA then goes away with the system's security
//! updates, without a new `otc`, and a company CA the owner installed
//! works.
//!
//! Plain `http://` is refused to an address that is not loopback or
//! private (RFC 1918, IPv6 unique-local, link-local) unless
//! [`RelayOptions::insecure`] (`otc --insecure-relay`): on the open
//! internet every on-path observer would see who writes to whom, and when.

use crate::{Deadline, Response, read_response_limited};
use otc_proto::relay::{
    CHECK, CheckResponse, GET_MESSAGES, GET_NEXT_REF, GetMessagesResponse, NextRefResponse,
    RelayError, SEND, SendResponse,
};
use serde::de::DeserializeOwned;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default bound on connecting, writing and reading one reply (a long poll
/// adds its `wait` to it).
pub const DEFAULT_RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest relay reply (head and body) read by default: room for 100
/// messages of 64 KiB (our relay's defaults) as base64 JSON. A longer reply
/// is refused.
pub const MAX_RELAY_REPLY: usize = 12 * 1024 * 1024;

/// The longest sender name accepted from a relay (our relay's own limit).
pub const MAX_UID_BYTES: usize = 64;

/// What went wrong talking to a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayClientError {
    #[error("bad relay URL {url:?}: {why} (expected https://HOST[:PORT] or http://HOST:PORT)")]
    BadUrl { url: String, why: String },
    /// Plain HTTP to an address on the internet, not allowed.
    #[error(
        "refusing plain http:// to the relay at {url} ({addr} is not a loopback or private address): anyone on the way would see who writes to whom; use https://, or say --insecure-relay if you really mean it"
    )]
    Insecure { url: String, addr: SocketAddr },
    /// The TLS settings could not be set up (unreadable CA file, no roots).
    #[error("cannot set up TLS for the relay at {url}: {why}")]
    TlsSetup { url: String, why: String },
    /// The TLS handshake failed: most often a certificate this client
    /// does not trust.
    #[error("TLS with the relay at {url} failed: {why}")]
    Tls { url: String, why: String },
    #[error("cannot reach the relay at {url}: {source}; is it running, and is the URL right?")]
    Connect { url: String, source: std::io::Error },
    #[error("the relay at {url} did not answer within {timeout:?}; it may be down or overloaded")]
    Timeout { url: String, timeout: Duration },
    #[error("talking to the relay at {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("the relay at {url} refused (HTTP {status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The connection ended before a whole reply: the relay stopped,
    /// restarted or dropped it. Not an integrity warning: nothing came
    /// that could be wrong.
    #[error(
        "the relay at {url} is not answering: it closed the connection before a whole reply (stopped or restarting?); check that it runs, then try again"
    )]
    Closed { url: String },
    /// A reply came and is wrong (malformed, oversized, inconsistent with
    /// what was asked).
    #[error("the relay at {url} sent a reply that cannot be trusted: {what}")]
    Untrusted { url: String, what: String },
}

/// Why a relay reply was refused (the pure part of
/// [`RelayClientError::Refused`] and [`RelayClientError::Untrusted`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The relay answered with its error shape.
    #[error("HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    /// Anything else wrong.
    #[error("{0}")]
    Untrusted(String),
}

/// What a `/getmessages` reply must match: what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected<'a> {
    pub recipient: &'a str,
    pub start_ref: u64,
    pub maxcount: u64,
}

/// Checks a `/getmessages` reply (status and body as they came) against
/// what was asked. Pure, total, never panics: fuzzed.
pub fn parse_get_messages(
    status: u16,
    body: &[u8],
    want: &Expected<'_>,
) -> Result<GetMessagesResponse, ReplyError> {
    let r: GetMessagesResponse = parse_body(status, body)?;
    let untrusted = |what: String| Err(ReplyError::Untrusted(what));
    if r.recipient_uid != want.recipient {
        return untrusted(format!(
            "asked for {:?}'s messages, got a reply for {:?}",
            want.recipient, r.recipient_uid
        ));
    }
    if r.count != r.messages.len() as u64 {
        return untrusted(format!(
            "count says {} but {} messages came",
            r.count,
            r.messages.len()
        ));
    }
    if r.count > want.maxcount {
        return untrusted(format!(
            "{} messages came, more than the {} asked for",
            r.count, want.maxcount
        ));
    }
    if !r.complete && r.messages.is_empty() {
        return untrusted("it says there is more but sent no message".into());
    }
    let mut floor = want.start_ref;
    for m in &r.messages {
        if m.msg_ref < floor {
            return untrusted(if m.msg_ref < want.start_ref {
                format!(
                    "message ref {} is below the start_ref {} asked for",
                    m.msg_ref, want.start_ref
                )
            } else {
                format!(
                    "message refs are not increasing (ref {} again or lower)",
                    m.msg_ref
                )
            });
        }
        if m.recipient_uid != want.recipient {
            return untrusted(format!(
                "message ref {} is for {:?}, not {:?}",
                m.msg_ref, m.recipient_uid, want.recipient
            ));
        }
        if !valid_uid(&m.sender_uid) {
            return untrusted(format!(
                "message ref {} has a sender name no relay accepts (1 to {MAX_UID_BYTES} bytes, no control characters)",
                m.msg_ref
            ));
        }
        floor = match m.msg_ref.checked_add(1) {
            Some(f) => f,
            None => {
                return untrusted("message ref at the largest number: no ref can follow".into());
            }
        };
    }
    Ok(r)
}

/// Checks a `/send` reply against the contents sent. Pure, never panics.
pub fn parse_send(status: u16, body: &[u8], contents: &str) -> Result<SendResponse, ReplyError> {
    let r: SendResponse = parse_body(status, body)?;
    if !r.received {
        return Err(ReplyError::Untrusted("it says received: false".into()));
    }
    if !contents.ends_with(&r.echo_tail) {
        return Err(ReplyError::Untrusted(format!(
            "its echo_tail {:?} is not the end of what was sent: it stored something else",
            r.echo_tail
        )));
    }
    Ok(r)
}

/// The whole raw reply (head and body) of a `/getmessages`, as the fuzz
/// target feeds it: read as HTTP within `max_reply` bytes, then
/// [`parse_get_messages`].
pub fn parse_raw_get_messages(
    raw: &[u8],
    max_reply: usize,
    want: &Expected<'_>,
) -> Result<GetMessagesResponse, ReplyError> {
    let mut r = raw;
    let reply = read_response_limited(&mut r, max_reply)
        .map_err(|e| ReplyError::Untrusted(format!("not an HTTP reply: {e}")))?;
    parse_get_messages(reply.status, &reply.body, want)
}

fn valid_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_UID_BYTES && !s.chars().any(char::is_control)
}

fn parse_body<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ReplyError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| {
            ReplyError::Untrusted(format!("HTTP {status} body is not the expected JSON: {e}"))
        });
    }
    match serde_json::from_slice::<RelayError>(body) {
        Ok(e) => Err(ReplyError::Refused {
            status,
            message: printable(&e.message, 300),
        }),
        Err(_) => Err(ReplyError::Refused {
            status,
            message: format!(
                "no error message (body starts {:?})",
                printable(&String::from_utf8_lossy(&body[..body.len().min(80)]), 80)
            ),
        }),
    }
}

/// At most `max` characters of `s`, control characters escaped: text from
/// the relay goes into error messages shown on a terminal.
fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Percent-encoding for `application/x-www-form-urlencoded` and query
/// strings: everything but unreserved characters is escaped (so base64's
/// `+`, `/` and `=` survive).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An `http://HOST[:PORT][/PREFIX]` URL, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// The `Host` header: `HOST[:PORT]` as written.
    pub host: String,
    /// The port (80 when none is written).
    pub port: u16,
    /// Path prefix without the trailing `/` (usually empty).
    pub prefix: String,
    /// `https://`: spoken over TLS (port 443 when none is written).
    pub tls: bool,
}

impl HttpUrl {
    /// Parses (does not resolve) `url`: `http://` or `https://`.
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("only http:// and https:// URLs are supported".to_string());
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err("no host".into());
        }
        if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the path may not have a query, fragment or spaces".into());
        }
        let port = match hostport.rsplit_once(':') {
            // An IPv6 literal without a port ends with ']'.
            Some((h, p)) if !p.contains(']') => {
                if h.is_empty() {
                    return Err("no host".into());
                }
                p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?
            }
            _ if tls => 443,
            _ => 80,
        };
        Ok(HttpUrl {
            host: hostport.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// The host name or address alone (no port, no IPv6 brackets).
    pub fn hostname(&self) -> &str {
        let name = match self.host.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => h,
            _ => self.host.as_str(),
        };
        name.trim_start_matches('[').trim_end_matches(']')
    }

    /// The first address `host` resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let name = self.hostname();
        (name, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {name:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{name:?} has no address"))
    }

    /// A name for this relay that the device accepts as a cursor key
    /// (`/v1/cursor/{name}`: letters, digits, `.-_:`, at most 128):
    /// `HOST:PORT`, lower-cased (host names are case-insensitive, so one
    /// relay written two ways keeps one read position; the device's
    /// `/runrpc` keys the original client's `server_address` the same way),
    /// with any other character as `_`.
    pub fn cursor_name(&self) -> String {
        let host = match self.host.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => h,
            _ => self.host.as_str(),
        };
        let raw = format!("{host}:{}{}", self.port, self.prefix);
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        name.truncate(128);
        name
    }
}

/// How a relay may be reached (see the module's "TLS" section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayOptions {
    /// A PEM file of the only certificates trusted for `https://`: a CA,
    /// or the relay's own certificate pinned. `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow plain `http://` to an address that is not loopback or private.
    pub insecure: bool,
}

/// Loopback, RFC 1918 / IPv6 unique-local, link-local (and unspecified):
/// addresses plain HTTP may go to without `--insecure-relay`.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_address(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// The rustls settings for `https://` relays under `opts`.
fn tls_config(opts: &RelayOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "cannot read the certificate file {} (relay_ca): {e}; it must be PEM (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "the certificate file {} (relay_ca) has no PEM certificate in it",
                    path.display()
                ));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!(
                        "a certificate in {} (relay_ca) cannot be used: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // One odd certificate in the system's store is no reason
                // to refuse the others.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no trusted root certificates found on this system ({} error(s) reading them); install ca-certificates, or give relay_ca = \"FILE.pem\" in the config",
                    found.errors.len()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// What the TLS handshake's error means, in words.
fn tls_failure(e: &std::io::Error, opts_pinned: bool) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .map(|r| r.to_string())
        .unwrap_or_else(|| e.to_string());
    let cert = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if cert {
        let whose = if opts_pinned {
            "it is not the certificate pinned by relay_ca (nor signed by it)"
        } else {
            "it is not signed by a CA this system trusts"
        };
        format!(
            "the relay's certificate is not trusted ({inner}): {whose}; the connection may be intercepted; if the relay's certificate really changed, update relay_ca in the config"
        )
    } else {
        inner
    }
}

/// A client of one relay.
#[derive(Clone, Debug)]
pub struct RelayClient {
    url: String,
    target: HttpUrl,
    addr: SocketAddr,
    timeout: Duration,
    max_reply: usize,
    /// For `https://`: the TLS settings, and whether the roots are pinned.
    tls: Option<(Arc<rustls::ClientConfig>, bool)>,
}

impl RelayClient {
    /// A client of the relay at `url` (`https://HOST[:PORT]` or
    /// `http://HOST:PORT`), resolved now, with the system's roots, plain
    /// HTTP only to local addresses, [`DEFAULT_RELAY_TIMEOUT`] and
    /// [`MAX_RELAY_REPLY`].
    pub fn new(url: &str) -> Result<RelayClient, RelayClientError> {
        RelayClient::with_options(url, &RelayOptions::default())
    }

    /// [`RelayClient::new`] under `opts`. Nothing is sent: a plain
    /// `http://` URL to a public address is refused here.
    pub fn with_options(url: &str, opts: &RelayOptions) -> Result<RelayClient, RelayClientError> {
        let bad = |why| RelayClientError::BadUrl {
            url: url.to_string(),
            why,
        };
        let target = HttpUrl::parse(url).map_err(bad)?;
        let addr = target.resolve().map_err(bad)?;
        let url = url.trim_end_matches('/').to_string();
        if !target.tls && !opts.insecure && !is_local_address(addr.ip()) {
            return Err(RelayClientError::Insecure { url, addr });
        }
        let tls = if target.tls {
            let cfg = tls_config(opts).map_err(|why| RelayClientError::TlsSetup {
                url: url.clone(),
                why,
            })?;
            Some((cfg, opts.ca_file.is_some()))
        } else {
            None
        };
        Ok(RelayClient {
            url,
            target,
            addr,
            timeout: DEFAULT_RELAY_TIMEOUT,
            max_reply: MAX_RELAY_REPLY,
            tls,
        })
    }

    /// A client of the relay at `addr` (`http://ADDR`).
    pub fn from_addr(addr: SocketAddr) -> RelayClient {
        RelayClient {
            url: format!("http://{addr}"),
            target: HttpUrl {
                host: addr.to_string(),
                port: addr.port(),
                prefix: String::new(),
                tls: false,
            },
            addr,
            timeout: DEFAULT_RELAY_TIMEOUT,
            max_reply: MAX_RELAY_REPLY,
            tls: None,
        }
    }

    /// Bound connecting, writing and reading a reply by `timeout` each.
    pub fn with_timeout(mut self, timeout: Duration) -> RelayClient {
        self.timeout = timeout;
        self
    }

    /// Refuse replies longer than `max_reply` bytes.
    pub fn with_max_reply(mut self, max_reply: usize) -> RelayClient {
        self.max_reply = max_reply;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The name this relay's read position is kept under on the device.
    pub fn cursor_name(&self) -> String {
        self.target.cursor_name()
    }

    /// `GET /check`: the relay is up and says `{"status":"ok"}`.
    pub fn check(&self) -> Result<(), RelayClientError> {
        let reply = self.request("GET", CHECK, None, self.timeout)?;
        let r: CheckResponse = parse_body(reply.status, &reply.body).map_err(|e| self.err(e))?;
        if r.status != "ok" {
            return Err(self.err(ReplyError::Untrusted(format!(
                "/check says status {:?}, not \"ok\"",
                printable(&r.status, 40)
            ))));
        }
        Ok(())
    }

    /// `POST /send` (form-encoded). `Ok` only once the relay has said it
    /// stored exactly these contents.
    pub fn send(
        &self,
        sender: &str,
        recipient: &str,
        contents: &str,
    ) -> Result<SendResponse, RelayClientError> {
        let body = format!(
            "sender_uid={}&recipient_uid={}&contents={}",
            form_encode(sender),
            form_encode(recipient),
            form_encode(contents)
        );
        let reply = self.request(
            "POST",
            SEND,
            Some(("application/x-www-form-urlencoded", body.as_bytes())),
            self.timeout,
        )?;
        parse_send(reply.status, &reply.body, contents).map_err(|e| self.err(e))
    }

    /// `GET /getmessages`: `recipient`'s messages from `start_ref` on, at
    /// most `maxcount`; with `wait`, the relay may hold the request that
    /// many seconds until a message comes (the timeout grows by as much).
    /// The reply is checked by [`parse_get_messages`].
    pub fn get_messages(
        &self,
        recipient: &str,
        start_ref: u64,
        maxcount: u64,
        wait: Option<u64>,
    ) -> Result<GetMessagesResponse, RelayClientError> {
        let mut path = format!(
            "{GET_MESSAGES}?recipient_uid={}&start_ref={start_ref}&maxcount={maxcount}",
            form_encode(recipient)
        );
        if let Some(w) = wait {
            path.push_str(&format!("&wait={w}"));
        }
        let timeout = self.timeout + Duration::from_secs(wait.unwrap_or(0));
        let reply = self.request("GET", &path, None, timeout)?;
        let want = Expected {
            recipient,
            start_ref,
            maxcount,
        };
        parse_get_messages(reply.status, &reply.body, &want).map_err(|e| self.err(e))
    }

    /// `GET /getnextref`: the ref the next message will get.
    pub fn next_ref(&self, recipient: &str) -> Result<u64, RelayClientError> {
        let path = format!("{GET_NEXT_REF}?recipient_uid={}", form_encode(recipient));
        let reply = self.request("GET", &path, None, self.timeout)?;
        parse_body::<NextRefResponse>(reply.status, &reply.body)
            .map(|r| r.nextref)
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: ReplyError) -> RelayClientError {
        match e {
            ReplyError::Refused { status, message } => RelayClientError::Refused {
                url: self.url.clone(),
                status,
                message,
            },
            ReplyError::Untrusted(what) => RelayClientError::Untrusted {
                url: self.url.clone(),
                what,
            },
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        timeout: Duration,
    ) -> Result<Response, RelayClientError> {
        let url = || self.url.clone();
        let io = |source| RelayClientError::Io { url: url(), source };
        let deadline = Instant::now() + timeout;
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|source| RelayClientError::Connect { url: url(), source })?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.target.prefix, self.target.host
        );
        if let Some((ctype, b)) = body {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if let Some((_, b)) = body {
            out.extend_from_slice(b);
        }
        // A relay may answer (413) and close before reading the whole
        // body: a failed write is not an error by itself, the reply says
        // what happened.
        let read = match &self.tls {
            None => {
                let _wrote = s.write_all(&out);
                let mut timed = Deadline {
                    s: &mut s,
                    deadline,
                };
                read_response_limited(&mut timed, self.max_reply)
            }
            Some((cfg, pinned)) => {
                let tls_err = |why: String| RelayClientError::Tls { url: url(), why };
                let name =
                    rustls::pki_types::ServerName::try_from(self.target.hostname().to_string())
                        .map_err(|e| {
                            tls_err(format!(
                                "{:?} is not a valid TLS server name: {e}",
                                self.target.hostname()
                            ))
                        })?;
                let mut conn = rustls::ClientConnection::new(cfg.clone(), name)
                    .map_err(|e| tls_err(e.to_string()))?;
                s.set_read_timeout(Some(self.timeout)).map_err(io)?;
                while conn.is_handshaking() {
                    if let Err(e) = conn.complete_io(&mut s) {
                        return Err(match e.kind() {
                            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                                RelayClientError::Timeout {
                                    url: url(),
                                    timeout: self.timeout,
                                }
                            }
                            _ => tls_err(tls_failure(&e, *pinned)),
                        });
                    }
                }
                let mut tls = rustls::StreamOwned::new(conn, s);
                let _wrote = tls.write_all(&out).and_then(|_| tls.flush());
                let mut timed = TlsDeadline {
                    s: &mut tls,
                    deadline,
                };
                read_response_limited(&mut timed, self.max_reply)
            }
        };
        match read {
            Ok(r) => Ok(r),
            Err(e) => Err(match e.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => RelayClientError::Timeout {
                    url: url(),
                    timeout,
                },
                ErrorKind::InvalidData => RelayClientError::Untrusted {
                    url: url(),
                    what: e.to_string(),
                },
                // Cut off (whether or not the request was all written):
                // the relay is not answering, not lying.
                ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted => RelayClientError::Closed { url: url() },
                _ => RelayClientError::Io {
                    url: url(),
                    source: e,
                },
            }),
        }
    }
}

/// A TLS stream whose every read is bounded by what is left of one deadline.
struct TlsDeadline<'a> {
    s: &'a mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    deadline: Instant,
}

impl Read for TlsDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.s.sock.set_read_timeout(Some(left))?;
        self.s.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Expected<'static> = Expected {
        recipient: "bob",
        start_ref: 5,
        maxcount: 3,
    };

    fn msg(r: u64, to: &str, from: &str) -> String {
        format!(r#"{{"ref":{r},"recipient_uid":"{to}","sender_uid":"{from}","contents":"AAAA"}}"#)
    }

    fn reply(msgs: &[String], count: Option<usize>, complete: bool) -> Vec<u8> {
        format!(
            r#"{{"recipient_uid":"bob","count":{},"messages":[{}],"complete":{complete}}}"#,
            count.unwrap_or(msgs.len()),
            msgs.join(",")
        )
        .into_bytes()
    }

    fn untrusted(body: &[u8]) -> String {
        match parse_get_messages(200, body, &WANT) {
            Err(ReplyError::Untrusted(w)) => w,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_good_reply_passes() {
        let r = parse_get_messages(
            200,
            &reply(
                &[msg(5, "bob", "alice"), msg(9, "bob", "carol")],
                None,
                true,
            ),
            &WANT,
        )
        .expect("good");
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[1].msg_ref, 9);
        let empty = parse_get_messages(200, &reply(&[], None, true), &WANT).expect("empty");
        assert!(empty.messages.is_empty());
    }

    #[test]
    fn bogus_replies_are_refused_with_the_reason() {
        assert!(
            untrusted(&reply(&[msg(4, "bob", "alice")], None, true))
                .contains("below the start_ref")
        );
        assert!(
            untrusted(&reply(
                &[msg(6, "bob", "a"), msg(6, "bob", "a")],
                None,
                true
            ))
            .contains("not increasing")
        );
        assert!(
            untrusted(&reply(
                &[msg(7, "bob", "a"), msg(6, "bob", "a")],
                None,
                true
            ))
            .contains("not increasing")
        );
        assert!(untrusted(&reply(&[msg(6, "eve", "a")], None, true)).contains("is for \"eve\""));
        let four: Vec<String> = (5..9).map(|r| msg(r, "bob", "a")).collect();
        assert!(untrusted(&reply(&four, None, true)).contains("more than the 3"));
        assert!(untrusted(&reply(&[msg(6, "bob", "a")], Some(2), true)).contains("count says 2"));
        assert!(untrusted(&reply(&[], None, false)).contains("sent no message"));
        assert!(
            untrusted(&reply(&[msg(6, "bob", "a\\u001b[2J")], None, true)).contains("sender name")
        );
        assert!(untrusted(&reply(&[msg(6, "bob", "")], None, true)).contains("sender name"));
        assert!(
            untrusted(&reply(&[msg(u64::MAX, "bob", "a")], None, true)).contains("largest number")
        );
        assert!(
            untrusted(
                b"{\"recipient_uid\":\"alice\",\"count\":0,\"messages\":[],\"complete\":true}"
            )
            .contains("reply for")
        );
        for garbage in [
            &b""[..],
            b"null",
            b"[]",
            b"{",
            b"\xff\xfe",
            b"{\"count\":-1}",
        ] {
            assert!(
                untrusted(garbage).contains("not the expected JSON"),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn relay_errors_are_refusals_with_their_message() {
        let e = parse_get_messages(429, br#"{"error":429,"message":"slow down"}"#, &WANT);
        assert_eq!(
            e,
            Err(ReplyError::Refused {
                status: 429,
                message: "slow down".into()
            })
        );
        let e = parse_get_messages(502, b"<html>\x1b[31m", &WANT).expect_err("html");
        let text = e.to_string();
        assert!(
            text.contains("HTTP 502") && !text.contains('\x1b'),
            "{text}"
        );
    }

    #[test]
    fn send_replies_must_echo_what_was_sent() {
        let ok = parse_send(
            200,
            br#"{"received":true,"echo_tail":"BBCC","ref":3}"#,
            "AABBCC",
        );
        assert_eq!(ok.expect("ok").msg_ref, 3);
        assert!(
            parse_send(
                200,
                br#"{"received":true,"echo_tail":"XX","ref":3}"#,
                "AABBCC"
            )
            .is_err()
        );
        assert!(
            parse_send(
                200,
                br#"{"received":false,"echo_tail":"CC","ref":3}"#,
                "AABBCC"
            )
            .is_err()
        );
    }

    #[test]
    fn raw_replies() {
        let body = reply(&[], None, true);
        let mut raw =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        raw.extend_from_slice(&body);
        assert!(parse_raw_get_messages(&raw, 1 << 20, &WANT).is_ok());
        let e = parse_raw_get_messages(&raw, 50, &WANT).expect_err("too long");
        assert!(e.to_string().contains("longer than 50"), "{e}");
        assert!(parse_raw_get_messages(b"garbage", 1 << 20, &WANT).is_err());
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8000/").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1:8000", 8000, "")
        );
        assert_eq!(u.cursor_name(), "127.0.0.1:8000");
        let u = HttpUrl::parse("http://relay.example/otc").expect("url");
        assert_eq!((u.port, u.prefix.as_str()), (80, "/otc"));
        assert_eq!(u.cursor_name(), "relay.example:80_otc");
        let u = HttpUrl::parse("http://Relay.EXAMPLE:8000").expect("url");
        assert_eq!(
            u.cursor_name(),
            "relay.example:8000",
            "case-insensitive host"
        );
        let u = HttpUrl::parse("http://[::1]:9").expect("v6");
        assert_eq!(u.resolve().expect("resolves").port(), 9);
        assert_eq!(u.cursor_name(), "_::1_:9");
        let u = HttpUrl::parse("https://relay.example/otc").expect("https");
        assert!(u.tls);
        assert_eq!((u.port, u.hostname()), (443, "relay.example"));
        for bad in [
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://h:x",
            "http://h/a?b",
            "http://:80",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(form_encode("a+b/c= d"), "a%2Bb%2Fc%3D%20d");
    }

    #[test]
    fn plain_http_only_to_local_addresses() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.5.5",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            let ip: IpAddr = local.parse().expect("ip");
            assert!(is_local_address(ip), "{local}");
        }
        for public in [
            "192.0.2.1",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(!is_local_address(ip), "{public}");
        }
        // Refused before any traffic: 192.0.2.1 (TEST-NET-1) is never reached.
        let e = RelayClient::new("http://192.0.2.1:8000").expect_err("public plain http");
        assert!(matches!(e, RelayClientError::Insecure { .. }), "{e}");
        assert!(e.to_string().contains("--insecure-relay"), "{e}");
        let opts = RelayOptions {
            insecure: true,
            ..RelayOptions::default()
        };
        assert!(RelayClient::with_options("http://192.0.2.1:8000", &opts).is_ok());
        assert!(RelayClient::new("http://127.0.0.1:8000").is_ok());
    }
}
