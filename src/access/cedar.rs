//! Rule 7 of the gate: the organisation's Cedar policy, published in the
//! log, evaluated with the `cedar-policy` crate.
//!
//! Each intent is the request `principal = Actor::"<executor>"`,
//! `action = Action::"execute"`, `resource = Resource::"<system>/<resource>"`
//! with the chain's facts ([`IntentFacts`]) as `context`, e.g.
//!
//! ```cedar
//! permit(principal, action == Action::"execute", resource)
//! when { context.human_approvals >= 1 || context.break_glass };
//! ```

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, RestrictedExpression as Value,
};

use crate::access::entry::proto::PolicyPublication;
use crate::access::gate::{IntentFacts, PolicyEngine};

/// Evaluates published Cedar policy sets, parsing each once.
#[derive(Default)]
pub struct CedarEngine {
    /// By policy id and version, with the text it was parsed from: two
    /// publications may share an id and version (a dry run's draft, a
    /// republication refused or recorded), and one must never be judged
    /// by the other's Cedar.
    compiled: HashMap<(String, u64), (String, PolicySet)>,
    authorizer: Authorizer,
}

/// Parsed policy sets kept; past this the cache starts again (a flood of
/// dry runs naming new versions must not grow it).
const COMPILED_MAX: usize = 64;

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).expect("a plain identifier is a type name"),
        EntityId::new(id),
    )
}

/// The parsed policy set of `policy`, parsing it on first use.
fn policy_set<'a>(
    compiled: &'a mut HashMap<(String, u64), (String, PolicySet)>,
    policy: &PolicyPublication,
) -> Result<&'a PolicySet, String> {
    let key = (policy.policy_id.clone(), policy.version);
    let fresh = compiled
        .get(&key)
        .is_some_and(|(text, _)| *text == policy.cedar);
    if !fresh {
        let set = PolicySet::from_str(&policy.cedar)
            .map_err(|e| format!("the Cedar policy does not parse: {e}"))?;
        if compiled.len() >= COMPILED_MAX {
            compiled.clear();
        }
        compiled.insert(key.clone(), (policy.cedar.clone(), set));
    }
    Ok(&compiled[&key].1)
}

/// The chain's facts as a Cedar context record (built directly: going
/// through JSON took most of a decision's time).
fn context(f: &IntentFacts) -> Result<Context, String> {
    let string = |s: &str| Value::new_string(s.to_string());
    let set = |v: &[String]| Value::new_set(v.iter().map(|s| string(s)));
    let pairs = [
        ("chain_id", string(&f.chain_id)),
        ("executor", string(&f.executor)),
        ("executor_kind", string(&f.executor_kind)),
        ("requester", string(&f.requester)),
        ("approvers", set(&f.approvers)),
        ("human_approvals", Value::new_long(f.human_approvals)),
        ("system", string(&f.system)),
        ("resource", string(&f.resource)),
        ("subject", string(&f.subject)),
        ("adds", set(&f.adds)),
        ("removes", set(&f.removes)),
        ("privileged", Value::new_bool(f.privileged)),
        ("high_risk", Value::new_bool(f.high_risk)),
        ("break_glass", Value::new_bool(f.break_glass)),
        ("recommended", Value::new_bool(f.recommended)),
        ("tickets", set(&f.tickets)),
        ("ticket_systems", set(&f.ticket_systems)),
    ];
    let extension = f.extension.map(|e| ("extension", Value::new_bool(e)));
    Context::from_pairs(
        pairs
            .into_iter()
            .chain(extension)
            .map(|(k, v)| (k.to_string(), v)),
    )
    .map_err(|e| e.to_string())
}

impl PolicyEngine for CedarEngine {
    fn compile(&mut self, policy: &PolicyPublication) -> Result<(), String> {
        policy_set(&mut self.compiled, policy).map(|_| ())
    }

    fn allows(&mut self, policy: &PolicyPublication, facts: &IntentFacts) -> Result<bool, String> {
        let context = context(facts)?;
        let request = Request::new(
            uid("Actor", &facts.executor),
            uid("Action", "execute"),
            uid("Resource", &format!("{}/{}", facts.system, facts.resource)),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let set = policy_set(&mut self.compiled, policy)?;
        let answer = self
            .authorizer
            .is_authorized(&request, set, &Entities::empty());
        Ok(answer.decision() == Decision::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> PolicyPublication {
        PolicyPublication {
            policy_id: "org".into(),
            version: 1,
            cedar: text.into(),
            privileged_approvals: 0,
            classes: vec![],
        }
    }

    fn facts() -> IntentFacts {
        IntentFacts {
            chain_id: "CHG-1".into(),
            executor: "deployer".into(),
            executor_kind: "NHI".into(),
            requester: "alice".into(),
            approvers: vec!["bob".into()],
            human_approvals: 1,
            system: "github".into(),
            resource: "org/repo".into(),
            subject: "alice".into(),
            adds: vec!["write".into()],
            removes: vec![],
            privileged: false,
            high_risk: false,
            break_glass: false,
            recommended: true,
            tickets: vec!["jira:CHG-1".into()],
            ticket_systems: vec!["jira".into()],
            extension: None,
        }
    }

    #[test]
    fn the_extension_attribute_is_there_from_rules_version_7_only() {
        let mut engine = CedarEngine::default();
        let p = policy(
            r#"permit(principal, action, resource)
               unless { context has extension && context.extension };"#,
        );
        engine.compile(&p).unwrap();
        let with = |extension| {
            let mut f = facts();
            f.extension = extension;
            f
        };
        assert!(engine.allows(&p, &with(None)).unwrap());
        assert!(engine.allows(&p, &with(Some(false))).unwrap());
        assert!(!engine.allows(&p, &with(Some(true))).unwrap());
    }

    #[test]
    fn a_policy_with_the_same_id_and_version_but_other_text_is_parsed_again() {
        let mut engine = CedarEngine::default();
        let permits = policy("permit(principal, action, resource);");
        let forbids = policy("forbid(principal, action, resource);");
        engine.compile(&permits).unwrap();
        assert!(engine.allows(&permits, &facts()).unwrap());
        // Same id and version (a draft, a refused republication): its own
        // Cedar decides, not the cached one.
        assert!(!engine.allows(&forbids, &facts()).unwrap());
        assert!(engine.compile(&policy("permit(")).is_err());
    }

    #[test]
    fn context_decides() {
        let mut engine = CedarEngine::default();
        let p = policy(
            r#"permit(principal, action == Action::"execute", resource)
               when { context.human_approvals >= 1 };
               forbid(principal, action, resource == Resource::"prod/db")
               unless { context.break_glass };"#,
        );
        engine.compile(&p).unwrap();
        assert!(engine.allows(&p, &facts()).unwrap());
        let mut f = facts();
        f.human_approvals = 0;
        assert!(!engine.allows(&p, &f).unwrap());
        let mut f = facts();
        f.system = "prod".into();
        f.resource = "db".into();
        assert!(!engine.allows(&p, &f).unwrap());
        f.break_glass = true;
        assert!(engine.allows(&p, &f).unwrap());
    }

    #[test]
    fn bad_policy_text_is_refused() {
        let err = CedarEngine::default()
            .compile(&policy("permit(principal, action"))
            .unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
