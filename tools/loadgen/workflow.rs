//! Workflow load: each client registers a cast of its own, then runs
//! decision chains of 10 signed entries through the gate.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use gatelog::access::entry;
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{Actor, EntitlementDelta, EntryRef, PolicyRef, Statement};
use gatelog::sys::clock::now_ms;
use gatelog::tlog::note::NoteSigner;
use prost::Message;

use super::{Pacer, Session};

/// Actors each client registers.
/// (and one owner of their machines).
pub const CAST_SIZE: usize = 9;
const APPROVERS: usize = 5;
const MINUTE: i64 = 60_000;

pub fn admin_key(path: &Path) -> anyhow::Result<Arc<NoteSigner>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --admin-key {}", path.display()))?;
    let key = NoteSigner::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--admin-key {}: {e}", path.display()))?;
    Ok(Arc::new(key))
}

/// What every client shares: the run id and the policy in force.
#[derive(Clone)]
pub struct Setup {
    run: String,
    policy: Option<PolicyRef>,
}

impl Setup {
    /// Publishes the Cedar policy the run's intents name.
    pub async fn publish_policy(
        session: &mut Session,
        admin: &NoteSigner,
    ) -> anyhow::Result<Setup> {
        let version = now_ms() as u64;
        let cedar = r#"permit(principal, action == Action::"execute", resource)
            when { context.human_approvals >= 2 && !context.break_glass };"#;
        let st =
            build::publish_policy(&human(admin.name()), "loadgen", version, cedar, 2, now_ms());
        if session
            .append(sign(admin, &st, session.log.name()), Instant::now())
            .await?
            .is_none()
        {
            bail!("publishing the load policy failed (is the server --entries gatelog, and --admin-key its admin?)");
        }
        Ok(Setup {
            run: format!("{:x}", version),
            policy: Some(PolicyRef {
                policy_id: "loadgen".into(),
                version,
            }),
        })
    }
}

/// `st` signed by `key` for the log whose origin is `origin`.
fn sign(key: &NoteSigner, st: &Statement, origin: &str) -> Vec<u8> {
    entry::sign(key, &build::for_log(st.clone(), origin)).encode_to_vec()
}

/// One registered identity.
struct Member {
    actor: Actor,
    key: NoteSigner,
}

/// A client's cast and connection.
pub struct Cast {
    session: Session,
    setup: Setup,
    requester: Member,
    assistant: Member,
    approvers: Vec<Member>,
    executor: Member,
}

impl Cast {
    /// Registers this client's actors (signed by the admin).
    pub async fn register(
        mut session: Session,
        admin: Arc<NoteSigner>,
        setup: Setup,
    ) -> anyhow::Result<Cast> {
        let id = |role: &str| format!("{role}.{}.{}", setup.run, session.id);
        let mut actors = vec![
            human(&id("requester")),
            build::assistant(
                &id("assistant"),
                "spiffe://load/ns/ai/sa/advisor",
                "model-1",
                "agent-1",
            ),
            nhi(&id("executor"), "spiffe://load/ns/ci/sa/deployer"),
        ];
        actors.extend((0..APPROVERS).map(|i| human(&id(&format!("approver{i}")))));
        let admin_actor = human(admin.name());
        let mut members = Vec::new();
        let origin = session.log.name().to_string();
        // The machines answer to the requester's manager, approver 0's
        // colleague: a person outside every approval.
        let owner = id("owner");
        let owner_key = NoteSigner::from_seed(&owner, [0x5a; 32])?;
        let st = build::register(
            &admin_actor,
            &human(&owner),
            "",
            owner_key.verifier().public_key(),
            now_ms(),
        );
        if session
            .append(sign(&admin, &st, &origin), Instant::now())
            .await?
            .is_none()
        {
            bail!("registering {owner} failed");
        }
        for (i, actor) in actors.into_iter().enumerate() {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&session.id.to_be_bytes());
            seed[8] = i as u8;
            seed[9..17].copy_from_slice(&now_ms().to_be_bytes());
            let key = NoteSigner::from_seed(&actor.id, seed)?;
            let owned = if actor.kind == entry::ActorKind::Human as i32 {
                ""
            } else {
                owner.as_str()
            };
            let st = build::register(
                &admin_actor,
                &actor,
                owned,
                key.verifier().public_key(),
                now_ms(),
            );
            if session
                .append(sign(&admin, &st, &origin), Instant::now())
                .await?
                .is_none()
            {
                bail!("registering {} failed", actor.id);
            }
            members.push(Member { actor, key });
        }
        let mut members = members.into_iter();
        let mut next = || members.next().expect("CAST_SIZE members");
        Ok(Cast {
            requester: next(),
            assistant: next(),
            executor: next(),
            approvers: (0..APPROVERS).map(|_| next()).collect(),
            session,
            setup,
        })
    }

    /// Signs `st` as `who` and appends it when due; its link if appended.
    async fn step(
        session: &mut Session,
        pacer: &mut Pacer,
        who: &Member,
        st: &Statement,
    ) -> anyhow::Result<Option<Option<EntryRef>>> {
        let Some(due) = pacer.next().await else {
            return Ok(None);
        };
        let origin = session.log.name().to_string();
        let answer = session.append(sign(&who.key, st, &origin), due).await?;
        Ok(Some(answer.and_then(|a| {
            let index = a["index"].as_u64()?;
            let leaf = super::b64(a["leaf_hash"].as_str()?)?;
            Some(link(index, &leaf))
        })))
    }

    /// Runs chains until the run ends; the latencies measured.
    pub async fn run(mut self, start: Instant) -> anyhow::Result<Vec<u32>> {
        let mut pacer = Pacer::new(self.session.id, &self.session.opts, start);
        let mut n = 0u64;
        let mut d: EntitlementDelta = delta(&["read"], &["deploy"], &[]);
        d.privileged = true;
        'chains: loop {
            n += 1;
            let chain = format!("L{}-{}-{n}", self.setup.run, self.session.id);
            let t = now_ms();
            let tgt = target(
                "k8s",
                &format!("prod/svc-{}", self.session.id),
                &self.requester.actor.id,
            );
            let s = &mut self.session;
            macro_rules! step {
                ($who:expr, $st:expr) => {
                    match Self::step(s, &mut pacer, $who, &$st).await? {
                        None => break 'chains,
                        Some(None) => continue 'chains,
                        Some(Some(l)) => l,
                    }
                };
            }
            let req = step!(
                &self.requester,
                build::lasting(
                    build::request(
                        &self.requester.actor,
                        &chain,
                        tgt,
                        d.clone(),
                        &self.executor.actor.id,
                        t
                    ),
                    s.opts.grant_seconds
                )
            );
            // Two distinct rationales: identical statements would be one entry.
            for digest in [[1; 32], [2; 32]] {
                step!(
                    &self.assistant,
                    build::recommend(
                        &self.assistant.actor,
                        &chain,
                        vec![req.clone()],
                        d.clone(),
                        digest,
                        t
                    )
                );
            }
            let mut links = vec![req];
            for a in &self.approvers {
                links.push(step!(
                    a,
                    build::approve(
                        &a.actor,
                        &chain,
                        vec![links[0].clone()],
                        d.clone(),
                        t + 10 * MINUTE,
                        now_ms()
                    )
                ));
            }
            let intent = build::intent(
                &self.executor.actor,
                &chain,
                links,
                d.clone(),
                self.setup.policy.clone(),
                now_ms(),
            );
            let executed = step!(&self.executor, intent);
            s.tally.intents.fetch_add(1, Relaxed);
            step!(
                &self.executor,
                build::outcome(
                    &self.executor.actor,
                    &chain,
                    vec![executed],
                    vec!["read".into(), "deploy".into()],
                    &chain,
                    now_ms()
                )
            );
        }
        Ok(self.session.latencies)
    }
}
