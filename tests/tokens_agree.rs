//! The two token stores keep one set of rules (`MemoryStore` in Rust, `RedisStore` in
//! `tokens.lua`): random sequences of token operations (issue with or without a client,
//! refresh of the newest or an older token of a family, with the right or a wrong
//! client, authenticate, revoke one token, a family or a user, list) run through
//! `Tokens` on both, and every answer must agree.
#![cfg(feature = "tokens")]

mod common;

use proptest::prelude::*;
use tower_redis_session::tokens::{
    IssueOptions, TokenConfig, TokenError, TokenPair, TokenStore, Tokens,
};

const USERS: [&str; 2] = ["ann", "bob"];
const CLIENTS: [Option<&str>; 3] = [None, Some("app-a"), Some("app-b")];

#[derive(Clone, Debug)]
enum Op {
    Issue(usize, usize),
    /// Family (index among those issued), how far back in its chain, the client asking.
    Refresh(usize, usize, usize),
    Authenticate(usize, usize),
    Revoke(usize, usize, bool),
    RevokeFamily(usize),
    RevokeAll(usize),
    List(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let (u, c, f, back) = (0..USERS.len(), 0..CLIENTS.len(), 0usize..6, 0usize..3);
    prop_oneof![
        3 => (u.clone(), c.clone()).prop_map(|(u, c)| Op::Issue(u, c)),
        4 => (f.clone(), back.clone(), c).prop_map(|(f, b, c)| Op::Refresh(f, b, c)),
        2 => (f.clone(), back.clone()).prop_map(|(f, b)| Op::Authenticate(f, b)),
        1 => (f.clone(), back, any::<bool>()).prop_map(|(f, b, r)| Op::Revoke(f, b, r)),
        1 => f.prop_map(Op::RevokeFamily),
        1 => u.clone().prop_map(Op::RevokeAll),
        1 => u.prop_map(Op::List),
    ]
}

/// What a token operation answered, without the random token strings.
fn kind<T>(r: &Result<T, TokenError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(TokenError::InvalidToken) => "invalid_token".into(),
        Err(TokenError::InvalidGrant) => "invalid_grant".into(),
        Err(TokenError::Reused { .. }) => "reused".into(),
        Err(TokenError::Raced) => "raced".into(),
        Err(e) => format!("other: {e}"),
    }
}

/// One store's view: the chains of pairs of the families it issued, in issue order.
struct World {
    tokens: Tokens,
    users: Vec<String>,
    chains: Vec<(usize, Vec<TokenPair>)>,
}

impl World {
    fn new<S: TokenStore>(store: S, case: u64) -> Self {
        let config = TokenConfig::default().with_max_families_per_user(3);
        Self {
            tokens: Tokens::new(store, config).unwrap(),
            users: USERS.iter().map(|u| format!("{u}{case}")).collect(),
            chains: Vec::new(),
        }
    }

    fn pair(&self, family: usize, back: usize) -> Option<&TokenPair> {
        let (_, chain) = self.chains.get(family)?;
        chain.iter().rev().nth(back.min(chain.len() - 1))
    }

    async fn run(&mut self, op: &Op) -> String {
        match *op {
            Op::Issue(u, c) => {
                let mut options = IssueOptions::default();
                if let Some(client) = CLIENTS[c] {
                    options = options.with_client_id(client);
                }
                let r = self.tokens.issue_with(&self.users[u], options).await;
                let k = kind(&r);
                if let Ok(pair) = r {
                    self.chains.push((u, vec![pair]));
                }
                k
            }
            Op::Refresh(f, back, c) => {
                let Some(p) = self.pair(f, back) else {
                    return "no family".into();
                };
                let token = p.refresh_token.clone();
                let r = match CLIENTS[c] {
                    Some(client) => self.tokens.refresh_for_client(client, &token).await,
                    None => self.tokens.refresh(&token).await,
                };
                let k = kind(&r);
                if let Ok(next) = r {
                    self.chains[f].1.push(next);
                }
                k
            }
            Op::Authenticate(f, back) => match self.pair(f, back) {
                Some(p) => kind(&self.tokens.authenticate(&p.access_token).await),
                None => "no family".into(),
            },
            Op::Revoke(f, back, refresh) => match self.pair(f, back) {
                Some(p) => {
                    let t = if refresh {
                        &p.refresh_token
                    } else {
                        &p.access_token
                    };
                    format!(
                        "{:?}",
                        self.tokens.revoke(t).await.map_err(|e| e.to_string())
                    )
                }
                None => "no family".into(),
            },
            Op::RevokeFamily(f) => match self.chains.get(f) {
                Some((u, chain)) => {
                    let r = self
                        .tokens
                        .revoke_family(&self.users[*u], chain[0].family)
                        .await;
                    format!("{:?}", r.map_err(|e| e.to_string()))
                }
                None => "no family".into(),
            },
            Op::RevokeAll(u) => format!(
                "{:?}",
                self.tokens
                    .revoke_all_tokens(&self.users[u])
                    .await
                    .map_err(|e| e.to_string())
            ),
            Op::List(u) => {
                // Which of this world's families are listed, by issue index.
                let listed = self.tokens.list(&self.users[u]).await.unwrap();
                let mut idx: Vec<(usize, Option<String>)> = listed
                    .iter()
                    .map(|f| {
                        let i = self
                            .chains
                            .iter()
                            .position(|(_, c)| c[0].family == f.family)
                            .unwrap();
                        (i, f.client_id.as_deref().map(str::to_owned))
                    })
                    .collect();
                idx.sort();
                format!("{idx:?}")
            }
        }
    }
}

/// Runs `ops` on both stores, comparing every answer.
fn check(ops: &[Op]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (case, memory, redis) = common::stores::twin_stores("tagree", 7);
    rt.block_on(async {
        let (mut m, mut r) = (World::new(memory, case), World::new(redis, case));
        for (step, op) in ops.iter().enumerate() {
            // Distinct times, so "closest to expiry" has no ties.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let (a, b) = (m.run(op).await, r.run(op).await);
            assert_eq!(
                a, b,
                "step {step}: {op:?} (memory left, redis right) in {ops:?}"
            );
        }
    });
}

#[test]
fn a_wrong_client_changes_nothing_on_both() {
    check(&[
        Op::Issue(0, 1),
        Op::Refresh(0, 0, 2),
        Op::Refresh(0, 0, 0),
        Op::Refresh(0, 0, 1),
        Op::Refresh(0, 1, 1),
        Op::Authenticate(0, 0),
        Op::List(0),
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_and_redis_agree_on_tokens(ops in prop::collection::vec(op(), 1..30)) {
        check(&ops);
    }
}
