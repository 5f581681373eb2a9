//! The log's events as OCSF 1.8 events: a decided call, or a person's answer to a held one, is
//! an API Activity (class 6003) with the `security_control` profile; an alert is a Detection
//! Finding (class 2004). What OCSF has no place for (provenance, channel, reasons) goes under
//! `unmapped.warden`. Pure: an event and its session's opening in, a JSON object out.
//!
//! The enumerations are those of the OCSF 1.8.0 dictionary and classes. Choices worth knowing:
//! - `activity_id` of a call comes from the tool's traits at decision time: destructive →
//!   Delete (4), write → Update (3), read → Read (2), else Other (99, `activity_name` "Call");
//!   events written before traits were logged are Unknown (0).
//! - A held call is `action_id` 2 (Denied: it did not go through when decided) with
//!   `disposition_id` 14 (Delayed); the person's answer is a second API Activity, approved →
//!   Allowed (1) / Approved (8), denied → Denied (2) / Rejected (25), expired → Denied (2) /
//!   No Action (16). Counting `action_id` 1 thus never over-counts what got through.
//! - In shadow mode the call went through: `action_id` 1 with `disposition_id` 15 (Detected)
//!   when policy would have held or denied it.
//! - An alert only informs: `action_id` 3 (Observed), `disposition_id` 19 (Alert).

use serde_json::{json, Map, Value};

use crate::event::{EventKind, LoggedEvent};

/// The OCSF schema version the export follows.
pub const OCSF_VERSION: &str = "1.8.0";

const API_ACTIVITY: u64 = 6003;
const DETECTION_FINDING: u64 = 2004;

/// The OCSF event for a logged event, or `None` for kinds OCSF export leaves out (session
/// openings, results, messages: they are context, carried on the events they explain).
/// `opened` is the body of the session's `session_opened` event when it is known.
pub fn event(e: &LoggedEvent, opened: Option<&Value>, product_version: &str) -> Option<Value> {
    let (mut out, mut warden) = match e.event.kind {
        EventKind::Decision | EventKind::Call => decision(e),
        EventKind::Approval => approval(e),
        EventKind::Alert => alert(e),
        EventKind::SessionOpened | EventKind::Result | EventKind::Message => return None,
    };
    let class_uid = out["class_uid"].as_u64().unwrap_or_default();
    let profiles: Vec<&str> = if class_uid == API_ACTIVITY || class_uid == DETECTION_FINDING {
        vec!["security_control"]
    } else {
        Vec::new()
    };
    out["time"] = json!(e.event.time_ms);
    out["metadata"] = json!({
        "version": OCSF_VERSION,
        "profiles": profiles,
        "uid": e.index.to_string(),
        "correlation_uid": e.event.session,
        "log_name": "warden-audit",
        "product": {
            "name": "Warden",
            "vendor_name": "Warden",
            "version": product_version,
        },
    });
    let actor = match out.get_mut("actor").map(Value::take) {
        // An approval's actor is the person who answered, set by `approval`.
        Some(own) => own,
        None => actor(&e.event.session, opened),
    };
    if class_uid == DETECTION_FINDING {
        // A finding has no actor of its own: who acted is its evidence.
        out["evidences"] = json!([{ "actor": actor, "uid": e.index.to_string() }]);
    } else {
        out["actor"] = actor;
    }
    if let (Some(agent), true) = (
        opened.and_then(|o| o["agent"].as_str()),
        out["src_endpoint"]["name"] == "agent",
    ) {
        out["src_endpoint"]["name"] = json!(agent);
    }
    warden.insert("event_index".into(), json!(e.index));
    warden.insert("session".into(), json!(e.event.session));
    warden.insert("causes".into(), json!(e.event.causes));
    if let Some(o) = opened {
        for key in ["channel", "profile", "agent", "principal"] {
            if !o[key].is_null() {
                warden.insert(key.into(), o[key].clone());
            }
        }
    }
    out["unmapped"] = json!({ "warden": warden });
    Some(out)
}

/// Who acted: the principal the session runs for, the agent as the application, the session.
fn actor(session: &str, opened: Option<&Value>) -> Value {
    let mut actor = json!({"session": {"uid": session}});
    if let Some(o) = opened {
        if let Some(p) = o["principal"].as_str() {
            actor["user"] = json!({"name": p, "uid": p, "type_id": 1, "type": "User"});
        }
        if let Some(a) = o["agent"].as_str() {
            actor["app_name"] = json!(a);
        }
    }
    actor
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn api_activity(activity_id: u64, activity_name: &str) -> Value {
    json!({
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": API_ACTIVITY * 100 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
    })
}

/// The activity of a call, from the tool's traits logged with the decision.
fn call_activity(traits: &Value) -> (u64, &'static str) {
    if !traits.is_object() {
        return (0, "Unknown");
    }
    if traits["destructive"] == true {
        (4, "Delete")
    } else if traits["write"] == true {
        (3, "Update")
    } else if traits["read"] == true {
        (2, "Read")
    } else {
        (99, "Call")
    }
}

fn severity(id: u64) -> (u64, &'static str) {
    let name = match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    };
    (id, name)
}

fn set_severity(out: &mut Value, id: u64) {
    let (id, name) = severity(id);
    out["severity_id"] = json!(id);
    out["severity"] = json!(name);
}

fn decision(e: &LoggedEvent) -> (Value, Map<String, Value>) {
    let b = &e.event.body;
    let verdict = text(&b["verdict"]);
    let shadow = b["shadow"] == true;
    let (activity_id, activity_name) = call_activity(&b["tool_traits"]);
    let mut out = api_activity(activity_id, activity_name);
    let tool = text(&b["tool"]);
    let mut api = json!({"operation": tool});
    if let Some(id) = b["call_id"].as_str().filter(|s| !s.is_empty()) {
        api["request"] = json!({"uid": id});
    }
    if let Some(up) = b["tool_traits"]["upstream"].as_str() {
        api["service"] = json!({"name": up});
    }
    out["api"] = api;
    // Required by the class. The log does not keep the agent's network address: the endpoint
    // is the agent, named once the session is known (see `event`).
    out["src_endpoint"] = json!({"name": "agent"});

    let (action_id, action, disposition_id, disposition, status_id, sev) = match (verdict, shadow) {
        ("allow", _) => (1, "Allowed", 1, "Allowed", 1, 1),
        (_, true) => (1, "Allowed", 15, "Detected", 1, 2),
        ("hold", false) => (2, "Denied", 14, "Delayed", 2, 2),
        ("deny", false) => (2, "Denied", 2, "Blocked", 2, 3),
        _ => (0, "Unknown", 0, "Unknown", 0, 0),
    };
    out["action_id"] = json!(action_id);
    out["action"] = json!(action);
    out["disposition_id"] = json!(disposition_id);
    out["disposition"] = json!(disposition);
    out["status_id"] = json!(status_id);
    out["status"] = json!(match status_id {
        1 => "Success",
        2 => "Failure",
        _ => "Unknown",
    });
    set_severity(&mut out, sev);

    let reasons: Vec<(&str, &str)> = b["reasons"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| (text(&r["policy"]), text(&r["message"])))
                .collect()
        })
        .unwrap_or_default();
    let said: Vec<String> = reasons.iter().map(|(p, m)| format!("[{p}] {m}")).collect();
    if let Some((policy, message)) = reasons.first() {
        let mut p = json!({"name": policy, "desc": message, "is_applied": true});
        if let Some(digest) = b["policy_digest"].as_str() {
            p["uid"] = json!(digest);
        }
        out["policy"] = p;
        out["status_detail"] = json!(message);
    }
    out["message"] = json!(format!(
        "{tool}: {verdict}{}{}",
        if shadow { " (shadow: allowed)" } else { "" },
        if said.is_empty() {
            String::new()
        } else {
            format!(" — {}", said.join("; "))
        }
    ));
    out["is_alert"] = json!(verdict != "allow");

    let mut warden = Map::new();
    warden.insert(
        "decision_id".into(),
        json!(format!("{}/{}", e.event.session, b["seq"])),
    );
    warden.insert("verdict".into(), json!(verdict));
    warden.insert("shadow".into(), json!(shadow));
    for key in [
        "seq",
        "reasons",
        "provenance",
        "policy_digest",
        "tool_traits",
    ] {
        if !b[key].is_null() {
            warden.insert(key.into(), b[key].clone());
        }
    }
    (out, warden)
}

fn approval(e: &LoggedEvent) -> (Value, Map<String, Value>) {
    let b = &e.event.body;
    let answer = text(&b["decision"]);
    let mut out = api_activity(99, "Approval");
    let (action_id, action, disposition_id, disposition) = match answer {
        "approved" => (1, "Allowed", 8, "Approved"),
        "denied" => (2, "Denied", 25, "Rejected"),
        _ => (2, "Denied", 16, "No Action"),
    };
    out["action_id"] = json!(action_id);
    out["action"] = json!(action);
    out["disposition_id"] = json!(disposition_id);
    out["disposition"] = json!(disposition);
    out["status_id"] = json!(1);
    out["status"] = json!("Success");
    set_severity(&mut out, 1);
    let decision_id = text(&b["decision_id"]);
    out["api"] = json!({"operation": "approve", "request": {"uid": decision_id}});
    let approver = b["approver"].as_str();
    out["src_endpoint"] = json!({"name": approver.unwrap_or("warden")});
    // Who answered: the approver, or Warden itself when the hold expired.
    out["actor"] = match approver {
        Some(who) => {
            json!({"session": {"uid": e.event.session}, "user": {"name": who, "type_id": 1, "type": "User"}})
        }
        None => json!({"session": {"uid": e.event.session}, "app_name": "warden"}),
    };
    out["message"] = json!(match approver {
        Some(who) => format!("held call {decision_id} {answer} by {who}"),
        None => format!("held call {decision_id} {answer}"),
    });
    let mut warden = Map::new();
    for key in ["decision_id", "decision", "approver", "comment"] {
        if !b[key].is_null() {
            warden.insert(key.into(), b[key].clone());
        }
    }
    (out, warden)
}

fn alert(e: &LoggedEvent) -> (Value, Map<String, Value>) {
    let b = &e.event.body;
    let score = b["score"].as_f64().unwrap_or_default();
    let detector = b["detector"].as_str().unwrap_or("warden");
    let reasons: Vec<String> = b["reasons"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| match r {
                    // The detector writes (what, share) pairs.
                    Value::Array(pair) => text(pair.first().unwrap_or(&Value::Null)).to_owned(),
                    other => text(other).to_owned(),
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": DETECTION_FINDING * 100 + 1,
        "type_name": "Detection Finding: Create",
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "action_id": 3,
        "action": "Observed",
        "disposition_id": 19,
        "disposition": "Alert",
        "risk_score": (score * 100.0).round() as i64,
        "finding_info": {
            "uid": format!("{}/{}/alert", e.event.session, b["seq"]),
            "title": format!("Unusual call (anomaly score {score:.2})"),
            "desc": reasons.join("; "),
            "types": ["anomaly"],
            "analytic": {"name": detector, "type_id": 5, "type": "Statistical"},
        },
        "message": format!("anomaly score {score:.2}: {}", reasons.join("; ")),
    });
    set_severity(&mut out, if score >= 0.95 { 4 } else { 3 });
    let mut warden = Map::new();
    for key in ["seq", "detector", "score", "threshold", "reasons"] {
        if !b[key].is_null() {
            warden.insert(key.into(), b[key].clone());
        }
    }
    (out, warden)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn logged(kind: EventKind, body: Value) -> LoggedEvent {
        LoggedEvent {
            index: 7,
            event: Event {
                kind,
                session: "s_1".into(),
                time_ms: 1_700_000_000_000,
                body,
                causes: vec![0],
            },
        }
    }

    #[test]
    fn a_held_write_is_a_denied_delayed_update_naming_its_policy() {
        let e = logged(
            EventKind::Decision,
            json!({"seq": 3, "tool": "send_email", "verdict": "hold", "call_id": "c9",
                   "reasons": [{"policy": "baseline.untrusted-value-in-sink", "message": "from untrusted"}],
                   "policy_digest": "abc", "tool_traits": {"read": false, "write": true, "destructive": false}}),
        );
        let out = event(
            &e,
            Some(&json!({"principal": "alice", "agent": "bot", "channel": "api"})),
            "0.1.0",
        )
        .expect("a decision is exported");
        assert_eq!(out["class_uid"], 6003);
        assert_eq!(out["type_uid"], 600303);
        assert_eq!(out["action_id"], 2);
        assert_eq!(out["disposition_id"], 14);
        assert_eq!(out["policy"]["name"], "baseline.untrusted-value-in-sink");
        assert_eq!(out["policy"]["uid"], "abc");
        assert_eq!(out["api"]["operation"], "send_email");
        assert_eq!(out["actor"]["user"]["name"], "alice");
        assert_eq!(out["actor"]["app_name"], "bot");
        assert_eq!(out["unmapped"]["warden"]["channel"], "api");
        assert_eq!(out["unmapped"]["warden"]["decision_id"], "s_1/3");
        assert_eq!(out["metadata"]["version"], "1.8.0");
        assert_eq!(out["metadata"]["profiles"], json!(["security_control"]));
    }

    #[test]
    fn a_shadow_hold_went_through_and_says_so() {
        let e = logged(
            EventKind::Decision,
            json!({"seq": 3, "tool": "t", "verdict": "hold", "shadow": true, "reasons": []}),
        );
        let out = event(&e, None, "0").expect("exported");
        assert_eq!(out["action_id"], 1);
        assert_eq!(out["disposition_id"], 15);
        assert_eq!(out["activity_id"], 0, "no traits logged: Unknown");
    }

    #[test]
    fn an_approval_is_acted_by_its_approver_not_the_sessions_principal() {
        let e = logged(
            EventKind::Approval,
            json!({"decision_id": "s_1/3", "decision": "denied", "approver": "bob (cli)"}),
        );
        let out = event(
            &e,
            Some(&json!({"principal": "alice", "agent": "bot"})),
            "0",
        )
        .expect("exported");
        assert_eq!(out["actor"]["user"]["name"], "bob (cli)");
        assert_eq!(
            (out["action_id"].as_u64(), out["disposition_id"].as_u64()),
            (Some(2), Some(25))
        );
        assert_eq!(out["unmapped"]["warden"]["principal"], "alice");
    }

    #[test]
    fn session_openings_results_and_messages_are_not_exported() {
        for kind in [
            EventKind::SessionOpened,
            EventKind::Result,
            EventKind::Message,
        ] {
            assert!(
                event(&logged(kind, json!({})), None, "0").is_none(),
                "{kind:?}"
            );
        }
    }
}
