//! The reasoning replay memory on `/openai` (SPEC 8, "Reasoning models"):
//! what a reasoning model's tool-using turn needs on the next turn,
//! remembered by tool-call id for the clients that rebuild the assistant
//! message without it. The decisions are in `translate::replay` (what a
//! request lacks, restoring it, the memos of an answer); the embedded store
//! in `store::replay`, the Redis one in `governance::shared_counters`. This
//! file only wires them: recalled at admission (the memos travel with the
//! admitted request, so an async job and every routing candidate get them),
//! remembered before the answer's last byte reaches the client (so the
//! client's next turn finds them).

use super::{Ctx, Gateway};
use crate::translate::replay::{self, Memo};
use serde_json::Value;
use std::collections::HashMap;

/// Entries the embedded store keeps at most (the ones nearest their
/// expiry go first past it).
pub const MAX_ENTRIES: u64 = 100_000;

/// The embedded memory, beside the store.
pub fn open(config: &crate::config::Config) -> Result<std::sync::Arc<crate::store::replay::ReplayStore>, String> {
    crate::store::replay::ReplayStore::open(&crate::store::replay::path_beside(&config.store_path), MAX_ENTRIES).map(std::sync::Arc::new)
}

impl Gateway {
    /// The memos of `ids` (what a request's rebuilt assistant turns lack,
    /// `replay::wanted`), for `owner`. Empty when nothing is lacking or the
    /// memory cannot be read (the request is then sent as the client wrote
    /// it).
    pub(super) async fn recall_reasoning(&self, ctx: &Ctx, owner: &str, ids: Vec<String>) -> HashMap<String, Memo> {
        if ids.is_empty() {
            return HashMap::new();
        }
        let got = if let (Some(shared), true) = (&self.shared, ctx.live.config.redis.is_some()) {
            shared.replay_get(owner, &ids).await.map_err(|e| e.to_string())
        } else if let Some(store) = self.reasoning.clone() {
            let (owner, now) = (owner.to_string(), crate::store::now_s());
            tokio::task::spawn_blocking(move || store.get(&owner, &ids, now)).await.unwrap_or_else(|e| Err(e.to_string()))
        } else {
            Ok(HashMap::new())
        };
        match got {
            Ok(m) => m.into_iter().filter_map(|(id, v)| Some((id, Memo::from_value(&serde_json::from_str(&v).ok()?)?))).collect(),
            Err(e) => {
                log::warn!("reasoning replay memory: cannot read ({e}); the turn is sent as the client wrote it");
                HashMap::new()
            }
        }
    }

    /// Remember what the answer's tool calls need on the next turn
    /// (`Translator::replay_memos`).
    pub(super) async fn remember_reasoning(&self, ctx: &Ctx, memos: Vec<(String, Memo)>) {
        let Some(owner) = ctx.cred.owner.clone().filter(|_| !memos.is_empty()) else { return };
        let rows: Vec<(String, String)> = memos.iter().map(|(id, m)| (id.clone(), m.to_value().to_string())).collect();
        let ttl = ctx.live.config.openai_compat.reasoning_ttl_s;
        let res = if let (Some(shared), true) = (&self.shared, ctx.live.config.redis.is_some()) {
            shared.replay_put(&owner, &rows, ttl).await.map_err(|e| e.to_string())
        } else if let Some(store) = self.reasoning.clone() {
            let expires = crate::store::now_s() + ttl;
            tokio::task::spawn_blocking(move || store.put(&owner, &rows, expires)).await.unwrap_or_else(|e| Err(e.to_string()))
        } else {
            Ok(())
        };
        if let Err(e) = res {
            log::warn!("reasoning replay memory: cannot write ({e}); a client that rebuilds this turn will lose its reasoning");
        }
    }
}

/// The request a translated attempt sends: the client's, with the recalled
/// memos restored.
pub(super) fn with_memos(mut req: Value, memos: &HashMap<String, Memo>) -> Value {
    replay::restore(&mut req, memos);
    req
}
