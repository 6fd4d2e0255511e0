//! gatelog-demo: a realistic access change, end to end, against a running
//! log (`gatelog serve --admin-key FILE.pub`):
//!
//! an assistant (an NHI with a SPIFFE ID) recommends a least-privilege
//! delta for a request; a self-approval and an assistant's "approval" are
//! refused by the gate; a manager approves on behalf of a team under a
//! delegation; a deploy pipeline executes; a break-glass write is later
//! reviewed by another human.
//!
//! Each step prints its index and outcome; the exit status is 0 only if
//! every step had the expected outcome. Actor and chain ids carry a run
//! suffix, so the demo can run again against the same log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{Actor, EntryRef, PolicyRef, Statement};
use gatelog::access::entry::{self};
use gatelog::sys::client::http_request;
use gatelog::sys::clock::now_ms;
use gatelog::tlog::note::NoteSigner;
use hyper::{Method, Uri};
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "gatelog-demo", version)]
struct Args {
    /// The log's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    log: String,
    /// The bootstrap admin's private key (the server was started with
    /// --admin-key FILE.pub; without --admin-key it made DATA_DIR/admin.key).
    #[arg(long, value_name = "FILE")]
    admin_key: PathBuf,
}

const MINUTE: i64 = 60_000;

/// What a step should come to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Appended,
    /// Refused by the gate with this violation code.
    Refused(&'static str),
}

struct Demo {
    log: Uri,
    /// The log's origin, which every statement names.
    origin: String,
    admin: (Actor, NoteSigner),
    failures: usize,
}

/// An appended entry.
#[derive(Clone)]
struct At {
    index: u64,
    leaf: Vec<u8>,
}

impl At {
    fn link(&self) -> EntryRef {
        link(self.index, &self.leaf)
    }
}

impl Demo {
    async fn submit(
        &mut self,
        step: &str,
        key: &NoteSigner,
        st: &Statement,
        expect: Expect,
    ) -> Option<At> {
        let st = build::for_log(st.clone(), &self.origin);
        let leaf = entry::sign(key, &st).encode_to_vec();
        let answer = http_request(
            Method::POST,
            &self.log,
            "/v1/entries",
            leaf.into(),
            Duration::from_secs(30),
        )
        .await;
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                println!("  FAIL  {step}: {e}");
                self.failures += 1;
                return None;
            }
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let got = match status {
            200 => Expect::Appended,
            403 if json["error"]["code"] == "gate_refused" => {
                let codes: Vec<&str> = json["error"]["violations"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|v| v["code"].as_str()).collect())
                    .unwrap_or_default();
                match expect {
                    Expect::Refused(c) if codes.contains(&c) => expect,
                    _ => Expect::Refused("other"),
                }
            }
            _ => Expect::Refused("other"),
        };
        let index = json["index"]
            .as_u64()
            .or_else(|| json["error"]["refusal_record"]["index"].as_u64());
        let at = index.map_or("   -".to_string(), |i| format!("{i:>4}"));
        if got == expect {
            let what = match expect {
                Expect::Appended => "appended".to_string(),
                Expect::Refused(code) => format!("refused by the gate ({code}); refusal recorded"),
            };
            println!("  ok   [{at}] {step}: {what}");
        } else {
            println!(
                "  FAIL [{at}] {step}: HTTP {status} {}",
                String::from_utf8_lossy(&body)
            );
            self.failures += 1;
        }
        if status != 200 {
            return None;
        }
        Some(At {
            index: json["index"].as_u64()?,
            leaf: base64_decode(json["leaf_hash"].as_str()?)?,
        })
    }

    async fn register(&mut self, actor: &Actor, owner: &str) -> NoteSigner {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let key = NoteSigner::from_seed(&actor.id, seed).expect("valid actor id");
        let st = build::register(
            &self.admin.0,
            actor,
            owner,
            key.verifier().public_key(),
            now_ms(),
        );
        let admin = NoteSigner::parse(&self.admin.1.to_private_key_string()).expect("admin key");
        let kind = entry::ActorKind::try_from(actor.kind).map_or("?", |k| k.as_str_name());
        self.submit(
            &format!("admin registers {} ({kind})", actor.id),
            &admin,
            &st,
            Expect::Appended,
        )
        .await;
        key
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        match http_request(
            Method::GET,
            &self.log,
            path,
            Default::default(),
            Duration::from_secs(10),
        )
        .await
        {
            Ok((200, body)) => serde_json::from_slice(&body).unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }

    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            println!("  ok          {what}");
        } else {
            println!("  FAIL        {what}");
            self.failures += 1;
        }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let log: Uri = args
        .log
        .parse()
        .with_context(|| format!("--log {:?}", args.log))?;
    let text = std::fs::read_to_string(&args.admin_key)
        .with_context(|| format!("reading --admin-key {}", args.admin_key.display()))?;
    let admin_key = NoteSigner::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "--admin-key {}: not a private key ({e}); pass FILE, not FILE.pub",
            args.admin_key.display()
        )
    })?;
    let run = format!(
        "{:08x}",
        rand_core::RngCore::next_u32(&mut rand_core::OsRng)
    );
    let id = |name: &str| format!("{name}.{run}");
    let mut demo = Demo {
        log,
        origin: String::new(),
        admin: (human(admin_key.name()), admin_key),
        failures: 0,
    };
    let about = demo.get_json("/v1/log").await;
    demo.origin = about["origin"]
        .as_str()
        .context("GET /v1/log names no origin")?
        .to_string();
    let admin_actor = demo.admin.0.clone();
    let admin = NoteSigner::parse(&demo.admin.1.to_private_key_string())?;

    println!("The cast (run {run}):");
    let alice = human(&id("alice"));
    let bob = human(&id("bob"));
    let dana = human(&id("dana"));
    let deployer = nhi(
        &id("deploy-pipeline"),
        "spiffe://corp.example/ns/ci/sa/deploy-pipeline",
    );
    let copilot = build::assistant(
        &id("access-copilot"),
        "spiffe://corp.example/ns/ai/sa/access-copilot",
        "gpt-x-2026-06",
        "least-privilege-advisor",
    );
    let alice_key = demo.register(&alice, "").await;
    let bob_key = demo.register(&bob, "").await;
    let dana_key = demo.register(&dana, "").await;
    // Machines answer to a person: the platform lead owns both.
    let deployer_key = demo.register(&deployer, &dana.id).await;
    let copilot_key = demo.register(&copilot, &dana.id).await;

    println!("\nOrganisation policy and delegation:");
    let version = (now_ms() / 1000) as u64;
    let policy = r#"permit(principal, action == Action::"execute", resource)
when { context.human_approvals >= 1 || context.break_glass };"#;
    let t = now_ms();
    demo.submit(
        "admin publishes Cedar policy gatelog-demo",
        &admin,
        &build::publish_policy(&admin_actor, "gatelog-demo", version, policy, 0, t),
        Expect::Appended,
    )
    .await;
    let policy_ref = Some(PolicyRef {
        policy_id: "gatelog-demo".into(),
        version,
    });
    let team = format!("team-payments.{run}");
    let grant = demo
        .submit(
            &format!("admin lets {} approve for {team} on github corp/*", bob.id),
            &admin,
            &build::delegate(
                &admin_actor,
                &bob.id,
                &team,
                "github",
                "corp/",
                t - MINUTE,
                t + 60 * MINUTE,
                t,
            ),
            Expect::Appended,
        )
        .await;

    let chain = format!("CHG-{run}");
    println!(
        "\nChain {chain}: {} asks for write and admin on github corp/payments",
        alice.id
    );
    let tgt = target("github", "corp/payments", &alice.id);
    let asked = delta(&["read"], &["write", "admin"], &[]);
    let least = delta(&["read"], &["write"], &[]);
    let t = now_ms();
    let Some(req) = demo
        .submit(
            "access request",
            &alice_key,
            &build::request(&alice, &chain, tgt, asked, &deployer.id, t),
            Expect::Appended,
        )
        .await
    else {
        anyhow::bail!("the request was not appended; stopping");
    };
    demo.submit(
        "assistant recommends least privilege: write only",
        &copilot_key,
        &build::recommend(
            &copilot,
            &chain,
            vec![req.link()],
            least.clone(),
            [7; 32],
            t,
        ),
        Expect::Appended,
    )
    .await;
    let approve = |who: &Actor| {
        build::approve(
            who,
            &chain,
            vec![req.link()],
            least.clone(),
            now_ms() + 30 * MINUTE,
            now_ms(),
        )
    };
    let intent = |links: Vec<EntryRef>| {
        build::intent(
            &deployer,
            &chain,
            links,
            least.clone(),
            policy_ref.clone(),
            now_ms(),
        )
    };
    demo.submit(
        "requester approves her own request",
        &alice_key,
        &approve(&alice),
        Expect::Refused("self_approval"),
    )
    .await;
    demo.submit(
        "assistant \"approves\"",
        &copilot_key,
        &approve(&copilot),
        Expect::Refused("approval_by_non_human"),
    )
    .await;
    let manager = match &grant {
        Some(g) => build::on_behalf_of(approve(&bob), &team, g.link()),
        None => approve(&bob),
    };
    let decision = demo
        .submit(
            &format!("manager approves on behalf of {team}"),
            &bob_key,
            &manager,
            Expect::Appended,
        )
        .await;
    if let Some(decision) = decision {
        if let Some(executed) = demo
            .submit(
                "pipeline executes the approved delta",
                &deployer_key,
                &intent(vec![req.link(), decision.link()]),
                Expect::Appended,
            )
            .await
        {
            demo.submit(
                "pipeline reports the outcome",
                &deployer_key,
                &build::outcome(
                    &deployer,
                    &chain,
                    vec![executed.link()],
                    vec!["read".into(), "write".into()],
                    "gh-audit-88412",
                    now_ms(),
                ),
                Expect::Appended,
            )
            .await;
        }
    }
    let status = demo.get_json(&format!("/v1/chains/{chain}")).await;
    let s = status["status"].as_str().unwrap_or("?").to_string();
    demo.check(
        &format!("GET /v1/chains/{chain}: status {s}"),
        s == "executed",
    );

    let bg_chain = format!("BG-{run}");
    println!(
        "\nChain {bg_chain}: {} breaks glass during an incident",
        dana.id
    );
    let prod = target("postgres", "prod/payments", &dana.id);
    let mut emergency = delta(&[], &["superuser"], &[]);
    emergency.privileged = true;
    let t = now_ms();
    if let Some(bg) = demo
        .submit(
            "break-glass: superuser on prod/payments, review within 1 h",
            &dana_key,
            &build::break_glass(
                &dana,
                &bg_chain,
                prod,
                emergency.clone(),
                "INC-4411: payments down",
                t + 60 * MINUTE,
                t,
            ),
            Expect::Appended,
        )
        .await
    {
        demo.submit(
            "emergency write without prior approval",
            &dana_key,
            &build::intent(
                &dana,
                &bg_chain,
                vec![bg.link()],
                emergency,
                policy_ref.clone(),
                now_ms(),
            ),
            Expect::Appended,
        )
        .await;
        let open = demo.get_json("/v1/obligations").await;
        let listed = open["obligations"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["chain_id"] == bg_chain.as_str()));
        demo.check("GET /v1/obligations lists the open review", listed);
        demo.submit(
            "the one who broke the glass reviews it",
            &dana_key,
            &build::review(&dana, &bg_chain, vec![bg.link()], true, now_ms()),
            Expect::Refused("self_review"),
        )
        .await;
        demo.submit(
            "another human reviews and ratifies",
            &bob_key,
            &build::review(&bob, &bg_chain, vec![bg.link()], true, now_ms()),
            Expect::Appended,
        )
        .await;
        let status = demo.get_json(&format!("/v1/chains/{bg_chain}")).await;
        let s = status["status"].as_str().unwrap_or("?").to_string();
        demo.check(
            &format!("GET /v1/chains/{bg_chain}: status {s}"),
            s == "reviewed",
        );
    }

    if demo.failures == 0 {
        println!("\nEvery step had the expected outcome.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "\n{} step(s) did not have the expected outcome.",
            demo.failures
        );
        Ok(ExitCode::FAILURE)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatelog-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}
