//! `POST /runrpc`: the original One Time Chat client's calls, answered by
//! the same handlers as `/v1` (issue 10, item 4).
//!
//! The wire shapes and why they are so are in [`otc_proto::runrpc`]. This
//! module only translates: it binds the call's arguments to the original's
//! parameter names, checks that the owner's uid is where the original puts
//! it, and hands a typed `/v1` request to [`Service::seal`], [`Service::open`]
//! or the cursor store. Nothing here decides about pad bytes, prompts,
//! limits, lockouts, rate limits or audit entries: those are the `/v1`
//! handlers', so a call through `/runrpc` is prompted, limited and audited
//! exactly as the same request on `/v1`. The front layer in front of both is
//! the same too (same listener, same `Host`/`Origin`/`Content-Type` checks).

use super::{ApprovalPrompt, Failure, Reply, Service, json};
use crate::confirm::Screen;
use otc_proto::b64;
use otc_proto::rpc::{ErrorCode, PackageRequest, UnpackageRequest, Warning};
use otc_proto::runrpc::{
    self, Call, CallError, METHODS, PackageReturn, Return, UnpackageReturn, relay_key,
};
use serde_json::{Map, Value};

/// `{"error": TEXT}` with status 200, as the original's `runrpc` answered a
/// call that could not run.
pub(super) fn call_error(text: &str) -> Reply {
    json(
        200,
        &CallError {
            error: text.to_string(),
        },
    )
}

fn returned<T: serde::Serialize>(value: T) -> Reply {
    json(200, &Return { value })
}

/// The call's arguments in the order of `params`: positional first, then
/// by name; each exactly once.
fn bind(
    method: &str,
    params: &[&str],
    args: Vec<Value>,
    mut kwargs: Map<String, Value>,
) -> Result<Vec<Value>, String> {
    let signature = || format!("{method}({})", params.join(", "));
    if args.len() > params.len() {
        return Err(format!(
            "{} takes {} arguments, {} were given",
            signature(),
            params.len(),
            args.len()
        ));
    }
    let mut bound = args;
    for name in &params[bound.len()..] {
        let v = kwargs
            .remove(*name)
            .ok_or_else(|| format!("{} is missing the argument {name}", signature()))?;
        bound.push(v);
    }
    if let Some(extra) = kwargs.keys().next() {
        return Err(if params.contains(&extra.as_str()) {
            format!("{} was given {extra} twice", signature())
        } else {
            format!("{} has no argument {extra}", signature())
        });
    }
    Ok(bound)
}

/// A text argument.
fn text(name: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("{name} must be a string, not {other}")),
    }
}

/// The original's call, typed.
enum Typed {
    Package {
        src_uid: String,
        dst_uid: String,
        message: String,
    },
    Unpackage {
        src_uid: String,
        dst_uid: String,
        package_b64: String,
    },
    GetNextRef {
        uid: String,
        server_address: String,
    },
    SaveNextRef {
        uid: String,
        server_address: String,
        nextref: u64,
    },
}

/// What the original client's `unpackage` returns as the message of one
/// the owner read on the device (the shape is that of any open).
const READ_ON_DEVICE: &str = "(read on the device)";

fn typed(body: &[u8]) -> Result<Typed, String> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the body is not an rpc call: expected a JSON object".into());
    }
    let call: Call =
        serde_json::from_slice(body).map_err(|e| format!("the body is not an rpc call: {e}"))?;
    let params = runrpc::params(&call.method).ok_or_else(|| {
        format!(
            "no such rpc method {:?}; this device answers {}",
            call.method,
            METHODS.join(", ")
        )
    })?;
    let mut a = bind(&call.method, params, call.args, call.kwargs)?.into_iter();
    let mut next = |name: &str| text(name, a.next().unwrap_or(Value::Null));
    Ok(match call.method.as_str() {
        "package" => Typed::Package {
            src_uid: next("src_uid")?,
            dst_uid: next("dst_uid")?,
            message: next("message")?,
        },
        "unpackage" => Typed::Unpackage {
            src_uid: next("src_uid")?,
            dst_uid: next("dst_uid")?,
            package_b64: next("package_b64")?,
        },
        "get_next_ref" => Typed::GetNextRef {
            uid: next("uid")?,
            server_address: next("server_address")?,
        },
        _ => {
            let uid = next("uid")?;
            let server_address = next("server_address")?;
            let nextref = match a.next() {
                Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
                other => {
                    return Err(format!(
                        "nextref must be a whole number from 0, not {}",
                        other.unwrap_or(Value::Null)
                    ));
                }
            };
            Typed::SaveNextRef {
                uid,
                server_address,
                nextref,
            }
        }
    })
}

impl<S: Screen<Prompt = ApprovalPrompt>> Service<S> {
    /// Answer one `/runrpc` call (see the module doc).
    pub(super) fn runrpc(&self, body: &[u8], still_wanted: &dyn Fn() -> bool) -> Reply {
        let call = match typed(body) {
            Ok(c) => c,
            Err(e) => return call_error(&e),
        };
        match call {
            Typed::Package {
                src_uid,
                dst_uid,
                message,
            } => returned(self.original_package(src_uid, dst_uid, message, still_wanted)),
            Typed::Unpackage {
                src_uid,
                dst_uid,
                package_b64,
            } => returned(self.original_unpackage(src_uid, dst_uid, package_b64, still_wanted)),
            Typed::GetNextRef {
                uid,
                server_address,
            } => match self
                .owners_relay(&uid, &server_address)
                .and_then(|relay| self.read_ref(&relay).map_err(|f| f.message))
            {
                Ok(nextref) => returned(nextref),
                Err(e) => call_error(&e),
            },
            Typed::SaveNextRef {
                uid,
                server_address,
                nextref,
            } => match self
                .owners_relay(&uid, &server_address)
                .and_then(|relay| self.save_read_ref(&relay, nextref).map_err(|f| f.message))
            {
                Ok(()) => returned(()),
                Err(e) => call_error(&e),
            },
        }
    }

    /// `Err` unless `uid` is this device's owner, saying which `role` the
    /// original gives the owner's uid.
    fn owner_is(&self, role: &str, uid: &str) -> Result<(), String> {
        if uid == self.owner {
            Ok(())
        } else {
            Err(format!(
                "this device belongs to {:?}: {role} must be {:?}, not {uid:?}",
                self.owner, self.owner
            ))
        }
    }

    fn owners_relay(&self, uid: &str, server_address: &str) -> Result<String, String> {
        self.owner_is("uid", uid)?;
        relay_key(server_address).ok_or_else(|| {
            format!(
                "server_address {server_address:?} names no relay: give http://HOST:PORT \
                 (HOST of letters, digits, '.', '-', '_')"
            )
        })
    }

    /// The original's `package(src_uid, dst_uid, message)`: the owner
    /// sends to the contact `dst_uid`.
    fn original_package(
        &self,
        src_uid: String,
        dst_uid: String,
        message: String,
        still_wanted: &dyn Fn() -> bool,
    ) -> PackageReturn {
        let sealed = self.owner_is("src_uid", &src_uid).and_then(|()| {
            let req = PackageRequest {
                to: dst_uid,
                message: Some(message),
                message_b64: None,
            };
            self.seal(req, still_wanted).map_err(|f| f.message)
        });
        match sealed {
            Ok(r) => PackageReturn {
                success: true,
                package: Some(r.package),
                error: None,
            },
            Err(e) => PackageReturn {
                success: false,
                package: None,
                error: Some(e),
            },
        }
    }

    /// The original's `unpackage(src_uid, dst_uid, package_b64)`: the
    /// contact `src_uid` sent to the owner.
    fn original_unpackage(
        &self,
        src_uid: String,
        dst_uid: String,
        package_b64: String,
        still_wanted: &dyn Fn() -> bool,
    ) -> UnpackageReturn {
        let failed = |error: String, reuse_detected: bool| UnpackageReturn {
            success: false,
            message: None,
            error: Some(error),
            skip_detected: false,
            reuse_detected,
        };
        if let Err(e) = self.owner_is("dst_uid", &dst_uid) {
            return failed(e, false);
        }
        let req = UnpackageRequest {
            from: src_uid,
            package: package_b64,
        };
        match self.open(req, still_wanted) {
            // Read on the device (issue 19): the original client shows
            // `message` as the contact's text, so it gets this fixed note
            // in its place, never the text (README "Read here").
            Ok(r) if r.read_on_device => UnpackageReturn {
                success: true,
                message: Some(READ_ON_DEVICE.to_string()),
                error: None,
                skip_detected: r.warnings.contains(&Warning::Skipped),
                reuse_detected: r.warnings.contains(&Warning::Replay),
            },
            Ok(r) => {
                let message = r.message.unwrap_or_else(|| {
                    let bytes = b64::decode(&r.message_b64).unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                });
                UnpackageReturn {
                    success: true,
                    message: Some(message),
                    error: None,
                    skip_detected: r.warnings.contains(&Warning::Skipped),
                    reuse_detected: r.warnings.contains(&Warning::Replay),
                }
            }
            Err(Failure { code, message }) => failed(message, code == ErrorCode::Replayed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Vec<Value> {
        v.as_array().unwrap().clone()
    }

    fn kwargs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_bind_by_position_then_name() {
        let p = runrpc::params("package").unwrap();
        let empty = Map::new();
        assert_eq!(
            bind(
                "package",
                p,
                args(serde_json::json!(["a", "b", "m"])),
                empty.clone()
            )
            .unwrap(),
            args(serde_json::json!(["a", "b", "m"]))
        );
        assert_eq!(
            bind(
                "package",
                p,
                args(serde_json::json!(["a"])),
                kwargs(serde_json::json!({"message": "m", "dst_uid": "b"}))
            )
            .unwrap(),
            args(serde_json::json!(["a", "b", "m"]))
        );
        let err = |a: Value, k: Value| bind("package", p, args(a), kwargs(k)).unwrap_err();
        assert!(err(serde_json::json!(["a", "b"]), serde_json::json!({})).contains("missing"));
        assert!(
            err(
                serde_json::json!(["a", "b", "m", "x"]),
                serde_json::json!({})
            )
            .contains("4")
        );
        assert!(
            err(
                serde_json::json!(["a", "b", "m"]),
                serde_json::json!({"message": "m"})
            )
            .contains("twice")
        );
        assert!(
            err(
                serde_json::json!(["a", "b", "m"]),
                serde_json::json!({"mesage": "m"})
            )
            .contains("no argument mesage")
        );
    }

    #[test]
    fn calls_are_typed_or_refused_with_a_reason() {
        assert!(matches!(
            typed(br#"{"method":"save_next_ref","args":["a","http://r:1",7],"kwargs":{}}"#),
            Ok(Typed::SaveNextRef { nextref: 7, .. })
        ));
        for (body, says) in [
            (&br#"["package"]"#[..], "not an rpc call"),
            (
                br#"{"method":"whoami","args":[],"kwargs":{}}"#,
                "no such rpc method",
            ),
            (
                br#"{"method":"package","args":["a","b",5],"kwargs":{}}"#,
                "message must be a string",
            ),
            (
                br#"{"method":"save_next_ref","args":["a","r",-1]}"#,
                "whole number",
            ),
            (
                br#"{"method":"save_next_ref","args":["a","r","7"]}"#,
                "whole number",
            ),
        ] {
            let Err(e) = typed(body) else {
                panic!("{} was accepted", String::from_utf8_lossy(body))
            };
            assert!(e.contains(says), "{e}");
        }
    }
}
