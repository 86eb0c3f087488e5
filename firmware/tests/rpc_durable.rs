//! Issue 7 item 1 through the RPC layer, in process: an approved
//! `POST /v1/package` handled by the real [`Service`] on a store whose file
//! I/O is recorded ([`vfs::Recorder`]). The record holding the new send
//! bound is fsync'ed, renamed and its directory fsync'ed after the prompt
//! is approved and before the pad range is first read; the reply exists
//! only after all of it.

mod common;

use otc_device::audit::AuditLog;
use otc_device::confirm::{Broker, Decision, Screen};
use otc_device::pad::vfs::{Op, RealFs, Recorder};
use otc_device::pad::{PadStore, StoreOptions};
use otc_device::platform::{Platform, RealPlatform};
use otc_device::rpc::{ApprovalPrompt, Limits, Service};
use otc_proto::Format;
use otc_proto::routes;
use std::sync::Arc;
use std::time::Duration;

/// A screen whose owner approves every prompt at once, and says when.
struct Approver(Recorder<RealFs>);

impl Screen for Approver {
    type Prompt = ApprovalPrompt;
    type Ticket = ();
    fn show(&self, _prompt: ApprovalPrompt) {
        self.0.mark("prompt shown");
    }
    fn wait(&self, _ticket: &(), _wait: Duration) -> Option<Decision> {
        self.0.mark("approved");
        Some(Decision::Approve)
    }
    fn withdraw(&self, _ticket: &()) {}
}

#[test]
fn the_reply_comes_after_the_bound_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let dir = std::fs::canonicalize(&dir).unwrap();
    let rec = Recorder::new(RealFs);
    let store =
        PadStore::open_with_vfs(Arc::new(rec.clone()), dir.clone(), StoreOptions::default())
            .unwrap();
    common::new_pad(
        &store,
        "bob",
        1 << 20,
        Format::V3,
        &tmp.path().join("bob.otcpad"),
    )
    .unwrap();
    let pad = dir
        .join("pads")
        .join(format!("{}.pad", store.meta("bob").unwrap().pad_id));
    let contacts = dir.join("contacts");
    let record_tmp = contacts.join("bob.json.tmp");
    let record = contacts.join("bob.json");

    let platform = RealPlatform::new();
    let clock = platform.clock();
    let (audit, _) = AuditLog::open(&dir).unwrap();
    let device = Service::new(
        Arc::new(store),
        Broker::new(Approver(rec.clone()), clock.clone(), Duration::from_secs(5)),
        audit,
        &platform,
        Limits::default(),
        "alice".into(),
        Box::new(|_| {}),
    )
    .unwrap();

    rec.take();
    let (status, body) = device.handle(
        "POST",
        routes::PACKAGE,
        br#"{"to": "bob", "message": "attack at dawn"}"#,
        &|| true,
    );
    rec.mark("reply");
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let index = reply["index"].as_u64().unwrap();

    let ops = rec.take();
    let at = |what: &str, pred: &dyn Fn(&Op) -> bool| {
        ops.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in {ops:#?}"))
    };
    let approved = at("approval", &|op| *op == Op::Mark("approved".into()));
    let tmp_sync = at("record fsync", &|op| *op == Op::SyncAll(record_tmp.clone()));
    let rename = at("record rename", &|op| {
        *op == Op::Rename(record_tmp.clone(), record.clone())
    });
    let dir_sync = at("contacts/ fsync", &|op| {
        *op == Op::SyncDir(contacts.clone())
    });
    let read = at(
        "read of the pad range",
        &|op| matches!(op, Op::Read { path, offset, .. } if *path == pad && *offset == index),
    );
    let replied = at("reply", &|op| *op == Op::Mark("reply".into()));
    assert!(
        approved < tmp_sync
            && tmp_sync < rename
            && rename < dir_sync
            && dir_sync < read
            && read < replied,
        "approved {approved}, record fsync {tmp_sync}, rename {rename}, dir fsync {dir_sync}, pad read {read}, reply {replied}: {ops:#?}"
    );
    // Nothing read from the pad before the owner approved.
    assert!(
        !ops[..approved]
            .iter()
            .any(|op| matches!(op, Op::Read { path, .. } if *path == pad)),
        "{ops:#?}"
    );
}
