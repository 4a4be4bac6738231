//! The reasoning replay memory's cost per request (SPEC 8, issue 30):
//! what `/openai` adds to a chat request for it.
//!
//!   cargo bench --bench reasoning_memory
//!
//! * every request: `replay::wanted` (a walk of the assistant turns) and,
//!   for a translated one, `replay::restore` (nothing to restore: returns at
//!   once);
//! * a request whose rebuilt turn lacks its memos: the lookup in the
//!   embedded store (one indexed read per id), holding 100,000 entries;
//! * an answer with tool calls: the write of its memos (one transaction).
//!
//! With Redis configured the lookup and the write are one round trip each
//! (MGET, a pipelined SET EX) instead.

use serde_json::json;
use std::collections::HashMap;
use std::time::Instant;
use tollgate::store::replay::ReplayStore;
use tollgate::translate::replay::{self, Memo};

fn p50_us(mut f: impl FnMut(), n: usize) -> (f64, f64) {
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[n / 2], t[n * 9 / 10])
}

fn main() {
    // A 20-turn agent conversation: user, assistant with two calls, two tool results, ...
    let mut msgs = vec![json!({"role": "system", "content": "You are a helpful agent."})];
    for i in 0..5 {
        msgs.push(json!({"role": "user", "content": format!("step {i}: what now?")}));
        msgs.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("toolu_{i}_a"), "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"x\"}"}},
            {"id": format!("toolu_{i}_b"), "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"y\"}"}}]}));
        msgs.push(json!({"role": "tool", "tool_call_id": format!("toolu_{i}_a"), "content": "result a"}));
        msgs.push(json!({"role": "tool", "tool_call_id": format!("toolu_{i}_b"), "content": "result b"}));
    }
    let agent = json!({"model": "claude-sonnet-4-5", "messages": msgs});
    let plain = json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello"}]});
    println!("reasoning replay memory, cost per request:");
    let (a, b) = p50_us(|| drop(std::hint::black_box(replay::wanted(std::hint::black_box(&plain)))), 20_000);
    println!("  wanted, a request without tool calls: p50 {a:.3} us, p90 {b:.3} us");
    let (a, b) = p50_us(|| drop(std::hint::black_box(replay::wanted(std::hint::black_box(&agent)))), 20_000);
    println!("  wanted, a 21-message agent conversation (10 calls): p50 {a:.2} us, p90 {b:.2} us");
    let blocks = vec![json!({"type": "thinking", "thinking": "t".repeat(2000), "signature": "s".repeat(400)})];
    let memos: HashMap<String, Memo> = (0..5).flat_map(|i| [(format!("toolu_{i}_a"), Memo::ThinkingBlocks(blocks.clone())), (format!("toolu_{i}_b"), Memo::ThinkingBlocks(blocks.clone()))]).collect();
    let (a, b) = p50_us(|| { std::hint::black_box(replay::restore(&mut agent.clone(), &memos)); }, 5_000);
    let (c, _) = p50_us(|| drop(std::hint::black_box(agent.clone())), 5_000);
    println!("  restore, 5 turns of 2 KiB thinking: p50 {:.2} us, p90 {:.2} us (the request's clone, {c:.2} us, subtracted)", a - c, b - c);

    let dir = std::env::temp_dir().join(format!("tollgate-replay-bench-{}", std::process::id()));
    let store = ReplayStore::open(&dir.join("r.db"), 200_000).expect("open");
    let memo = Memo::ThinkingBlocks(blocks.clone()).to_value().to_string();
    let far = tollgate::store::now_s() + 86_400;
    for chunk in 0..1000 {
        let rows: Vec<(String, String)> = (0..100).map(|i| (format!("toolu_{chunk}_{i}"), memo.clone())).collect();
        store.put(&format!("vk:team-{}", chunk % 10), &rows, far).expect("put");
    }
    println!("  embedded store holding {} entries:", store.len());
    let mut n = 0u64;
    let (a, b) = p50_us(
        || {
            n += 1;
            let rows = vec![(format!("new_{n}_a"), memo.clone()), (format!("new_{n}_b"), memo.clone())];
            store.put("vk:team-1", &rows, far).expect("put");
        },
        2_000,
    );
    println!("    write an answer's memos (2 calls, 2.4 KiB each): p50 {a:.1} us, p90 {b:.1} us");
    let ids: Vec<String> = vec!["toolu_11_3".into(), "toolu_11_4".into()];
    let now = tollgate::store::now_s();
    let (a, b) = p50_us(|| assert_eq!(store.get("vk:team-1", &ids, now).expect("get").len(), 2), 5_000);
    println!("    look up a rebuilt turn (2 ids, found): p50 {a:.1} us, p90 {b:.1} us");
    let (a, b) = p50_us(|| assert!(store.get("vk:team-2", &ids, now).expect("get").is_empty()), 5_000);
    println!("    look up another owner's ids (nothing found): p50 {a:.1} us, p90 {b:.1} us");
    let _ = std::fs::remove_dir_all(&dir);
}
