//! The route table of the device's RPC endpoint: each endpoint's method
//! and path, named once.
//!
//! The device dispatches with [`Endpoint::parse`]; clients build paths with
//! [`Endpoint::path`]. Nothing else should spell `"/v1/..."`: a new
//! endpoint is a new [`Endpoint`] variant here, and the compiler then points
//! at every `match` that must learn about it.
//!
//! | endpoint                 | methods     | body → reply (see [`crate::rpc`])     |
//! |--------------------------|-------------|---------------------------------------|
//! | [`Endpoint::Package`]    | `POST`      | `PackageRequest` → `PackageResponse`  |
//! | [`Endpoint::Unpackage`]  | `POST`      | `UnpackageRequest` → `UnpackageResponse` |
//! | [`Endpoint::Compose`]    | `POST`      | `ComposeRequest` → `PackageResponse`  |
//! | [`Endpoint::Contacts`]   | `GET`       | → `ContactsResponse`                  |
//! | [`Endpoint::Status`]     | `GET`       | → `StatusResponse`                    |
//! | [`Endpoint::Cursor`]     | `GET`,`PUT` | `Cursor` → `Cursor`                   |
//! | [`Endpoint::RunRpc`]     | `POST`      | `runrpc::Call` → the original's reply (see [`crate::runrpc`]) |
//!
//! Every path starts with [`PREFIX`] except [`RUNRPC`], which is the
//! original One Time Chat client's path and stays as it wrote it.

use std::fmt;

/// The API version prefix every path starts with.
pub const PREFIX: &str = "/v1";

/// `POST`: seal a message for a contact.
pub const PACKAGE: &str = "/v1/package";
/// `POST`: open a package from a contact.
pub const UNPACKAGE: &str = "/v1/unpackage";
/// `POST`: the owner writes a message on the device and seals it (issue
/// 19); the laptop gets the package, never the text.
pub const COMPOSE: &str = "/v1/compose";
/// `GET`: the contacts with a pad.
pub const CONTACTS: &str = "/v1/contacts";
/// `GET`: owner, version, busy.
pub const STATUS: &str = "/v1/status";
/// `GET`/`PUT` `CURSOR_PREFIX{relay}`: the client's read position on a
/// relay (see [`cursor_path`]).
pub const CURSOR_PREFIX: &str = "/v1/cursor/";

/// `POST`: the original One Time Chat client's RPC (see [`crate::runrpc`]).
pub const RUNRPC: &str = crate::runrpc::PATH;

/// The path of the cursor kept for `relay`.
pub fn cursor_path(relay: &str) -> String {
    format!("{CURSOR_PREFIX}{relay}")
}

/// The HTTP methods the endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    /// The method as it appears on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }

    /// The method named `s` (case-sensitive, as HTTP methods are), if the
    /// endpoint uses it.
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint, with the relay name of a cursor path borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint<'a> {
    Package,
    Unpackage,
    Compose,
    Contacts,
    Status,
    /// The relay name is whatever follows [`CURSOR_PREFIX`], unchecked
    /// (the device checks it, so that a bad name gets a clear error rather
    /// than `not_found`).
    Cursor(&'a str),
    /// The original client's `POST /runrpc`.
    RunRpc,
}

impl<'a> Endpoint<'a> {
    /// The endpoint a request path names (any `?query` is ignored), or
    /// `None` when there is no such endpoint.
    pub fn parse(path: &'a str) -> Option<Endpoint<'a>> {
        let path = path.split('?').next().unwrap_or(path);
        match path {
            PACKAGE => Some(Endpoint::Package),
            UNPACKAGE => Some(Endpoint::Unpackage),
            COMPOSE => Some(Endpoint::Compose),
            CONTACTS => Some(Endpoint::Contacts),
            STATUS => Some(Endpoint::Status),
            RUNRPC => Some(Endpoint::RunRpc),
            _ => path.strip_prefix(CURSOR_PREFIX).map(Endpoint::Cursor),
        }
    }

    /// The request path.
    pub fn path(&self) -> String {
        match self {
            Endpoint::Package => PACKAGE.to_string(),
            Endpoint::Unpackage => UNPACKAGE.to_string(),
            Endpoint::Compose => COMPOSE.to_string(),
            Endpoint::Contacts => CONTACTS.to_string(),
            Endpoint::Status => STATUS.to_string(),
            Endpoint::Cursor(relay) => cursor_path(relay),
            Endpoint::RunRpc => RUNRPC.to_string(),
        }
    }

    /// The methods this endpoint answers; any other gets
    /// `method_not_allowed`.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Endpoint::Package | Endpoint::Unpackage | Endpoint::Compose | Endpoint::RunRpc => {
                &[Method::Post]
            }
            Endpoint::Contacts | Endpoint::Status => &[Method::Get],
            Endpoint::Cursor(_) => &[Method::Get, Method::Put],
        }
    }

    /// True if `method` (as on the request line) is one this endpoint
    /// answers.
    pub fn allows(&self, method: &str) -> bool {
        Method::parse(method).is_some_and(|m| self.methods().contains(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths on the wire, spelled out once more on purpose: changing
    /// one breaks every deployed client.
    #[test]
    fn paths_on_the_wire() {
        assert_eq!(Endpoint::Package.path(), "/v1/package");
        assert_eq!(Endpoint::Unpackage.path(), "/v1/unpackage");
        assert_eq!(Endpoint::Compose.path(), "/v1/compose");
        assert_eq!(Endpoint::Contacts.path(), "/v1/contacts");
        assert_eq!(Endpoint::Status.path(), "/v1/status");
        assert_eq!(
            Endpoint::Cursor("r.example:443").path(),
            "/v1/cursor/r.example:443"
        );
        for p in [PACKAGE, UNPACKAGE, COMPOSE, CONTACTS, STATUS, CURSOR_PREFIX] {
            assert!(p.starts_with(PREFIX));
        }
        // The original client's path, outside the version prefix.
        assert_eq!(Endpoint::RunRpc.path(), "/runrpc");
    }

    #[test]
    fn parse_is_the_inverse_of_path() {
        for e in [
            Endpoint::Package,
            Endpoint::Unpackage,
            Endpoint::Contacts,
            Endpoint::Status,
            Endpoint::Cursor("relay1"),
            Endpoint::Cursor(""),
            Endpoint::RunRpc,
        ] {
            assert_eq!(Endpoint::parse(&e.path()), Some(e));
        }
        assert_eq!(Endpoint::parse("/v1/status?x=1"), Some(Endpoint::Status));
        for p in [
            "/",
            "/v1",
            "/v1/",
            "/v1/nothing",
            "/v2/package",
            "/v1/contacts/bob",
        ] {
            assert_eq!(Endpoint::parse(p), None, "{p}");
        }
    }

    #[test]
    fn methods() {
        assert!(Endpoint::Package.allows("POST"));
        assert!(!Endpoint::Package.allows("GET"));
        assert!(!Endpoint::Package.allows("post"));
        assert!(Endpoint::RunRpc.allows("POST"));
        assert!(!Endpoint::RunRpc.allows("GET"));
        assert!(Endpoint::Cursor("r").allows("PUT"));
        assert!(!Endpoint::Cursor("r").allows("DELETE"));
        assert!(Endpoint::Status.allows(Method::Get.as_str()));
        assert_eq!(Method::parse("PUT"), Some(Method::Put));
        assert_eq!(Method::Post.to_string(), "POST");
    }
}
