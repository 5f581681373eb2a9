//! Task profiles: a TOML format for "what this task may do" (tools, argument constraints bound to
//! task parameters, budgets), compiled to Cedar so that there is one semantics.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::escape;
use crate::PolicyError;

/// A named purpose and the capabilities it grants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskProfile {
    #[serde(default)]
    pub description: String,
    /// Task parameters a session must be opened with (`customer_id`).
    #[serde(default)]
    pub params: Vec<String>,
    /// The tools this task may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Constraints on arguments; each applies to one tool's argument.
    #[serde(default)]
    pub require: Vec<Constraint>,
    #[serde(default)]
    pub budget: Budget,
    /// Who may release a call this task's session holds: `"approver"` (a person with the
    /// approver role, the default) or `"user"` (the session's user, asked in their own MCP
    /// client). Unset: the `[mcp] confirm` setting decides.
    #[serde(default)]
    pub confirm: Option<Confirm>,
}

/// Who releases a held call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    /// A person with the approver role (the approvals queue, the dashboard, `warden approvals`).
    #[default]
    Approver,
    /// The session's user, asked in their MCP client (elicitation); a client that cannot be
    /// asked falls back to the approvals path.
    User,
}

/// One constraint on an argument, e.g. `reply_to_customer.customer_id == task.customer_id`.
/// Exactly one of the rule fields must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    pub tool: String,
    pub arg: String,
    /// The argument must equal this task parameter.
    pub equals_task: Option<String>,
    /// The argument must equal this value.
    pub equals: Option<Value>,
    /// The argument must be one of these values.
    pub one_of: Option<Vec<Value>>,
    /// The argument (an integer) must be at most this.
    pub max: Option<i64>,
    /// The argument (a string) must end with this (`@example.com`).
    pub ends_with: Option<String>,
    /// What to tell the agent when the constraint is broken.
    pub reason: Option<String>,
}

/// Call budgets for one session of this task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Calls of any tool.
    pub calls: Option<u64>,
    /// Calls per tool.
    #[serde(default)]
    pub tools: BTreeMap<String, u64>,
}

/// Quote a string as a Cedar string literal.
pub(crate) fn cedar_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cedar_value(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(cedar_str(s)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        other => Err(format!(
            "`{other}` cannot be compared in a profile constraint (use a string, an integer or a boolean)"
        )),
    }
}

/// Compile every profile to Cedar text, one policy per tool, constraint and budget. Profile names
/// become `Warden::Profile` entities in the principal scope, which is what lets the engine index
/// them.
pub fn compile(profiles: &BTreeMap<String, TaskProfile>) -> Result<String, PolicyError> {
    let mut out = String::new();
    for (name, p) in profiles {
        compile_one(name, p, &mut out).map_err(|message| PolicyError::Profile {
            profile: name.clone(),
            message,
        })?;
    }
    Ok(out)
}

fn compile_one(name: &str, p: &TaskProfile, out: &mut String) -> Result<(), String> {
    let scope = format!(
        "principal in Warden::Profile::{}, action == Warden::Action::\"call\"",
        cedar_str(name)
    );
    let id = |suffix: &str| cedar_str(&format!("profile.{name}.{suffix}"));
    if name == crate::engine::NO_PROFILE || name.is_empty() {
        return Err(format!(
            "the name `{name}` is reserved for sessions without a profile"
        ));
    }
    if p.tools.is_empty() {
        return Err("lists no tools: add `tools = [\"…\"]`".to_owned());
    }
    for tool in &p.tools {
        let _ = writeln!(
            out,
            "@id({})\n@reason({})\npermit({scope}, resource == Warden::Tool::{});\n",
            id(&format!("tool.{tool}")),
            cedar_str(&escape(&format!(
                "`{tool}` is one of the tools of task profile `{name}`"
            ))),
            cedar_str(tool),
        );
    }
    let mut require_ids = std::collections::HashSet::new();
    for c in &p.require {
        if !p.tools.contains(&c.tool) {
            return Err(format!(
                "constraint on `{}.{}` names a tool that is not in the profile's tools",
                c.tool, c.arg
            ));
        }
        let arg = format!("context.args[{}]", cedar_str(&c.arg));
        let has_arg = format!("context.args has {}", cedar_str(&c.arg));
        let (test, what) = match (&c.equals_task, &c.equals, &c.one_of, c.max, &c.ends_with) {
            (Some(param), None, None, None, None) => {
                if !p.params.contains(param) {
                    return Err(format!(
                        "constraint on `{}.{}` binds task parameter `{param}`, which is not in the profile's params",
                        c.tool, c.arg
                    ));
                }
                let task = format!("context.task[{}]", cedar_str(param));
                (
                    format!("{has_arg} && context.task has {} && {arg} == {task}", cedar_str(param)),
                    format!("must equal the task's `{param}`"),
                )
            }
            (None, Some(v), None, None, None) => {
                let lit = cedar_value(v)?;
                (format!("{has_arg} && {arg} == {lit}"), format!("must equal {v}"))
            }
            (None, None, Some(vs), None, None) => {
                // Cedar sets are of one type, and an empty one is not a literal it takes.
                let kind = |v: &Value| std::mem::discriminant(v);
                if vs.is_empty() || vs.iter().any(|v| kind(v) != kind(&vs[0])) {
                    return Err(format!(
                        "constraint on `{}.{}`: one_of must list one or more values, all strings, all integers or all booleans",
                        c.tool, c.arg
                    ));
                }
                let lits: Result<Vec<String>, String> = vs.iter().map(cedar_value).collect();
                (
                    format!("{has_arg} && [{}].contains({arg})", lits?.join(", ")),
                    format!("must be one of {}", Value::Array(vs.clone())),
                )
            }
            (None, None, None, Some(max), None) => (
                format!("{has_arg} && {arg} <= {max}"),
                format!("must be at most {max}"),
            ),
            (None, None, None, None, Some(suffix)) => {
                let pattern = suffix.replace('\\', "\\\\").replace('*', "\\*").replace('"', "\\\"");
                (
                    format!("{has_arg} && {arg} like \"*{pattern}\""),
                    format!("must end with `{suffix}`"),
                )
            }
            _ => {
                return Err(format!(
                    "constraint on `{}.{}` must set exactly one of equals_task, equals, one_of, max, ends_with",
                    c.tool, c.arg
                ))
            }
        };
        // Several constraints on one argument (or names that read alike once made an id) each
        // keep an id of their own: the first as written, later ones numbered.
        let base = id(&format!("require.{}.{}", c.tool, c.arg));
        let mut require_id = base.clone();
        let mut n = 1;
        while !require_ids.insert(require_id.clone()) {
            n += 1;
            require_id = format!("{}.{n}\"", base.trim_end_matches('"'));
        }
        // A reason the profile writes is a template; one Warden writes quotes names as they are.
        if let Some(p) = c
            .reason
            .as_deref()
            .and_then(crate::schema::unknown_placeholder)
        {
            return Err(format!(
                "the constraint on argument `{}` of `{}`: {}",
                c.arg,
                c.tool,
                crate::schema::unknown_placeholder_message(p)
            ));
        }
        let reason = c.reason.clone().unwrap_or_else(|| {
            escape(&format!(
                "argument `{}` of `{}` {what} in task profile `{name}`",
                c.arg, c.tool
            ))
        });
        let _ = writeln!(
            out,
            "@id({})\n@reason({})\nforbid({scope}, resource == Warden::Tool::{})\nunless {{ {test} }};\n",
            require_id,
            cedar_str(&reason),
            cedar_str(&c.tool),
        );
    }
    // Cedar's integers are i64: a larger budget would compile to Cedar that does not parse.
    let budgets = p.budget.calls.iter().chain(p.budget.tools.values());
    if let Some(n) = budgets.into_iter().find(|&&n| i64::try_from(n).is_err()) {
        return Err(format!(
            "budget {n} is larger than the largest allowed ({})",
            i64::MAX
        ));
    }
    if let Some(n) = p.budget.calls {
        let _ = writeln!(
            out,
            "@id({})\n@reason({})\nforbid({scope}, resource)\nwhen {{ context.history.calls >= {n} }};\n",
            id("budget.calls"),
            cedar_str(&escape(&format!("task profile `{name}` allows {n} calls per session; the budget is spent"))),
        );
    }
    for (tool, n) in &p.budget.tools {
        let _ = writeln!(
            out,
            "@id({})\n@reason({})\nforbid({scope}, resource == Warden::Tool::{})\nwhen {{ context.history.tool_calls >= {n} }};\n",
            id(&format!("budget.{tool}")),
            cedar_str(&escape(&format!("task profile `{name}` allows {n} calls of `{tool}` per session; the budget is spent"))),
            cedar_str(tool),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(toml_text: &str) -> Result<String, PolicyError> {
        let profiles: BTreeMap<String, TaskProfile> = toml::from_str(toml_text).expect("test toml");
        compile(&profiles)
    }

    #[test]
    fn tools_compile_to_one_indexed_permit_each() {
        let cedar = one(r#"
            [support]
            tools = ["lookup", "reply"]
        "#)
        .expect("compiles");
        assert!(cedar.contains(
            r#"permit(principal in Warden::Profile::"support", action == Warden::Action::"call", resource == Warden::Tool::"lookup");"#
        ), "{cedar}");
        assert_eq!(cedar.matches("permit(").count(), 2);
    }

    #[test]
    fn equals_task_binds_the_argument_to_the_task_parameter() {
        let cedar = one(r#"
            [support]
            params = ["customer_id"]
            tools = ["reply"]
            require = [{ tool = "reply", arg = "customer_id", equals_task = "customer_id" }]
        "#)
        .expect("compiles");
        assert!(
            cedar.contains(r#"context.args["customer_id"] == context.task["customer_id"]"#),
            "{cedar}"
        );
    }

    #[test]
    fn a_constraint_reason_with_a_placeholder_warden_does_not_fill_is_an_error_naming_it() {
        let err = one(r#"
            [support]
            tools = ["reply"]
            require = [{ tool = "reply", arg = "to", one_of = ["a@corp.example"], reason = "only {team} may be written to" }]
        "#)
        .expect_err("refused at compile time, not at load");
        let message = err.to_string();
        assert!(
            message.contains("support")
                && message.contains("argument `to` of `reply`")
                && message.contains("unknown placeholder `{team}`"),
            "{message}"
        );
        one(r#"
            [support]
            tools = ["reply"]
            require = [{ tool = "reply", arg = "to", one_of = ["a@corp.example"], reason = "`{tool}` may write only to the team" }]
        "#)
        .expect("a known placeholder compiles");
    }

    #[test]
    fn constraint_on_an_undeclared_parameter_is_an_error_naming_it() {
        let err = one(r#"
            [support]
            tools = ["reply"]
            require = [{ tool = "reply", arg = "customer_id", equals_task = "customer_id" }]
        "#)
        .expect_err("must fail");
        assert!(
            err.to_string().contains("task parameter `customer_id`"),
            "{err}"
        );
    }

    #[test]
    fn constraint_with_two_rules_is_an_error() {
        let err = one(r#"
            [p]
            tools = ["t"]
            require = [{ tool = "t", arg = "a", max = 3, equals = 2 }]
        "#)
        .expect_err("must fail");
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn a_budget_beyond_cedars_integers_is_an_error_not_unparseable_cedar() {
        let err = one(r#"
            [p]
            tools = ["t"]
            budget = { calls = 9223372036854775808 }
        "#)
        .expect_err("must fail");
        assert!(
            err.to_string().contains("budget 9223372036854775808"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_or_mixed_one_of_is_an_error_not_cedar_that_cannot_validate() {
        for values in ["[]", r#"[1, "a"]"#] {
            let err = one(&format!(
                "[p]\ntools = [\"t\"]\nrequire = [{{ tool = \"t\", arg = \"a\", one_of = {values} }}]\n"
            ))
            .expect_err("must fail");
            assert!(err.to_string().contains("one_of must list"), "{err}");
        }
    }

    #[test]
    fn quotes_in_names_are_escaped() {
        assert_eq!(cedar_str("a\"b\\c\n"), r#""a\"b\\c\u{a}""#);
    }
}
